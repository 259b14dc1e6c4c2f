use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{Caller, JsonBody};
use super::{AppState, PageInfo, PageParams, double_option};
use crate::domain::{AclAction, Role, parse_network, validate_path_pattern};
use crate::error::{ApiError, FieldError};
use crate::store::{AclFilter, AclPatch, NewAcl, acls::AclRow};

const MAX_NETWORKS: usize = 64;

#[derive(Serialize, ToSchema)]
pub struct AclRule {
    pub id: Uuid,
    /// `null`: applies to everyone, including anonymous clients.
    pub user_id: Option<Uuid>,
    pub action: AclAction,
    /// `null`: every path. Otherwise an exact name or `~regex`.
    pub path: Option<String>,
    /// CIDR networks the client must come from; empty: any address.
    pub ip_networks: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
}

impl From<AclRow> for AclRule {
    fn from(r: AclRow) -> Self {
        AclRule {
            id: r.id,
            user_id: r.user_id,
            action: r.action(),
            path: (!r.path_pattern.is_empty()).then_some(r.path_pattern),
            ip_networks: r.ip_networks.iter().map(ToString::to_string).collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AclList {
    pub items: Vec<AclRule>,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAcl {
    /// Absent or `null`: the rule applies to everyone, including anonymous clients.
    pub user_id: Option<Uuid>,
    pub action: AclAction,
    /// Absent or `null`: every path.
    pub path: Option<String>,
    /// CIDR networks or single addresses; absent or empty: any address.
    #[serde(default)]
    pub ip_networks: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAcl {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>, nullable)]
    pub user_id: Option<Option<Uuid>>,
    pub action: Option<AclAction>,
    /// `null`: every path.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub path: Option<Option<String>>,
    pub ip_networks: Option<Vec<String>>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AclQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    pub user_id: Option<Uuid>,
    /// true: only rules for everyone; false: only rules naming a user.
    pub anonymous: Option<bool>,
    pub action: Option<AclAction>,
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("acl rule", id))
}

fn check_path(errors: &mut Vec<FieldError>, path: Option<String>) -> String {
    match path {
        None => String::new(),
        Some(p) => {
            if let Err(m) = validate_path_pattern(&p) {
                errors.push(FieldError::new("/path", m));
            }
            p
        }
    }
}

fn check_networks(errors: &mut Vec<FieldError>, nets: &[String]) -> Vec<ipnetwork::IpNetwork> {
    if nets.len() > MAX_NETWORKS {
        errors.push(FieldError::new(
            "/ip_networks",
            format!("at most {MAX_NETWORKS} networks"),
        ));
        return Vec::new();
    }
    nets.iter()
        .enumerate()
        .filter_map(|(i, n)| match parse_network(n) {
            Ok(net) => Some(net),
            Err(m) => {
                errors.push(FieldError::new(format!("/ip_networks/{i}"), m));
                None
            }
        })
        .collect()
}

/// Lists ACL rules in creation order.
#[utoipa::path(get, path = "/api/v1/acls", tag = "acls", params(AclQuery), security(("bearer" = [])), responses(
    (status = 200, body = AclList),
    (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/acls")]
pub async fn list_acls(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AclQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Operator)?;
    let q = query.into_inner();
    let page = PageParams {
        page: q.page,
        per_page: q.per_page,
    }
    .validate()?;
    let filter = AclFilter {
        user_id: q.user_id,
        anonymous: q.anonymous,
        action: q.action,
    };
    let listing = state.store.list_acls(&filter, page).await?;
    Ok(HttpResponse::Ok().json(AclList {
        items: listing.items.into_iter().map(AclRule::from).collect(),
        page: PageInfo::new(page, listing.total),
    }))
}

/// Creates an ACL rule.
#[utoipa::path(post, path = "/api/v1/acls", tag = "acls", request_body = CreateAcl, security(("bearer" = [])), responses(
    (status = 201, body = AclRule),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[post("/acls")]
pub async fn create_acl(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<CreateAcl>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let b = body.0;
    let mut errors = Vec::new();
    let path_pattern = check_path(&mut errors, b.path);
    let ip_networks = check_networks(&mut errors, &b.ip_networks);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = state
        .store
        .create_acl(
            NewAcl {
                user_id: b.user_id,
                action: b.action,
                path_pattern,
                ip_networks,
            },
            &caller.actor(),
        )
        .await?;
    state.sync().await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/acls/{}", row.id)))
        .json(AclRule::from(row)))
}

/// Gets an ACL rule.
#[utoipa::path(get, path = "/api/v1/acls/{id}", tag = "acls", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = AclRule),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/acls/{id}")]
pub async fn get_acl(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Operator)?;
    let id = parse_id(&id)?;
    Ok(HttpResponse::Ok().json(AclRule::from(state.store.get_acl(id).await?)))
}

/// Updates an ACL rule; absent fields stay as they are.
#[utoipa::path(patch, path = "/api/v1/acls/{id}", tag = "acls", params(("id" = Uuid, Path)), request_body = UpdateAcl, security(("bearer" = [])), responses(
    (status = 200, body = AclRule),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[patch("/acls/{id}")]
pub async fn update_acl(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody<UpdateAcl>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let id = parse_id(&id)?;
    let b = body.0;
    let mut errors = Vec::new();
    let path_pattern = b.path.map(|p| check_path(&mut errors, p));
    let ip_networks = b.ip_networks.map(|n| check_networks(&mut errors, &n));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = state
        .store
        .update_acl(
            id,
            AclPatch {
                user_id: b.user_id,
                action: b.action,
                path_pattern,
                ip_networks,
            },
            &caller.actor(),
        )
        .await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(AclRule::from(row)))
}

/// Deletes an ACL rule.
#[utoipa::path(delete, path = "/api/v1/acls/{id}", tag = "acls", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[delete("/acls/{id}")]
pub async fn delete_acl(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let id = parse_id(&id)?;
    state.store.delete_acl(id, &caller.actor()).await?;
    state.sync().await;
    Ok(HttpResponse::NoContent().finish())
}
