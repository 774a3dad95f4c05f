//! The request extractors handlers use instead of axum's own, whose rejections quote the
//! value they could not parse: each rejection here is a code and a field name (BRIEF 7).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ServerError;

/// `Json` whose rejection is a code, never serde's message (which can echo a value).
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            // A body that outgrew the limit while it was read (no length declared).
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ServerError::PayloadTooLarge)
            }
            Err(_) => Err(ServerError::BadRequest { field: "body" }),
        }
    }
}

/// `Path` whose rejection names the path, never the value (axum's own message quotes it).
pub struct Id<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Id<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Id(v)),
            Err(_) => Err(ServerError::BadRequest { field: "path" }),
        }
    }
}

/// `Query` whose rejection names the query, never a value.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(_) => Err(ServerError::BadRequest { field: "query" }),
        }
    }
}

/// The version an update was based on, from `If-Match: "<version>"` (the record's `ETag`).
/// Missing or not a version: refused by the header's name.
pub struct IfMatch(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get(axum::http::header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix('"')?.strip_suffix('"')?.parse().ok())
            .map(IfMatch)
            .ok_or(ServerError::BadRequest { field: "If-Match" })
    }
}

/// The `Idempotency-Key` of a record write: the id the workstation gave the change, so that
/// the same change sent again (its answer lost) is answered with what it stored the first
/// time. Optional; malformed is `bad_request` on `Idempotency-Key`.
pub struct ChangeId(pub Option<uuid::Uuid>);

/// The header a workstation names its change with.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for ChangeId {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(ChangeId(None));
        };
        value
            .to_str()
            .ok()
            .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
            .map(|id| ChangeId(Some(id)))
            .ok_or(ServerError::BadRequest {
                field: "Idempotency-Key",
            })
    }
}

/// The `ETag` of a record at `version`: what the next `If-Match` names.
pub fn etag(version: u64) -> (axum::http::HeaderName, String) {
    (axum::http::header::ETAG, format!("\"{version}\""))
}

/// What a record write answers: the new version, in the body and as the `ETag`.
pub fn written(w: crate::clinical::records::Written) -> impl axum::response::IntoResponse {
    (
        [etag(w.version)],
        axum::Json(clinicdesk_protocol::wire::RecordWritten {
            id: w.id,
            version: w.version,
        }),
    )
}
