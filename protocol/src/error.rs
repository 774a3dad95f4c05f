//! Stable error codes on the wire. An error names a code and at most a field, never a value
//! (BRIEF invariant 7), so nothing a user typed or a record held can leak through an error.

use serde::{Deserialize, Serialize};

/// Every error the API or the app reports, as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    InvalidCredentials,
    /// A wrong, reused or expired second-factor code or ticket.
    InvalidSecondFactor,
    /// Too many failed sign-in attempts for this account or address; wait and retry.
    TooManyAttempts,
    /// The request's body is bigger than the server takes.
    PayloadTooLarge,
    /// A new password is too short, too guessable, or on a breach list.
    WeakPassword,
    SessionExpired,
    Forbidden,
    NotFound,
    /// The path exists, but not with this HTTP method.
    MethodNotAllowed,
    InvalidEnrollmentCode,
    DeviceUnknown,
    DeviceRevoked,
    InvalidSignature,
    AuditChainBroken,
    Conflict,
    /// A registration matches a patient already on file (name and birth date, or phone):
    /// `candidates` names them; register anyway with `confirm_new_person`.
    PossibleDuplicate,
    Locked,
    NotEnrolled,
    KeychainUnavailable,
    CacheUnavailable,
    ServerUnreachable,
    OfflineTooLong,
    /// Offline past the 12 hours a second factor counts for: the password alone does not
    /// unlock; the server must be reached (and asks for the second factor).
    OfflineNeedsSecondFactor,
    /// The server's certificate is not one this workstation trusts (not the pinned CA's, or
    /// no TLS at all): never taken as "offline".
    ServerNotTrusted,
    /// The storage that must record the access is full (the server's database, or this
    /// workstation's disk, `field` `workstation`): nothing is shown or changed until it has
    /// room again, and nothing waiting is lost.
    StorageFull,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidSecondFactor,
        ErrorCode::TooManyAttempts,
        ErrorCode::PayloadTooLarge,
        ErrorCode::WeakPassword,
        ErrorCode::SessionExpired,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InvalidEnrollmentCode,
        ErrorCode::DeviceUnknown,
        ErrorCode::DeviceRevoked,
        ErrorCode::InvalidSignature,
        ErrorCode::AuditChainBroken,
        ErrorCode::Conflict,
        ErrorCode::PossibleDuplicate,
        ErrorCode::Locked,
        ErrorCode::NotEnrolled,
        ErrorCode::KeychainUnavailable,
        ErrorCode::CacheUnavailable,
        ErrorCode::ServerUnreachable,
        ErrorCode::OfflineTooLong,
        ErrorCode::OfflineNeedsSecondFactor,
        ErrorCode::ServerNotTrusted,
        ErrorCode::StorageFull,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidSecondFactor => "invalid_second_factor",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InvalidEnrollmentCode => "invalid_enrollment_code",
            ErrorCode::DeviceUnknown => "device_unknown",
            ErrorCode::DeviceRevoked => "device_revoked",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::AuditChainBroken => "audit_chain_broken",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PossibleDuplicate => "possible_duplicate",
            ErrorCode::Locked => "locked",
            ErrorCode::NotEnrolled => "not_enrolled",
            ErrorCode::KeychainUnavailable => "keychain_unavailable",
            ErrorCode::CacheUnavailable => "cache_unavailable",
            ErrorCode::ServerUnreachable => "server_unreachable",
            ErrorCode::OfflineTooLong => "offline_too_long",
            ErrorCode::OfflineNeedsSecondFactor => "offline_needs_second_factor",
            ErrorCode::ServerNotTrusted => "server_not_trusted",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error response and every failed app command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub code: ErrorCode,
    /// The request field the error is about, by name; never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On a `conflict` over a stale version: the version now stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// On a `conflict` over a stale version: the names of the fields the stored version
    /// has changed since the one the request was based on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// On `possible_duplicate`: the ids of the patients the registration matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<uuid::Uuid>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            field: None,
            current_version: None,
            fields: Vec::new(),
            candidates: Vec::new(),
        }
    }

    pub fn with_field(code: ErrorCode, field: &str) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(code)
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field})", self.code),
            None => write!(f, "{}", self.code),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes are a public contract: renaming one breaks deployed apps.
    #[test]
    fn codes_are_pinned() {
        let wire: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::to_string(c)
                    .unwrap()
                    .trim_matches('"')
                    .to_owned()
            })
            .collect();
        assert_eq!(
            wire.join(","),
            "bad_request,unauthenticated,invalid_credentials,invalid_second_factor,\
             too_many_attempts,payload_too_large,weak_password,session_expired,forbidden,not_found,\
             method_not_allowed,invalid_enrollment_code,device_unknown,device_revoked,invalid_signature,\
             audit_chain_broken,conflict,possible_duplicate,locked,not_enrolled,keychain_unavailable,\
             cache_unavailable,server_unreachable,offline_too_long,offline_needs_second_factor,\
             server_not_trusted,storage_full,internal"
        );
        for code in ErrorCode::ALL {
            assert_eq!(wire_of(code), code.as_str());
        }
    }

    fn wire_of(code: ErrorCode) -> String {
        serde_json::to_string(&code)
            .unwrap()
            .trim_matches('"')
            .to_owned()
    }

    #[test]
    fn error_body_names_field_not_value() {
        let err = ApiError::with_field(ErrorCode::BadRequest, "username");
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"code":"bad_request","field":"username"}"#
        );
    }
}
