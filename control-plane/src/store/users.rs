use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Actor, Listing, Page, Store, StoreError, audit, sql};
use crate::domain::Role;

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub role: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
    /// Set when the user opted in to RTSP Digest.
    pub digest_ha1: Option<DigestHa1>,
}

impl UserRow {
    pub fn role(&self) -> Option<Role> {
        self.role.as_deref().and_then(|r| r.parse().ok())
    }

    /// Whether the user may authenticate with RTSP Digest (an HA1 is stored).
    pub fn rtsp_digest(&self) -> bool {
        self.digest_ha1.is_some()
    }
}

/// RTSP Digest's HA1 (16 bytes, see `auth::digest_ha1`): a password equivalent for RTSP, so
/// `Debug` prints `***` and only the gRPC snapshot carries it.
#[derive(Clone, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct DigestHa1(Vec<u8>);

impl DigestHa1 {
    pub fn new(bytes: [u8; 16]) -> Self {
        DigestHa1(bytes.to_vec())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for DigestHa1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestHa1(***)")
    }
}

pub struct NewUser {
    pub username: String,
    pub password_hash: String,
    pub role: Option<Role>,
    pub disabled: bool,
    /// `Some` when the user opts in to RTSP Digest.
    pub digest_ha1: Option<DigestHa1>,
}

#[derive(Default)]
pub struct UserPatch {
    pub username: Option<String>,
    pub password_hash: Option<String>,
    /// `Some(None)` removes the API role.
    pub role: Option<Option<Role>>,
    pub disabled: Option<bool>,
    /// `Some(None)` turns RTSP Digest off; `Some(Some(_))` stores a new HA1.
    pub digest_ha1: Option<Option<DigestHa1>>,
}

#[derive(Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    /// Case-insensitive substring of the username.
    pub search: Option<String>,
    pub disabled: Option<bool>,
}

pub(super) const COLUMNS: &str = "id, username, password_hash, role, disabled, created_at, \
     updated_at, created_by, updated_by, digest_ha1";

impl Store {
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    pub async fn list_users(
        &self,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Listing<UserRow>, StoreError> {
        let mut total = QueryBuilder::<Postgres>::new("SELECT count(*) FROM users WHERE true");
        push_user_filter(&mut total, filter);

        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM users WHERE true"
        ));
        push_user_filter(&mut q, filter);
        q.push(" ORDER BY username, id LIMIT ")
            .push_bind(page.limit())
            .push(" OFFSET ")
            .push_bind(page.offset());
        self.paged(q, total, page).await
    }

    pub async fn get_user(&self, id: Uuid) -> Result<UserRow, StoreError> {
        sqlx::query_as(sql(format!("SELECT {COLUMNS} FROM users WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("user", id))
    }

    pub async fn find_user_by_name(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM users WHERE username = $1"
        )))
        .bind(username)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn create_user(&self, new: NewUser, actor: &Actor) -> Result<UserRow, StoreError> {
        let mut tx = self.begin().await?;
        let row: UserRow = sqlx::query_as(sql(format!(
            "INSERT INTO users (id, username, password_hash, role, disabled, created_by, updated_by, digest_ha1) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(&new.username)
        .bind(&new.password_hash)
        .bind(new.role.map(Role::as_str))
        .bind(new.disabled)
        .bind(actor.id)
        .bind(&new.digest_ha1)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "create",
            "user",
            &row.id.to_string(),
            serde_json::json!({"username": row.username, "role": row.role, "disabled": row.disabled, "rtsp_digest": row.rtsp_digest()}),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Creates the first admin only when no user exists yet (safe with several control planes
    /// starting at once). Returns whether it was created.
    pub async fn bootstrap_admin(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7283001)")
            .execute(&mut *tx)
            .await?;
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Ok(false);
        }
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, 'admin')",
        )
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
        // MediaMTX's defaults: anyone may publish, read and play back any path (`all_others` is
        // the catch-all workers try after every other path).
        for action in ["publish", "read", "playback"] {
            sqlx::query("INSERT INTO acl_rules (id, user_id, action, path_pattern) VALUES ($1, NULL, $2, '')")
                .bind(Uuid::new_v4())
                .bind(action)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO paths (id, name, source_kind) VALUES ($1, 'all_others', 'publisher') \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            &Actor::system(),
            "bootstrap",
            "user",
            &id.to_string(),
            serde_json::json!({"username": username, "role": "admin", "default_acl": true, "default_path": "all_others"}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn update_user(
        &self,
        id: Uuid,
        patch: UserPatch,
        actor: &Actor,
    ) -> Result<UserRow, StoreError> {
        let mut tx = self.begin().await?;
        let mut q =
            QueryBuilder::<Postgres>::new("UPDATE users SET updated_at = now(), updated_by = ");
        q.push_bind(actor.id);
        let mut changed = serde_json::Map::new();
        if let Some(username) = &patch.username {
            q.push(", username = ").push_bind(username.clone());
            changed.insert("username".into(), username.clone().into());
        }
        if let Some(hash) = &patch.password_hash {
            q.push(", password_hash = ").push_bind(hash.clone());
            changed.insert("password".into(), "changed".into());
        }
        if let Some(role) = patch.role {
            q.push(", role = ").push_bind(role.map(Role::as_str));
            changed.insert("role".into(), role.map(Role::as_str).into());
        }
        if let Some(disabled) = patch.disabled {
            q.push(", disabled = ").push_bind(disabled);
            changed.insert("disabled".into(), disabled.into());
        }
        if let Some(ha1) = &patch.digest_ha1 {
            q.push(", digest_ha1 = ").push_bind(ha1.clone());
            // Whether Digest is on, never the value.
            changed.insert("rtsp_digest".into(), ha1.is_some().into());
        }
        q.push(" WHERE id = ")
            .push_bind(id)
            .push(format!(" RETURNING {COLUMNS}"));
        let row: UserRow = q
            .build_query_as()
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("user", id))?;
        ensure_an_admin_remains(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "update",
            "user",
            &id.to_string(),
            changed.into(),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn delete_user(&self, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("user", id));
        }
        ensure_an_admin_remains(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "delete",
            "user",
            &id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Nobody could administer the system again without an enabled admin.
async fn ensure_an_admin_remains(
    tx: &mut sqlx::Transaction<'_, Postgres>,
) -> Result<(), StoreError> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled")
            .fetch_one(&mut **tx)
            .await?;
    if n == 0 {
        return Err(StoreError::Conflict(
            "the last enabled admin cannot be removed, disabled or demoted".into(),
        ));
    }
    Ok(())
}

fn push_user_filter(q: &mut QueryBuilder<Postgres>, f: &UserFilter) {
    if let Some(role) = f.role {
        q.push(" AND role = ").push_bind(role.as_str());
    }
    if let Some(search) = &f.search {
        q.push(" AND username ILIKE ")
            .push_bind(format!("%{}%", escape_like(search)));
    }
    if let Some(disabled) = f.disabled {
        q.push(" AND disabled = ").push_bind(disabled);
    }
}

pub(crate) fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
