use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Actor, Store, StoreError, audit, sql};
use crate::domain::SourceKind;

#[derive(Debug, Clone, FromRow)]
pub struct PathRow {
    pub id: Uuid,
    pub name: String,
    pub source_kind: String,
    pub source_url: Option<String>,
    pub source_on_demand: bool,
    pub source_on_demand_start_timeout_ms: i32,
    pub source_on_demand_close_after_ms: i32,
    pub max_readers: i32,
    pub override_publisher: bool,
    pub record: bool,
    pub publisher_grace_ms: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
}

impl PathRow {
    pub fn source_kind(&self) -> SourceKind {
        self.source_kind.parse().unwrap_or(SourceKind::Publisher)
    }
}

/// A validated path to insert; integers are already range-checked.
pub struct NewPath {
    pub name: String,
    pub source_kind: SourceKind,
    pub source_url: Option<String>,
    pub source_on_demand: bool,
    pub source_on_demand_start_timeout_ms: i32,
    pub source_on_demand_close_after_ms: i32,
    pub max_readers: i32,
    pub override_publisher: bool,
    pub record: bool,
    pub publisher_grace_ms: i32,
}

#[derive(Default)]
pub struct PathPatch {
    pub name: Option<String>,
    /// Kind and URL change together.
    pub source: Option<(SourceKind, Option<String>)>,
    pub source_on_demand: Option<bool>,
    pub source_on_demand_start_timeout_ms: Option<i32>,
    pub source_on_demand_close_after_ms: Option<i32>,
    pub max_readers: Option<i32>,
    pub override_publisher: Option<bool>,
    pub record: Option<bool>,
    pub publisher_grace_ms: Option<i32>,
}

const COLUMNS: &str = "id, name, source_kind, source_url, source_on_demand, \
    source_on_demand_start_timeout_ms, source_on_demand_close_after_ms, max_readers, \
    override_publisher, record, publisher_grace_ms, created_at, updated_at, created_by, updated_by";

impl Store {
    pub async fn get_path(&self, name: &str) -> Result<PathRow, StoreError> {
        sqlx::query_as(sql(format!("SELECT {COLUMNS} FROM paths WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("path", name))
    }

    pub async fn create_path(&self, p: NewPath, actor: &Actor) -> Result<PathRow, StoreError> {
        let mut tx = self.begin().await?;
        let row: PathRow = sqlx::query_as(sql(format!(
            "INSERT INTO paths (id, name, source_kind, source_url, source_on_demand, \
             source_on_demand_start_timeout_ms, source_on_demand_close_after_ms, max_readers, \
             override_publisher, record, publisher_grace_ms, created_by, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING {COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(&p.name)
        .bind(p.source_kind.as_str())
        .bind(&p.source_url)
        .bind(p.source_on_demand)
        .bind(p.source_on_demand_start_timeout_ms)
        .bind(p.source_on_demand_close_after_ms)
        .bind(p.max_readers)
        .bind(p.override_publisher)
        .bind(p.record)
        .bind(p.publisher_grace_ms)
        .bind(actor.id)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "create",
            "path",
            &row.name,
            serde_json::json!({"id": row.id}),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn update_path(
        &self,
        name: &str,
        patch: PathPatch,
        actor: &Actor,
    ) -> Result<PathRow, StoreError> {
        let mut tx = self.begin().await?;
        let mut q =
            QueryBuilder::<Postgres>::new("UPDATE paths SET updated_at = now(), updated_by = ");
        q.push_bind(actor.id);
        let mut changed = serde_json::Map::new();
        if let Some(v) = &patch.name {
            q.push(", name = ").push_bind(v.clone());
            changed.insert("name".into(), v.clone().into());
        }
        if let Some((kind, url)) = &patch.source {
            q.push(", source_kind = ").push_bind(kind.as_str());
            q.push(", source_url = ").push_bind(url.clone());
            changed.insert("source_kind".into(), kind.as_str().into());
        }
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = patch.$field {
                    q.push(concat!(", ", stringify!($field), " = "))
                        .push_bind(v);
                    changed.insert(stringify!($field).into(), v.into());
                }
            };
        }
        set!(source_on_demand);
        set!(source_on_demand_start_timeout_ms);
        set!(source_on_demand_close_after_ms);
        set!(max_readers);
        set!(override_publisher);
        set!(record);
        set!(publisher_grace_ms);
        q.push(" WHERE name = ")
            .push_bind(name.to_string())
            .push(format!(" RETURNING {COLUMNS}"));
        let row: PathRow = q
            .build_query_as()
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("path", name))?;
        audit(&mut tx, actor, "update", "path", name, changed.into()).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn delete_path(&self, name: &str, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM paths WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::not_found("path", name));
        }
        audit(
            &mut tx,
            actor,
            "delete",
            "path",
            name,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
