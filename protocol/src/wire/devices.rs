//! `/v1/devices`: enrolling a workstation, the admins' list and enrollment codes, and the
//! escrowed device secret's release.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secret::Secret;

/// Registers a workstation's Ed25519 public key with a one-time code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollRequest {
    pub enrollment_code: Secret,
    pub device_name: String,
    /// Ed25519 public key, 32 bytes as lowercase hex.
    pub public_key: String,
    /// The workstation's device secret (32 bytes as hex), which the server keeps sealed
    /// under its escrow key so the device can recover it if its OS keychain loses it
    /// ([`EscrowRelease`]). The server never uses it otherwise.
    pub device_secret: Secret,
    /// The device's Ed25519 recovery key (32 bytes as hex). Its private half stays on the
    /// workstation, sealed under the device secret and, for each user who signed in there,
    /// under that user's password alone; it proves "this enrolled device" when the keychain
    /// (and with it the device key) is gone.
    pub recovery_public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    pub device_id: Uuid,
    pub clinic_id: Uuid,
    pub clinic_name: String,
    /// The server's Ed25519 audit key (hex), which signs receipts and checkpoints. The
    /// device pins it here, over the channel it already pinned, and trusts no other.
    pub audit_public_key: String,
}

/// A workstation of the clinic, as its admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSummary {
    pub id: Uuid,
    pub name: String,
    /// RFC 3339, UTC.
    pub enrolled_at: String,
    /// The admin who issued its enrollment code; absent when the operator's console did.
    pub enrolled_by: Option<String>,
    /// Its last sign-in or audit upload (RFC 3339, UTC).
    pub last_seen_at: Option<String>,
    pub app_version: Option<String>,
    pub revoked_at: Option<String>,
    /// The highest audit sequence received with every earlier one present.
    pub audit_contiguous_seq: u64,
    /// Audit events known to be missing: sequence numbers below the highest received that
    /// have not arrived (see the alerts for the ranges).
    pub audit_outstanding: u64,
    /// What its users' offline copies hold, as it last said (counts only); absent when no
    /// user on it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_copy: Option<OfflineCopyHeld>,
}

/// The offline copies on one workstation together: how many users hold one, how many
/// patients they hold in all (a patient in two users' copies counts twice), and when the
/// workstation last said so (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfflineCopyHeld {
    pub users: u64,
    pub patients: u64,
    pub reported_at: String,
}

/// `PUT /v1/devices/this/offline-copy`: what the signed-in user's offline copy on the
/// session's workstation holds after a refresh. Counts only: no patient is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OfflineCopyReport {
    pub patients: u64,
    pub days: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Active workstations first, then revoked ones; by name.
    pub devices: Vec<DeviceSummary>,
}

/// A one-time enrollment code an admin asked for; it is shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentCodeIssued {
    pub enrollment_code: Secret,
    /// RFC 3339, UTC: 15 minutes after issue.
    pub expires_at: String,
}

/// Asks for this device's escrowed secret, from a session opened on this device, proving
/// the recovery key again over a fresh nonce (`POST /v1/auth/challenge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EscrowRelease {
    pub nonce: String,
    /// Ed25519 signature of the recovery key over
    /// [`escrow_proof_bytes`](crate::proof::escrow_proof_bytes), as hex.
    pub recovery_signature: String,
}

/// The escrowed device secret, released to the device it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EscrowedSecret {
    /// 32 bytes as hex.
    pub device_secret: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_escrow_bodies_hides_the_device_secret() {
        let enroll = EnrollRequest {
            enrollment_code: "CANARY-code".into(),
            device_name: "Desk".into(),
            public_key: "00".into(),
            device_secret: "CANARY-secret".into(),
            recovery_public_key: "11".into(),
        };
        let released = EscrowedSecret {
            device_secret: "CANARY-secret".into(),
        };
        let issued = EnrollmentCodeIssued {
            enrollment_code: "CANARY-code".into(),
            expires_at: "2026-01-01T00:00:00Z".into(),
        };
        for printed in [
            format!("{enroll:?}"),
            format!("{released:?}"),
            format!("{issued:?}"),
        ] {
            assert!(!printed.contains("CANARY"), "{printed}");
        }
    }

    #[test]
    fn secrets_travel_as_plain_strings() {
        let json = serde_json::json!({
            "enrollment_code": "ABCD-EFGH", "device_name": "Desk", "public_key": "00",
            "device_secret": "ff".repeat(32), "recovery_public_key": "11"
        });
        let enroll: EnrollRequest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(enroll.enrollment_code.expose(), "ABCD-EFGH");
        assert_eq!(serde_json::to_value(&enroll).unwrap(), json);
    }
}
