//! Postgres: the ground truth for users, paths, ACL rules, workers and signing keys.
//!
//! Every write runs in a transaction that also appends to `audit_log`. Triggers in the schema bump
//! the desired-state generation and `NOTIFY` listeners, so nothing here has to remember to.

pub(crate) mod acls;
mod keys;
pub(crate) mod paths;
pub(crate) mod sessions;
mod snapshot;
pub(crate) mod users;
pub(crate) mod workers;

pub use acls::{AclFilter, AclPatch, NewAcl};
pub use keys::SigningKeyRow;
pub use paths::{NewPath, PathPatch};
pub use snapshot::Snapshot;
pub use users::{DigestHa1, NewUser, UserFilter, UserPatch};
pub use workers::{Registration, ReportUpdate, WorkerFilter};

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{resource} {id:?} does not exist")]
    NotFound { resource: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{pointer}: {message}")]
    Invalid { pointer: String, message: String },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl StoreError {
    pub fn not_found(resource: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            resource,
            id: id.to_string(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // unique_violation
                Some("23505") => StoreError::Conflict(conflict_message(db.constraint())),
                // foreign_key_violation
                Some("23503") => StoreError::Invalid {
                    pointer: fk_pointer(db.constraint()).into(),
                    message: "refers to something that does not exist".into(),
                },
                // check_violation: validation should have caught it first.
                Some("23514") => StoreError::Invalid {
                    pointer: String::new(),
                    message: format!("violates {}", db.constraint().unwrap_or("a constraint")),
                },
                // admin_shutdown, cannot_connect_now, too_many_connections
                Some("57P01" | "57P03" | "53300") => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Other(e.to_string()),
            },
            _ => StoreError::Other(e.to_string()),
        }
    }
}

fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some("users_username_key") => "a user with this username already exists".into(),
        Some("paths_name_key") => "a path with this name already exists".into(),
        Some("workers_name_key") => "a worker with this name already exists".into(),
        Some(c) => format!("conflicts with an existing record ({c})"),
        None => "conflicts with an existing record".into(),
    }
}

fn fk_pointer(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some("acl_rules_user_id_fkey") => "/user_id",
        _ => "",
    }
}

/// Who made a change, for `created_by`/`updated_by` and the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub name: String,
}

impl Actor {
    pub fn system() -> Self {
        Actor {
            id: None,
            name: "system".into(),
        }
    }
}

/// Page request; `page` counts from 1.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

impl Page {
    fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.per_page)
    }
    fn limit(self) -> i64 {
        i64::from(self.per_page)
    }
}

pub struct Listing<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects lazily: the server starts (and `/readyz` says why not ready) even while
    /// Postgres is still coming up.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| StoreError::Invalid {
                pointer: "databaseUrl".into(),
                message: e.to_string(),
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Store { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Other(other.to_string()),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn generation(&self) -> Result<u64, StoreError> {
        let (g,): (i64,) = sqlx::query_as("SELECT generation FROM desired_state")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(g).unwrap_or(0))
    }

    /// Runs a list query that selects `count(*) OVER () AS total_count`; `count` answers the
    /// total only when the page is empty (past the end), saving a round trip otherwise.
    async fn paged<T>(
        &self,
        mut select: QueryBuilder<Postgres>,
        mut count: QueryBuilder<Postgres>,
        page: Page,
    ) -> Result<Listing<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let rows = select.build().fetch_all(&self.pool).await?;
        let total = match rows.first() {
            Some(row) => row.try_get::<i64, _>("total_count")?,
            None if page.page <= 1 => 0,
            None => {
                let (n,): (i64,) = count.build_query_as().fetch_one(&self.pool).await?;
                n
            }
        };
        let items = rows
            .iter()
            .map(T::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing { items, total })
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &Actor,
    action: &str,
    entity: &str,
    entity_id: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_name, action, entity, entity_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor.id)
    .bind(&actor.name)
    .bind(action)
    .bind(entity)
    .bind(entity_id)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a query string built from constant column lists (never user input) as safe.
fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}
