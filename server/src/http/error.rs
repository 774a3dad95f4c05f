//! Errors as HTTP answers: a status and `{code, field}`, never a value (BRIEF 7).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clinicdesk_protocol::ApiError;

use crate::error::ServerError;

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = status(&self);
        if status.is_server_error() {
            // sqlx errors name tables and constraints, not row values; bodies never reach here.
            tracing::error!(error = %self, source = ?std::error::Error::source(&self).map(|s| s.to_string()), "request failed");
        }
        let mut body = ApiError::new(self.code());
        body.field = self.field().map(str::to_owned);
        match &self {
            ServerError::StaleVersion {
                current_version,
                fields,
            } => {
                body.current_version = Some(*current_version);
                body.fields = fields.iter().map(|f| (*f).to_owned()).collect();
            }
            ServerError::PossibleDuplicate { candidates } => body.candidates = candidates.clone(),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let ServerError::TooManyAttempts { retry_after_secs } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}

/// The HTTP status of an error: the one place errors meet HTTP.
fn status(error: &ServerError) -> StatusCode {
    match error {
        ServerError::BadRequest { .. }
        | ServerError::InvalidSignature { .. }
        | ServerError::WeakPassword => StatusCode::BAD_REQUEST,
        ServerError::Unauthenticated
        | ServerError::InvalidCredentials
        | ServerError::InvalidSecondFactor
        | ServerError::SessionExpired
        | ServerError::InvalidEnrollmentCode
        | ServerError::DeviceUnknown => StatusCode::UNAUTHORIZED,
        ServerError::Forbidden
        | ServerError::ForbiddenField { .. }
        | ServerError::DeviceRevoked => StatusCode::FORBIDDEN,
        ServerError::NotFound => StatusCode::NOT_FOUND,
        ServerError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ServerError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServerError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ServerError::AuditChainBroken
        | ServerError::Conflict { .. }
        | ServerError::StaleVersion { .. }
        | ServerError::PossibleDuplicate { .. } => StatusCode::CONFLICT,
        ServerError::StorageFull => StatusCode::SERVICE_UNAVAILABLE,
        ServerError::Database(_) | ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
