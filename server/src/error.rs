//! One error type for the server. Each variant maps to a stable [`ErrorCode`] and an HTTP
//! status; the client sees only the code and a field name. Details for operators go to
//! the log as static text, never a value from a request or a record.

use clinicdesk_protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("bad request: {field}")]
    BadRequest { field: &'static str },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid second factor")]
    InvalidSecondFactor,
    #[error("weak password")]
    WeakPassword,
    #[error("too many attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("session expired")]
    SessionExpired,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("invalid enrollment code")]
    InvalidEnrollmentCode,
    #[error("device unknown")]
    DeviceUnknown,
    #[error("device revoked")]
    DeviceRevoked,
    #[error("invalid signature: {field}")]
    InvalidSignature { field: &'static str },
    #[error("audit chain broken")]
    AuditChainBroken,
    #[error("conflict: {field}")]
    Conflict { field: &'static str },
    /// An update based on a version that is no longer the stored one: the stored version,
    /// and the fields it changed since.
    #[error("stale version")]
    StaleVersion {
        current_version: u64,
        fields: Vec<&'static str>,
    },
    /// A registration that matches patients already on file.
    #[error("possible duplicate")]
    PossibleDuplicate { candidates: Vec<uuid::Uuid> },
    /// A write of a field the caller's role may not write.
    #[error("forbidden field: {field}")]
    ForbiddenField { field: &'static str },
    /// The database could not write for lack of space ([`crate::store::capacity`]).
    #[error("storage full")]
    StorageFull,
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<sqlx::Error> for ServerError {
    fn from(e: sqlx::Error) -> Self {
        if crate::store::capacity::is_full(&e) {
            crate::store::capacity::note_full();
            return ServerError::StorageFull;
        }
        ServerError::Database(e)
    }
}

impl ServerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ServerError::BadRequest { .. } => ErrorCode::BadRequest,
            ServerError::Unauthenticated => ErrorCode::Unauthenticated,
            ServerError::InvalidCredentials => ErrorCode::InvalidCredentials,
            ServerError::InvalidSecondFactor => ErrorCode::InvalidSecondFactor,
            ServerError::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            ServerError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ServerError::WeakPassword => ErrorCode::WeakPassword,
            ServerError::SessionExpired => ErrorCode::SessionExpired,
            ServerError::Forbidden => ErrorCode::Forbidden,
            ServerError::NotFound => ErrorCode::NotFound,
            ServerError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ServerError::InvalidEnrollmentCode => ErrorCode::InvalidEnrollmentCode,
            ServerError::DeviceUnknown => ErrorCode::DeviceUnknown,
            ServerError::DeviceRevoked => ErrorCode::DeviceRevoked,
            ServerError::InvalidSignature { .. } => ErrorCode::InvalidSignature,
            ServerError::AuditChainBroken => ErrorCode::AuditChainBroken,
            ServerError::Conflict { .. } | ServerError::StaleVersion { .. } => ErrorCode::Conflict,
            ServerError::PossibleDuplicate { .. } => ErrorCode::PossibleDuplicate,
            ServerError::ForbiddenField { .. } => ErrorCode::Forbidden,
            ServerError::StorageFull => ErrorCode::StorageFull,
            ServerError::Database(_) | ServerError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            ServerError::WeakPassword => Some("password"),
            ServerError::BadRequest { field }
            | ServerError::InvalidSignature { field }
            | ServerError::Conflict { field }
            | ServerError::ForbiddenField { field } => Some(field),
            _ => None,
        }
    }
}
