//! REST API: JSON over HTTP under `/api/v1`, documented by the generated OpenAPI document.
//!
//! Only this layer knows JSON DTOs; handlers validate input into store types, collecting every
//! field error before answering 422.

mod acls;
mod auth;
pub mod extract;
mod health;
mod paths;
pub mod sessions;
mod users;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::KeyRing;
use crate::error::{ApiError, FieldError, Problem};
use crate::hub::SnapshotHub;
use crate::store::{Page, Store};

/// Settings the API needs at request time.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub token_lifetime: Duration,
    pub max_body_bytes: usize,
}

pub struct AppState {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub hub: SnapshotHub,
    pub settings: ApiSettings,
}

impl AppState {
    /// After a write: publish the new generation before answering, so the caller's next request
    /// (on this process) sees its own change. Other processes learn of it through NOTIFY.
    pub async fn sync(&self) {
        if let Err(e) = self.hub.refresh(&self.store).await {
            tracing::warn!(error = %e, "cannot refresh the desired state after a write");
        }
    }
}

pub const MAX_PER_PAGE: u32 = 500;
pub const DEFAULT_PER_PAGE: u32 = 50;

/// Pagination query parameters shared by every list route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1.
    #[param(minimum = 1, default = 1)]
    pub page: Option<u32>,
    /// Items per page, 1 to 500.
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub per_page: Option<u32>,
}

impl PageParams {
    pub fn validate(&self) -> Result<Page, ApiError> {
        let mut errors = Vec::new();
        let page = self.page.unwrap_or(1);
        if page == 0 {
            errors.push(FieldError::new("/query/page", "must be at least 1"));
        }
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            errors.push(FieldError::new(
                "/query/per_page",
                format!("must be from 1 to {MAX_PER_PAGE}"),
            ));
        }
        if errors.is_empty() {
            Ok(Page { page, per_page })
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// Page metadata of every list response.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageInfo {
    pub page: u32,
    pub per_page: u32,
    /// Items matching the filters, over all pages.
    pub total: i64,
}

impl PageInfo {
    pub fn new(page: Page, total: i64) -> Self {
        PageInfo {
            page: page.page,
            per_page: page.per_page,
            total,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Streamplane control plane",
        description = "Paths, users, ACL rules and workers of a Streamplane deployment. \
            Authenticate with `POST /api/v1/auth/login` and send `Authorization: Bearer <access_token>`. \
            Errors are `application/problem+json` documents with a stable `code`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        health::healthz, health::readyz, health::jwks,
        auth::login,
        users::list_users, users::create_user, users::get_user, users::update_user, users::delete_user,
        paths::list_paths, paths::create_path, paths::get_path, paths::update_path, paths::delete_path,
        acls::list_acls, acls::create_acl, acls::get_acl, acls::update_acl, acls::delete_acl,
        workers::list_workers, workers::get_worker,
        sessions::list_sessions, sessions::kick_session,
    ),
    components(schemas(Problem, FieldError, PageInfo)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Access tokens"),
        (name = "users", description = "API and media users"),
        (name = "paths", description = "Stream paths and their sources"),
        (name = "acls", description = "Who may publish, read, play back"),
        (name = "workers", description = "Data-plane workers and their state"),
        (name = "sessions", description = "Publishers and readers on the online workers"),
        (name = "health", description = "Liveness, readiness and public keys"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = Some("JWT".into());
            components.add_security_scheme("bearer", SecurityScheme::Http(http));
        }
    }
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::BadRequest(format!("invalid query string: {err}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _| {
        ApiError::BadRequest(format!("invalid path parameter: {err}")).into()
    }))
    .service(health::healthz)
    .service(health::readyz)
    .service(health::jwks)
    .route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header(("Location", "/docs/"))
                .finish()
        }),
    )
    .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
    .service(
        web::scope("/api/v1")
            .service(auth::login)
            .service(users::list_users)
            .service(users::create_user)
            .service(users::get_user)
            .service(users::update_user)
            .service(users::delete_user)
            .service(paths::list_paths)
            .service(paths::create_path)
            .service(paths::get_path)
            .service(paths::update_path)
            .service(paths::delete_path)
            .service(acls::list_acls)
            .service(acls::create_acl)
            .service(acls::get_acl)
            .service(acls::update_acl)
            .service(acls::delete_acl)
            .service(workers::list_workers)
            .service(workers::get_worker)
            .service(sessions::list_sessions)
            .service(sessions::kick_session),
    )
    .default_service(web::to(|req: actix_web::HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::not_found(
            "route",
            format!("{} {}", req.method(), req.path()),
        ))
    }));
}

/// `Option<Option<T>>` for PATCH: absent = unchanged, `null` = clear.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
