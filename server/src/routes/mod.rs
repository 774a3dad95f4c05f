//! HTTP handlers, one module per resource. Handlers parse, call the store through the
//! caller's `ClinicScope`, and shape the response; authorization already happened.

pub mod audit;
pub mod devices;
pub mod health;
pub mod mfa;
pub mod patients;
pub mod schedule;
pub mod session;
pub mod users;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};

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
            Err(_) => Err(ServerError::BadRequest { field: "body" }),
        }
    }
}
