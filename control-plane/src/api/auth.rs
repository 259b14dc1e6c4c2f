use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::JsonBody;
use crate::auth::{Claims, ISSUER_NAME, TokenPermission, verify_password_or_dummy};
use crate::error::ApiError;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Exchanges a username and password for an access token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "Wrong username or password", body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid body", body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.0;
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let user = state.store.find_user_by_name(&username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = web::block(move || verify_password_or_dummy(&password, hash.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("password check failed: {e}")))?;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        other => {
            let reason = match other {
                None => "unknown user",
                Some(u) if u.disabled => "user disabled",
                Some(_) => "wrong password",
            };
            tracing::warn!(%username, %peer, reason, "login refused");
            return Err(ApiError::unauthorized(
                "invalid_credentials",
                "wrong username or password",
            ));
        }
    };
    let permissions = state
        .store
        .acls_of_user(user.id)
        .await?
        .into_iter()
        .filter(|r| r.user_id == Some(user.id))
        .map(|r| TokenPermission {
            action: r.action(),
            path: (!r.path_pattern.is_empty()).then_some(r.path_pattern),
        })
        .collect();
    let now = chrono::Utc::now().timestamp();
    let lifetime = state.settings.token_lifetime.as_secs();
    let claims = Claims {
        iss: ISSUER_NAME.into(),
        sub: user.id.to_string(),
        name: user.username.clone(),
        role: user.role(),
        iat: now,
        exp: now + i64::try_from(lifetime).unwrap_or(i64::MAX / 2),
        permissions,
    };
    let token = state
        .keys
        .issue(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(username = %user.username, %peer, "login");
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: lifetime,
        }))
}
