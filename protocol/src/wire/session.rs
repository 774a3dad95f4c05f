//! `/v1/auth`: the challenge, the password login from an enrolled device, the session it
//! opens, and a signed-in user's password change.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::policy::Role;
use crate::secret::Secret;

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
    pub password: Secret,
    pub device_id: Uuid,
    pub nonce: String,
    /// Ed25519 signature over [`login_proof_bytes`](crate::proof::login_proof_bytes), as
    /// hex.
    pub device_signature: String,
    /// Which of the device's keys made `device_signature`. A login proven with the
    /// recovery key always asks for a fresh second factor.
    #[serde(default)]
    pub proof_key: ProofKey,
    /// A grant from an earlier second factor of this user on this device
    /// ([`LoginResponse::mfa_grant`]); while it lives, the password login signs in directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_grant: Option<Secret>,
    /// The app's version, shown to admins in the device list (at most 40 printable ASCII).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// Written out, not derived, to hide the username too: it is typed before anything is
/// verified, and a password typed into that box is not a username.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// The device key a login proof is signed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProofKey {
    /// The device key, kept in the OS keychain: every ordinary login.
    #[default]
    Device,
    /// The recovery key on the workstation's disk: only to get the escrowed device secret
    /// back after the keychain lost it.
    Recovery,
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

/// How long a second factor counts for the same user on the same workstation (the server's
/// grant, [`LoginResponse::mfa_grant`]): online, the password alone signs in within it;
/// offline, the app unlocks with the password alone only within it (issue 22).
pub const MFA_GRANT_MS: i64 = 12 * 60 * 60 * 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// Opaque bearer token; the server stores only its hash.
    pub session_token: Secret,
    pub user: UserInfo,
    /// The clinic's idle-lock policy, in seconds.
    pub idle_timeout_secs: u64,
    /// The clinic's limit on working without reaching the server, in seconds: after it
    /// the app refuses to unlock its cache until an online sign-in.
    pub max_offline_secs: u64,
    /// Issued when this login proved a second factor: lets the same user on the same device
    /// sign in with the password and device key alone until it expires (12 hours) or is
    /// revoked, so unlocking a locked screen does not ask for a code each time. The app keeps
    /// it only inside the user's encrypted cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_grant: Option<Secret>,
}

/// A signed-in user changes their own password; every session and grant of theirs ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub current_password: Secret,
    /// The same rules as an admin's first password.
    pub new_password: Secret,
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
            proof_key: ProofKey::Recovery,
            mfa_grant: Some("CANARY-grant".into()),
            app_version: None,
        };
        let printed = format!("{req:?}");
        assert!(!printed.contains("CANARY"), "{printed}");
    }

    #[test]
    fn debug_of_session_and_password_change_hides_secrets() {
        let session = LoginResponse {
            session_token: "CANARY-token".into(),
            user: UserInfo {
                user_id: Uuid::nil(),
                username: "u".into(),
                display_name: "U".into(),
                role: Role::Admin,
                clinic_id: Uuid::nil(),
            },
            idle_timeout_secs: 1,
            max_offline_secs: 2,
            mfa_grant: Some("CANARY-grant".into()),
        };
        let change = PasswordChange {
            current_password: "CANARY-old".into(),
            new_password: "CANARY-new".into(),
        };
        for printed in [format!("{session:?}"), format!("{change:?}")] {
            assert!(!printed.contains("CANARY"), "{printed}");
        }
    }

    #[test]
    fn login_json_is_unchanged() {
        // Logins without `proof_key` are device-key logins.
        let json = serde_json::json!({
            "username": "u", "password": "p", "device_id": Uuid::nil(), "nonce": "n",
            "device_signature": "s"
        });
        let old: LoginRequest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(old.proof_key, ProofKey::Device);
        assert_eq!(old.password.expose(), "p");
        let mut back = serde_json::to_value(&old).unwrap();
        assert_eq!(back["proof_key"], "device");
        back.as_object_mut().unwrap().remove("proof_key");
        assert_eq!(back, json);
    }
}
