use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{Caller, JsonBody};
use super::{AppState, PageInfo, PageParams, double_option};
use crate::auth::{digest_ha1, hash_password};
use crate::domain::{Role, validate_password, validate_username};
use crate::error::{ApiError, FieldError};
use crate::store::{DigestHa1, NewUser, UserFilter, UserPatch, users::UserRow};

#[derive(Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    /// API role; `null`: no API access, media access through ACL rules only.
    pub role: Option<Role>,
    pub disabled: bool,
    /// Whether the user may authenticate to RTSP with Digest as well as Basic.
    pub rtsp_digest: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            role: r.role(),
            rtsp_digest: r.rtsp_digest(),
            username: r.username,
            disabled: r.disabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<User>,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1-64 characters: letters, digits, `_ - . @`.
    pub username: String,
    /// 8-256 characters.
    #[schema(format = Password)]
    pub password: String,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub disabled: bool,
    /// Lets the user authenticate to RTSP with Digest on workers that offer it. Stores
    /// MD5(username:realm:password), a password equivalent for RTSP Digest that is cheap to
    /// attack offline if the database leaks: turn it on only for clients that need Digest.
    #[serde(default)]
    pub rtsp_digest: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub username: Option<String>,
    #[schema(format = Password)]
    pub password: Option<String>,
    /// `null` removes the API role.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Role>, nullable)]
    pub role: Option<Option<Role>>,
    pub disabled: Option<bool>,
    /// Turning it on needs `password` in the same request (Digest's HA1 is computed from it);
    /// turning it off deletes the stored HA1. Changing the password or the username of a
    /// user with it on recomputes it, so a rename then needs the password too.
    pub rtsp_digest: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Only users with this role.
    pub role: Option<Role>,
    /// Case-insensitive substring of the username.
    pub q: Option<String>,
    pub disabled: Option<bool>,
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("user", id))
}

async fn hash(password: String) -> Result<String, ApiError> {
    web::block(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Lists users, ordered by username.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserQuery), security(("bearer" = [])), responses(
    (status = 200, body = UserList),
    (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let q = query.into_inner();
    let page = PageParams {
        page: q.page,
        per_page: q.per_page,
    }
    .validate()?;
    let filter = UserFilter {
        role: q.role,
        search: q.q,
        disabled: q.disabled,
    };
    let listing = state.store.list_users(&filter, page).await?;
    Ok(HttpResponse::Ok().json(UserList {
        items: listing.items.into_iter().map(User::from).collect(),
        page: PageInfo::new(page, listing.total),
    }))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])), responses(
    (status = 201, body = User),
    (status = 409, description = "Username taken", body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let b = body.0;
    let mut errors = Vec::new();
    if let Err(m) = validate_username(&b.username) {
        errors.push(FieldError::new("/username", m));
    }
    if let Err(m) = validate_password(&b.password) {
        errors.push(FieldError::new("/password", m));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let digest_ha1 = b
        .rtsp_digest
        .then(|| DigestHa1::new(digest_ha1(&b.username, &b.password)));
    let password_hash = hash(b.password).await?;
    let row = state
        .store
        .create_user(
            NewUser {
                username: b.username,
                password_hash,
                role: b.role,
                disabled: b.disabled,
                digest_ha1,
            },
            &caller.actor(),
        )
        .await?;
    state.sync().await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/users/{}", row.id)))
        .json(User::from(row)))
}

/// Gets a user. Users may read themselves; others need the admin role.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    if id != caller.id {
        caller.require(Role::Admin)?;
    }
    Ok(HttpResponse::Ok().json(User::from(state.store.get_user(id).await?)))
}

/// Updates a user. Users may change their own password; everything else needs the admin role.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser, security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 409, description = "Username taken, or the last admin would be lost", body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let b = body.0;
    let own_password_only = id == caller.id
        && b.username.is_none()
        && b.role.is_none()
        && b.disabled.is_none()
        && b.rtsp_digest.is_none();
    if !own_password_only {
        caller.require(Role::Admin)?;
    }
    let mut errors = Vec::new();
    if let Some(Err(m)) = b.username.as_deref().map(validate_username) {
        errors.push(FieldError::new("/username", m));
    }
    if let Some(Err(m)) = b.password.as_deref().map(validate_password) {
        errors.push(FieldError::new("/password", m));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // HA1 depends on the username and the password: read the current ones when it may change.
    let digest_ha1 = if b.rtsp_digest.is_some() || b.password.is_some() || b.username.is_some() {
        let current = state.store.get_user(id).await?;
        digest_change(&current, &b)?
    } else {
        None
    };
    let password_hash = match b.password {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    let row = state
        .store
        .update_user(
            id,
            UserPatch {
                username: b.username,
                password_hash,
                role: b.role,
                disabled: b.disabled,
                digest_ha1,
            },
            &caller.actor(),
        )
        .await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(User::from(row)))
}

/// The HA1 change an update makes: `None` keeps the stored value, `Some(None)` clears it,
/// `Some(Some(_))` stores a new one. Digest stays on unless the request turns it off.
/// Decided on the row read before the update: a concurrent rename can leave an HA1 for the
/// old name, which fails closed (Digest is refused until the password is set again).
fn digest_change(current: &UserRow, b: &UpdateUser) -> Result<Option<Option<DigestHa1>>, ApiError> {
    let on = b.rtsp_digest.unwrap_or(current.rtsp_digest());
    if !on {
        return Ok(current.rtsp_digest().then_some(None));
    }
    let username = b.username.as_deref().unwrap_or(&current.username);
    if let Some(password) = &b.password {
        return Ok(Some(Some(DigestHa1::new(digest_ha1(username, password)))));
    }
    if !current.rtsp_digest() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "/password",
            "required to turn rtsp_digest on: the RTSP Digest credential is computed from the \
             password, which is not stored",
        )]));
    }
    if username != current.username {
        return Err(ApiError::Validation(vec![FieldError::new(
            "/password",
            "required to rename a user with rtsp_digest on: the RTSP Digest credential \
             includes the username (or turn rtsp_digest off)",
        )]));
    }
    Ok(None)
}

/// Deletes a user and the ACL rules that name it.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 409, description = "The last admin cannot be deleted", body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[delete("/users/{id}")]
pub async fn delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let id = parse_id(&id)?;
    state.store.delete_user(id, &caller.actor()).await?;
    state.sync().await;
    Ok(HttpResponse::NoContent().finish())
}
