//! Request extractors that turn every malformed input into a precise problem document:
//! JSON bodies (content type, size, syntax, field types) and bearer tokens.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use crate::domain::Role;
use crate::error::{ApiError, FieldError};
use crate::hub::UserBrief;
use crate::store::{Actor, StoreError};

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// A JSON request body deserialised into `T`; see [`parse_json`] for the error mapping.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(64 * 1024, |s| s.settings.max_body_bytes);
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType);
            }
            if declared_len.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::BadRequest(format!("cannot read the request body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(JsonBody)
        })
    }
}

/// Syntax errors are 400 `malformed_json`; well-formed JSON of the wrong shape (unknown field,
/// wrong type, missing field) is 422 with a JSON pointer to the culprit.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(err) => {
            let pointer = json_pointer(err.path());
            let inner = err.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    ApiError::MalformedJson(inner.to_string())
                }
                serde_json::error::Category::Io => ApiError::BadRequest(inner.to_string()),
                serde_json::error::Category::Data => {
                    let message = strip_position(&inner.to_string());
                    let pointer = match field_named_in(&message) {
                        Some(field)
                            if pointer.is_empty() || !pointer.ends_with(&format!("/{field}")) =>
                        {
                            format!("{pointer}/{field}")
                        }
                        _ => pointer,
                    };
                    ApiError::Validation(vec![FieldError::new(pointer, message)])
                }
            });
        }
    };
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// serde names the field in "unknown field `x`" and "missing field `x`" but its path stops at
/// the parent.
fn field_named_in(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The authenticated caller of a REST request. Role and status come from the current desired
/// state, not the token, so disabling or demoting a user takes effect at once.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: Uuid,
    pub username: String,
    pub role: Option<Role>,
}

impl Caller {
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        match self.role {
            Some(role) if role >= needed => Ok(()),
            _ => Err(ApiError::Forbidden {
                needed: needed.as_str(),
            }),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            id: Some(self.id),
            name: self.username.clone(),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_string));
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let token = match auth {
                None => {
                    return Err(ApiError::unauthorized(
                        "missing_token",
                        "this route needs a bearer token: POST /api/v1/auth/login, then send Authorization: Bearer <access_token>",
                    ));
                }
                Some(Err(_)) => {
                    return Err(ApiError::unauthorized(
                        "invalid_token",
                        "the Authorization header is not valid text",
                    ));
                }
                Some(Ok(v)) => match v.split_once(' ') {
                    Some((scheme, token))
                        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
                    {
                        token.trim().to_string()
                    }
                    _ => {
                        return Err(ApiError::unauthorized(
                            "invalid_token",
                            "expected the header Authorization: Bearer <access_token>",
                        ));
                    }
                },
            };
            let claims = state
                .keys
                .verify(&token)
                .map_err(|e| ApiError::unauthorized(e.code(), e.to_string()))?;
            let id = Uuid::parse_str(&claims.sub).map_err(|_| {
                ApiError::unauthorized("invalid_token", "the token's subject is not a user id")
            })?;
            // The published generation answers without a database round trip; a user it does
            // not know yet (created a moment ago on another control plane) is looked up.
            let user = match state.hub.user(id) {
                Some(u) => u,
                None => match state.store.get_user(id).await {
                    Ok(u) => UserBrief {
                        role: u.role(),
                        username: u.username,
                        disabled: u.disabled,
                    },
                    Err(StoreError::NotFound { .. }) => {
                        return Err(ApiError::unauthorized(
                            "invalid_token",
                            "the token's user no longer exists",
                        ));
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            if user.disabled {
                return Err(ApiError::unauthorized(
                    "user_disabled",
                    "this user is disabled",
                ));
            }
            Ok(Caller {
                id,
                username: user.username,
                role: user.role,
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
        list: Option<Vec<u8>>,
    }

    fn err(body: &str) -> ApiError {
        parse_json::<Body>(body.as_bytes()).unwrap_err()
    }

    fn pointer(e: &ApiError) -> String {
        match e {
            ApiError::Validation(errors) => errors[0].pointer.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(err("{"), ApiError::MalformedJson(_)));
        assert!(matches!(
            err("{\"name\": \"a\"} trailing"),
            ApiError::MalformedJson(_)
        ));
        assert!(matches!(err(""), ApiError::MalformedJson(_)));
    }

    #[test]
    fn shape_errors_point_at_the_field() {
        assert_eq!(pointer(&err(r#"{"name": 1}"#)), "/name");
        assert_eq!(pointer(&err(r#"{"name": "a", "bogus": 1}"#)), "/bogus");
        assert_eq!(pointer(&err(r#"{}"#)), "/name");
        assert_eq!(
            pointer(&err(r#"{"name": "a", "inner": {"port": 70000}}"#)),
            "/inner/port"
        );
        assert_eq!(
            pointer(&err(r#"{"name": "a", "list": [1, "x"]}"#)),
            "/list/1"
        );
    }
}
