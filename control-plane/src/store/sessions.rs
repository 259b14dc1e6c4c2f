//! Media sessions: what online workers report running, and the sessions operators kicked.

use uuid::Uuid;

use super::{Actor, Store, StoreError, audit};

/// How long a kicked session id stays in the desired state; a session the worker has not
/// closed by then is gone anyway, and a reconnecting client gets a new id.
pub const KICK_RETENTION_SECS: f64 = 600.0;

/// An online worker and its last report, as stored by the gRPC service.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerReportRow {
    pub id: Uuid,
    pub name: String,
    pub last_report: Option<serde_json::Value>,
}

impl Store {
    /// The last report of every online worker, ordered by worker name.
    pub async fn online_reports(&self) -> Result<Vec<WorkerReportRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, last_report FROM workers WHERE status = 'online' ORDER BY name, id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Records a kick (a new desired-state generation, through the table's trigger) and forgets
    /// kicks older than the retention.
    pub async fn kick_session(
        &self,
        session_id: &str,
        actor: &Actor,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM kicked_sessions WHERE kicked_at < now() - make_interval(secs => $1)",
        )
        .bind(KICK_RETENTION_SECS)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO kicked_sessions (session_id, kicked_by) VALUES ($1, $2) \
             ON CONFLICT (session_id) DO UPDATE SET kicked_at = now(), kicked_by = EXCLUDED.kicked_by",
        )
        .bind(session_id)
        .bind(actor.id)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, actor, "kick", "session", session_id, detail).await?;
        tx.commit().await?;
        Ok(())
    }
}
