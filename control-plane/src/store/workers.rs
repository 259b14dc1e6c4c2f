use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Listing, Page, Store, StoreError, sql};
use crate::domain::WorkerStatus;

#[derive(Debug, Clone, FromRow)]
pub struct WorkerRow {
    pub id: Uuid,
    pub name: String,
    pub advertised_addresses: Vec<String>,
    pub capabilities: Vec<String>,
    pub version: String,
    pub labels: serde_json::Value,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub applied_generation: i64,
    pub apply_error: Option<String>,
    pub last_report: Option<serde_json::Value>,
}

pub struct Registration {
    pub name: String,
    pub advertised_addresses: Vec<String>,
    pub capabilities: Vec<String>,
    pub version: String,
    pub labels: serde_json::Value,
}

pub struct ReportUpdate {
    pub applied_generation: i64,
    pub apply_error: Option<String>,
    pub report: serde_json::Value,
}

#[derive(Default)]
pub struct WorkerFilter {
    pub status: Option<WorkerStatus>,
}

const COLUMNS: &str = "id, name, advertised_addresses, capabilities, version, labels, status, \
    registered_at, last_heartbeat_at, applied_generation, apply_error, last_report";

impl Store {
    /// Registers a worker by name, keeping its id when it comes back.
    pub async fn register_worker(&self, r: Registration) -> Result<WorkerRow, StoreError> {
        Ok(sqlx::query_as(sql(format!(
            "INSERT INTO workers (id, name, advertised_addresses, capabilities, version, labels, status, last_heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'online', now()) \
             ON CONFLICT (name) DO UPDATE SET advertised_addresses = EXCLUDED.advertised_addresses, \
               capabilities = EXCLUDED.capabilities, version = EXCLUDED.version, labels = EXCLUDED.labels, \
               status = 'online', registered_at = now(), last_heartbeat_at = now() \
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(&r.name)
        .bind(&r.advertised_addresses)
        .bind(&r.capabilities)
        .bind(&r.version)
        .bind(&r.labels)
        .fetch_one(self.pool())
        .await?)
    }

    /// Records a heartbeat and returns its time; `None` when the worker is unknown (deleted
    /// meanwhile).
    pub async fn record_report(
        &self,
        id: Uuid,
        u: ReportUpdate,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row: Option<(DateTime<Utc>,)> = sqlx::query_as(
            "UPDATE workers SET last_heartbeat_at = now(), status = 'online', \
             applied_generation = $2, apply_error = $3, last_report = $4 WHERE id = $1 \
             RETURNING last_heartbeat_at",
        )
        .bind(id)
        .bind(u.applied_generation)
        .bind(u.apply_error)
        .bind(u.report)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(t,)| t))
    }

    /// Marks a worker offline unless it reported after `last_seen`: a worker that reconnected
    /// (to this or another control plane) before its old stream ended stays online.
    pub async fn mark_worker_offline(
        &self,
        id: Uuid,
        last_seen: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE workers SET status = 'offline' WHERE id = $1 AND last_heartbeat_at <= $2",
        )
        .bind(id)
        .bind(last_seen)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Marks offline every online worker silent for longer than `timeout`; returns their names.
    pub async fn mark_silent_workers_offline(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "UPDATE workers SET status = 'offline' WHERE status = 'online' \
             AND (last_heartbeat_at IS NULL OR last_heartbeat_at < now() - make_interval(secs => $1)) \
             RETURNING name",
        )
        .bind(timeout.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    pub async fn list_workers(
        &self,
        f: &WorkerFilter,
        page: Page,
    ) -> Result<Listing<WorkerRow>, StoreError> {
        let mut total = QueryBuilder::<Postgres>::new("SELECT count(*) FROM workers WHERE true");
        push_filter(&mut total, f);
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM workers WHERE true"
        ));
        push_filter(&mut q, f);
        q.push(" ORDER BY name, id LIMIT ")
            .push_bind(page.limit())
            .push(" OFFSET ")
            .push_bind(page.offset());
        self.paged(q, total, page).await
    }

    pub async fn get_worker(&self, id: Uuid) -> Result<WorkerRow, StoreError> {
        sqlx::query_as(sql(format!("SELECT {COLUMNS} FROM workers WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("worker", id))
    }
}

fn push_filter(q: &mut QueryBuilder<Postgres>, f: &WorkerFilter) {
    if let Some(status) = f.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
}
