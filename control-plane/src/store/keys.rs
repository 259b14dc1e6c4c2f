use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Store, StoreError, sql};

#[derive(Clone, FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_key", &"***")
            .field("active", &self.active)
            .finish()
    }
}

const COLUMNS: &str = "kid, algorithm, private_key, public_key, active, created_at";

impl Store {
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid"
        )))
        .fetch_all(self.pool())
        .await?)
    }

    /// Returns the active key, creating one with `generate` when there is none. Serialised by an
    /// advisory lock so that control planes starting together agree on one key.
    pub async fn ensure_signing_key(
        &self,
        generate: impl FnOnce() -> SigningKeyRow,
    ) -> Result<SigningKeyRow, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7283002)")
            .execute(&mut *tx)
            .await?;
        let existing: Option<SigningKeyRow> = sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM signing_keys WHERE active ORDER BY created_at DESC LIMIT 1"
        )))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(key) = existing {
            return Ok(key);
        }
        let key = generate();
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, active) VALUES ($1, $2, $3, $4, true)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_key)
        .bind(&key.public_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(key)
    }
}
