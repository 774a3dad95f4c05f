//! Request and response bodies of the `/v1` API and of the app's commands.
//!
//! Fields holding PHI are `Phi<_>` so they never print; hidden fields are absent from the
//! JSON (not null) when a role may not read them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::SignedAuditEvent;
use crate::phi::Phi;
use crate::policy::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// Registers a workstation's Ed25519 public key with a one-time code.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollRequest {
    pub enrollment_code: String,
    pub device_name: String,
    /// Ed25519 public key, 32 bytes as lowercase hex.
    pub public_key: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("enrollment_code", &"<redacted>")
            .field("device_name", &self.device_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    pub device_id: Uuid,
    pub clinic_id: Uuid,
    pub clinic_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeRequest {
    pub device_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeResponse {
    /// 32 random bytes as hex; single use, short-lived.
    pub nonce: String,
}

/// Password login from an enrolled device, proving the device key by signing the nonce.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device_id: Uuid,
    pub nonce: String,
    /// Ed25519 signature over [`login_proof_bytes`], as hex.
    pub device_signature: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// The bytes a device signs to prove its key at login: a domain tag, the nonce, the
/// device and the username, so a signature cannot be replayed for another login.
pub fn login_proof_bytes(nonce: &str, device_id: Uuid, username: &str) -> Vec<u8> {
    let mut out = b"clinicdesk-login-v1\0".to_vec();
    for part in [nonce.as_bytes(), device_id.as_bytes(), username.as_bytes()] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub clinic_id: Uuid,
}

#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// Opaque bearer token; the server stores only its hash.
    pub session_token: String,
    pub user: UserInfo,
    /// The clinic's idle-lock policy, in seconds.
    pub idle_timeout_secs: u64,
    /// The clinic's limit on working without reaching the server, in seconds: after it
    /// the app refuses to unlock its cache until an online sign-in.
    pub max_offline_secs: u64,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Appointment {
    pub id: Uuid,
    pub patient_id: Uuid,
    /// RFC 3339, UTC.
    pub starts_at: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub patient_name: Phi<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Phi<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppointmentList {
    /// The day listed, `YYYY-MM-DD` (UTC).
    pub date: String,
    pub appointments: Vec<Appointment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicalSummary {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub allergies: Phi<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub problems: Phi<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub medications: Phi<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Patient {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Phi<String>,
    /// `YYYY-MM-DD`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub birth_date: Phi<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phone: Phi<String>,
    /// Present only for roles that may read clinical content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical: Option<ClinicalSummary>,
}

impl Patient {
    /// The names of the fields this value carries, for the audit event.
    pub fn field_names(&self) -> Vec<String> {
        let mut fields = vec!["name", "birth_date", "phone"];
        if self.clinical.is_some() {
            fields.extend(["allergies", "problems", "medications"]);
        }
        fields.into_iter().map(str::to_owned).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditUpload {
    /// The device that signed every event in the batch; its registered key is the
    /// upload's credential, so a locked app keeps uploading without a user session.
    pub device_id: Uuid,
    pub events: Vec<SignedAuditEvent>,
}

/// What the server stored; the client forgets exactly these events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditReceipt {
    pub stored: Vec<Uuid>,
    /// The highest device sequence number stored without a gap.
    pub highest_contiguous_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_login_hides_password_and_username() {
        let req = LoginRequest {
            username: "CANARY-user".into(),
            password: "CANARY-pass".into(),
            device_id: Uuid::nil(),
            nonce: "n".into(),
            device_signature: "s".into(),
        };
        let printed = format!("{req:?}");
        assert!(!printed.contains("CANARY"), "{printed}");
    }

    #[test]
    fn hidden_clinical_summary_is_absent_not_null() {
        let p = Patient {
            id: Uuid::nil(),
            name: Phi::new("A".into()),
            birth_date: Phi::new("2000-01-01".into()),
            phone: Phi::new("555".into()),
            clinical: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("clinical"), "{json}");
        assert_eq!(p.field_names(), vec!["name", "birth_date", "phone"]);
    }

    #[test]
    fn login_proof_binds_every_part() {
        let d = Uuid::from_u128(7);
        let base = login_proof_bytes("n1", d, "u");
        assert_ne!(base, login_proof_bytes("n2", d, "u"));
        assert_ne!(base, login_proof_bytes("n1", Uuid::from_u128(8), "u"));
        assert_ne!(base, login_proof_bytes("n1", d, "v"));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            login_proof_bytes("ab", d, "c"),
            login_proof_bytes("a", d, "bc")
        );
    }
}
