//! The app core's error type. Each variant maps to a stable `ErrorCode` for the UI;
//! `Display` never carries a value from a record or from what a user typed.

use clinicdesk_protocol::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("locked")]
    Locked,
    #[error("not enrolled")]
    NotEnrolled,
    #[error("already enrolled")]
    AlreadyEnrolled,
    #[error("not signed in")]
    SignedOut,
    #[error("bad input: {0}")]
    BadInput(&'static str),
    #[error("keychain unavailable")]
    Keychain(#[from] crate::secrets::keychain::KeychainError),
    #[error("local database unavailable")]
    Cache(#[from] crate::local::db::DbError),
    #[error("password does not open this user's cache")]
    WrongPassword,
    #[error("device revoked")]
    DeviceRevoked,
    #[error("offline longer than the clinic allows")]
    OfflineTooLong,
    #[error("offline past the second factor's 12 hours")]
    OfflineNeedsSecondFactor,
    #[error("server unreachable")]
    Unreachable,
    /// The connection reached something whose certificate the pinned CA did not sign (or
    /// that spoke no TLS): an error in its own right, never a reason to work offline.
    #[error("server not trusted")]
    NotTrusted,
    #[error("server refused: {0}")]
    Server(ApiError),
    #[error("configuration: {0}")]
    Config(&'static str),
    #[error("local file: {0}")]
    Io(&'static str, #[source] std::io::Error),
    #[error("internal: {0}")]
    Internal(&'static str),
    /// The server's audit receipt is not signed by the pinned key, or does not prove what
    /// it claims: nothing is forgotten from the outbox.
    #[error("audit receipt rejected: {0}")]
    BadReceipt(&'static str),
    /// Sign out would remove the user's cache with changes the server does not have yet.
    #[error("changes not yet sent")]
    UnsentChanges,
    #[error("security key: {0}")]
    SecurityKey(#[from] crate::os::security_key::SecurityKeyError),
}

impl AppError {
    /// What the UI receives.
    pub fn to_api(&self) -> ApiError {
        match self {
            AppError::Locked => ApiError::new(ErrorCode::Locked),
            AppError::NotEnrolled => ApiError::new(ErrorCode::NotEnrolled),
            AppError::AlreadyEnrolled => ApiError::with_field(ErrorCode::Conflict, "enrollment"),
            AppError::SignedOut => ApiError::new(ErrorCode::Unauthenticated),
            AppError::BadInput(field) => ApiError::with_field(ErrorCode::BadRequest, field),
            AppError::Keychain(_) => ApiError::new(ErrorCode::KeychainUnavailable),
            AppError::Cache(crate::local::db::DbError::Full) => {
                ApiError::with_field(ErrorCode::StorageFull, "workstation")
            }
            AppError::Cache(_) => ApiError::new(ErrorCode::CacheUnavailable),
            // The same answer the server gives for a wrong password.
            AppError::WrongPassword => ApiError::new(ErrorCode::InvalidCredentials),
            AppError::DeviceRevoked => ApiError::new(ErrorCode::DeviceRevoked),
            AppError::OfflineTooLong => ApiError::new(ErrorCode::OfflineTooLong),
            AppError::OfflineNeedsSecondFactor => {
                ApiError::new(ErrorCode::OfflineNeedsSecondFactor)
            }
            AppError::Unreachable => ApiError::new(ErrorCode::ServerUnreachable),
            AppError::NotTrusted => ApiError::new(ErrorCode::ServerNotTrusted),
            AppError::Server(e) => e.clone(),
            AppError::Config(field) => ApiError::with_field(ErrorCode::BadRequest, field),
            AppError::Io(..) | AppError::Internal(_) => ApiError::new(ErrorCode::Internal),
            AppError::BadReceipt(_) => ApiError::with_field(ErrorCode::Internal, "receipt"),
            AppError::UnsentChanges => ApiError::with_field(ErrorCode::Conflict, "unsent_changes"),
            AppError::SecurityKey(e) => {
                use crate::os::security_key::SecurityKeyError as K;
                let field = match e {
                    K::NoAnswer | K::Refused | K::BadOptions => "security_key",
                    K::Cancelled => "security_key_cancelled",
                    K::PinPaused => "security_key_pin_paused",
                    K::PinBlocked => "security_key_pin_blocked",
                    K::NoPin => "security_key_no_pin",
                    K::Unsupported => "security_key_unsupported",
                    K::NotAsked => return ApiError::with_field(ErrorCode::Conflict, "pin"),
                };
                ApiError::with_field(ErrorCode::InvalidSecondFactor, field)
            }
        }
    }
}
