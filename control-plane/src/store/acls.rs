use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Actor, Listing, Page, Store, StoreError, audit, sql};
use crate::domain::AclAction;

#[derive(Debug, Clone, FromRow)]
pub struct AclRow {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub action: String,
    pub path_pattern: String,
    pub ip_networks: Vec<IpNetwork>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
}

impl AclRow {
    pub fn action(&self) -> AclAction {
        self.action.parse().unwrap_or(AclAction::Read)
    }
}

pub struct NewAcl {
    pub user_id: Option<Uuid>,
    pub action: AclAction,
    pub path_pattern: String,
    pub ip_networks: Vec<IpNetwork>,
}

#[derive(Default)]
pub struct AclPatch {
    pub user_id: Option<Option<Uuid>>,
    pub action: Option<AclAction>,
    pub path_pattern: Option<String>,
    pub ip_networks: Option<Vec<IpNetwork>>,
}

#[derive(Default)]
pub struct AclFilter {
    pub user_id: Option<Uuid>,
    /// Only rules for anonymous clients.
    pub anonymous: Option<bool>,
    pub action: Option<AclAction>,
}

const COLUMNS: &str = "id, user_id, action, path_pattern, ip_networks, created_at, updated_at, created_by, updated_by";

impl Store {
    pub async fn list_acls(
        &self,
        f: &AclFilter,
        page: Page,
    ) -> Result<Listing<AclRow>, StoreError> {
        let mut total = QueryBuilder::<Postgres>::new("SELECT count(*) FROM acl_rules WHERE true");
        push_filter(&mut total, f);
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM acl_rules WHERE true"
        ));
        push_filter(&mut q, f);
        q.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(page.limit())
            .push(" OFFSET ")
            .push_bind(page.offset());
        self.paged(q, total, page).await
    }

    pub async fn acls_of_user(&self, user_id: Uuid) -> Result<Vec<AclRow>, StoreError> {
        Ok(sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM acl_rules WHERE user_id = $1 OR user_id IS NULL ORDER BY created_at, id"
        )))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn get_acl(&self, id: Uuid) -> Result<AclRow, StoreError> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM acl_rules WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::not_found("acl rule", id))
    }

    pub async fn create_acl(&self, new: NewAcl, actor: &Actor) -> Result<AclRow, StoreError> {
        let mut tx = self.begin().await?;
        let row: AclRow = sqlx::query_as(sql(format!(
            "INSERT INTO acl_rules (id, user_id, action, path_pattern, ip_networks, created_by, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(new.user_id)
        .bind(new.action.as_str())
        .bind(&new.path_pattern)
        .bind(&new.ip_networks)
        .bind(actor.id)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "create",
            "acl",
            &row.id.to_string(),
            serde_json::json!({"user_id": row.user_id, "action": row.action, "path": row.path_pattern}),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn update_acl(
        &self,
        id: Uuid,
        patch: AclPatch,
        actor: &Actor,
    ) -> Result<AclRow, StoreError> {
        let mut tx = self.begin().await?;
        let mut q =
            QueryBuilder::<Postgres>::new("UPDATE acl_rules SET updated_at = now(), updated_by = ");
        q.push_bind(actor.id);
        let mut changed = serde_json::Map::new();
        if let Some(user_id) = patch.user_id {
            q.push(", user_id = ").push_bind(user_id);
            changed.insert("user_id".into(), user_id.map(|u| u.to_string()).into());
        }
        if let Some(action) = patch.action {
            q.push(", action = ").push_bind(action.as_str());
            changed.insert("action".into(), action.as_str().into());
        }
        if let Some(path) = &patch.path_pattern {
            q.push(", path_pattern = ").push_bind(path.clone());
            changed.insert("path".into(), path.clone().into());
        }
        if let Some(nets) = &patch.ip_networks {
            q.push(", ip_networks = ").push_bind(nets.clone());
            changed.insert(
                "ip_networks".into(),
                nets.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        q.push(" WHERE id = ")
            .push_bind(id)
            .push(format!(" RETURNING {COLUMNS}"));
        let row: AclRow = q
            .build_query_as()
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("acl rule", id))?;
        audit(
            &mut tx,
            actor,
            "update",
            "acl",
            &id.to_string(),
            changed.into(),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn delete_acl(&self, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM acl_rules WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::not_found("acl rule", id));
        }
        audit(
            &mut tx,
            actor,
            "delete",
            "acl",
            &id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn push_filter(q: &mut QueryBuilder<Postgres>, f: &AclFilter) {
    if let Some(user_id) = f.user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    match f.anonymous {
        Some(true) => {
            q.push(" AND user_id IS NULL");
        }
        Some(false) => {
            q.push(" AND user_id IS NOT NULL");
        }
        None => {}
    }
    if let Some(action) = f.action {
        q.push(" AND action = ").push_bind(action.as_str());
    }
}
