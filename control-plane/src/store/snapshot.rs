use super::acls::AclRow;
use super::keys::SigningKeyRow;
use super::paths::PathRow;
use super::users::UserRow;
use super::{Store, StoreError};

/// Everything a worker must serve, read in one consistent transaction together with the
/// generation that the same transaction saw.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generation: u64,
    pub paths: Vec<PathRow>,
    pub users: Vec<UserRow>,
    pub acls: Vec<AclRow>,
    pub keys: Vec<SigningKeyRow>,
    /// Sessions kicked within the retention (see `sessions::KICK_RETENTION_SECS`).
    pub kicked_session_ids: Vec<String>,
}

impl Store {
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let (generation,): (i64,) = sqlx::query_as("SELECT generation FROM desired_state")
            .fetch_one(&mut *tx)
            .await?;
        let paths = sqlx::query_as(
            "SELECT id, name, source_kind, source_url, source_on_demand, \
             source_on_demand_start_timeout_ms, source_on_demand_close_after_ms, max_readers, \
             override_publisher, record, publisher_grace_ms, created_at, updated_at, created_by, updated_by \
             FROM paths ORDER BY name COLLATE \"C\"",
        )
        .fetch_all(&mut *tx)
        .await?;
        let users = sqlx::query_as(super::sql(format!(
            "SELECT {} FROM users ORDER BY username",
            super::users::COLUMNS
        )))
        .fetch_all(&mut *tx)
        .await?;
        let acls = sqlx::query_as(
            "SELECT id, user_id, action, path_pattern, ip_networks, created_at, updated_at, created_by, updated_by \
             FROM acl_rules ORDER BY created_at, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let keys = sqlx::query_as(
            "SELECT kid, algorithm, private_key, public_key, active, created_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&mut *tx)
        .await?;
        let kicked: Vec<(String,)> = sqlx::query_as(
            "SELECT session_id FROM kicked_sessions \
             WHERE kicked_at >= now() - make_interval(secs => $1) ORDER BY session_id",
        )
        .bind(super::sessions::KICK_RETENTION_SECS)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Snapshot {
            kicked_session_ids: kicked.into_iter().map(|(id,)| id).collect(),
            generation: u64::try_from(generation).unwrap_or(0),
            paths,
            users,
            acls,
            keys,
        })
    }
}
