//! Request and response bodies of the `/v1` API and of the app's commands.
//!
//! Fields holding PHI are `Phi<_>` so they never print; hidden fields are absent from the
//! JSON (not null) when a role may not read them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{Hash32, SignedAuditEvent};
use crate::merkle::{InclusionEvidence, ProofError, SignedCheckpoint, verify_inclusion};
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
    /// The workstation's device secret (32 bytes as hex), which the server keeps sealed
    /// under its escrow key so the device can recover it if its OS keychain loses it
    /// ([`EscrowRelease`]). The server never uses it otherwise.
    pub device_secret: String,
    /// The device's Ed25519 recovery key (32 bytes as hex). Its private half stays on the
    /// workstation, sealed under the device secret and, for each user who signed in there,
    /// under that user's password alone; it proves "this enrolled device" when the keychain
    /// (and with it the device key) is gone.
    pub recovery_public_key: String,
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
    /// The server's Ed25519 audit key (hex), which signs receipts and checkpoints. The
    /// device pins it here, over the channel it already pinned, and trusts no other.
    pub audit_public_key: String,
}

/// A user of the clinic, as its admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub active: bool,
    /// The second factors set up (empty: the next sign-in sets one up).
    pub mfa: Vec<crate::mfa::MfaMethod>,
    /// The user still signs in with a first password someone else chose, and replaces it
    /// at that sign-in.
    #[serde(default)]
    pub first_password_pending: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    /// Active users first, then by username.
    pub users: Vec<UserSummary>,
}

/// A user an admin creates. The password is the first one; the user sets up a second
/// factor at their first sign-in.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    /// 3 to 40 of `a-z 0-9 . _ -`.
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// At least 12 characters and hard to guess (checked against breach and common-word
    /// lists and the user's own names). A first password: it signs the user in once, to
    /// choose their own, within 72 hours.
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A signed-in user changes their own password; every session and grant of theirs ends.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub current_password: String,
    /// The same rules as an admin's first password.
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange(<redacted>)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleChange {
    pub role: Role,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Active workstations first, then revoked ones; by name.
    pub devices: Vec<DeviceSummary>,
}

/// A one-time enrollment code an admin asked for; it is shown once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentCodeIssued {
    pub enrollment_code: String,
    /// RFC 3339, UTC: 15 minutes after issue.
    pub expires_at: String,
}

impl std::fmt::Debug for EnrollmentCodeIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentCodeIssued")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
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
    /// Which of the device's keys made `device_signature`. A login proven with the
    /// recovery key always asks for a fresh second factor.
    #[serde(default)]
    pub proof_key: ProofKey,
    /// A grant from an earlier second factor of this user on this device
    /// ([`LoginResponse::mfa_grant`]); while it lives, the password login signs in directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_grant: Option<String>,
    /// The app's version, shown to admins in the device list (at most 40 printable ASCII).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

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

/// Asks for this device's escrowed secret, from a session opened on this device, proving
/// the recovery key again over a fresh nonce (`POST /v1/auth/challenge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EscrowRelease {
    pub nonce: String,
    /// Ed25519 signature of the recovery key over [`escrow_proof_bytes`], as hex.
    pub recovery_signature: String,
}

/// The escrowed device secret, released to the device it belongs to.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EscrowedSecret {
    /// 32 bytes as hex.
    pub device_secret: String,
}

impl std::fmt::Debug for EscrowedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EscrowedSecret(<redacted>)")
    }
}

/// The bytes a device's recovery key signs to have its escrowed secret released.
pub fn escrow_proof_bytes(nonce: &str, device_id: Uuid) -> Vec<u8> {
    let mut out = b"clinicdesk-escrow-release-v1\0".to_vec();
    for part in [nonce.as_bytes(), device_id.as_bytes()] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
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
    /// Issued when this login proved a second factor: lets the same user on the same device
    /// sign in with the password and device key alone until it expires (12 hours) or is
    /// revoked, so unlocking a locked screen does not ask for a code each time. The app keeps
    /// it only inside the user's encrypted cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_grant: Option<String>,
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
    /// The clinic's medical record number (empty in copies cached before it existed).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mrn: Phi<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phone: Phi<String>,
    /// Present only when the caller may read this patient's clinical content: a clinician
    /// of the patient's care team, or one who broke the glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical: Option<ClinicalSummary>,
    /// Why `clinical` is there or not.
    #[serde(default)]
    pub clinical_access: ClinicalAccess,
    /// The break-glass grant the clinical summary was read under; present exactly when
    /// `clinical_access` is `break_glass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassGrant>,
}

/// How much of a patient's chart the caller sees, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClinicalAccess {
    /// The caller's role reads no clinical content.
    #[default]
    NotPermitted,
    /// The patient is on the caller's care team.
    CareTeam,
    /// The caller's role reads clinical content, but this patient is outside their care
    /// team: the summary is withheld unless they break the glass.
    OutsideCareTeam,
    /// Read under a break-glass grant: every access is flagged for an admin's review.
    BreakGlass,
}

/// Why a clinician reads a chart outside their care team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BreakGlassReason {
    /// The patient needs care now and their own clinicians are not available.
    Emergency,
    /// Covering for a colleague who is away.
    CoveringColleague,
    /// Coordinating care the patient receives elsewhere (referral, discharge, results).
    ContinuityOfCare,
    /// Anything else; the text must say what.
    Other,
}

impl BreakGlassReason {
    pub const ALL: [BreakGlassReason; 4] = [
        BreakGlassReason::Emergency,
        BreakGlassReason::CoveringColleague,
        BreakGlassReason::ContinuityOfCare,
        BreakGlassReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakGlassReason::Emergency => "emergency",
            BreakGlassReason::CoveringColleague => "covering_colleague",
            BreakGlassReason::ContinuityOfCare => "continuity_of_care",
            BreakGlassReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// How the app names the reason.
    pub fn label(self) -> &'static str {
        match self {
            BreakGlassReason::Emergency => "Emergency",
            BreakGlassReason::CoveringColleague => "Covering for a colleague",
            BreakGlassReason::ContinuityOfCare => "Continuity of care",
            BreakGlassReason::Other => "Other",
        }
    }
}

/// Longest break-glass reason text, in characters.
pub const BREAK_GLASS_TEXT_MAX: usize = 500;
/// How long a break-glass grant lasts.
pub const BREAK_GLASS_MINUTES: i64 = 60;

/// A clinician's request to read a chart outside their care team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassRequest {
    pub reason_code: BreakGlassReason,
    /// The clinician's own words (required, at most 500 characters). It may mention
    /// clinical facts, so it is handled as PHI.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason_text: Phi<String>,
}

/// Temporary access to one patient's chart for one clinician.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassGrant {
    pub grant_id: Uuid,
    pub patient_id: Uuid,
    pub reason_code: BreakGlassReason,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason_text: Phi<String>,
    pub granted_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One break-glass grant as an admin reviews it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassReview {
    pub grant: BreakGlassGrant,
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    /// Audit events the clinic holds for this user and patient while the grant lasted.
    pub events_during: u64,
    /// Absent while the grant waits for review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<ReviewNote>,
}

/// An admin's acknowledgement of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewNote {
    pub reviewed_by: Uuid,
    pub reviewed_at_ms: i64,
    /// Free text about a patient's chart access: treated as PHI (redacted in Debug).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub note: Phi<String>,
}

/// The clinic's break-glass grants, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassQueue {
    pub grants: Vec<BreakGlassReview>,
}

/// An admin's note acknowledging a grant (required, at most 1000 characters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub note: Phi<String>,
}

/// A member of the clinic's staff as a care team shows them: no PHI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StaffMember {
    pub user_id: Uuid,
    pub display_name: String,
}

/// The clinicians who read a patient's chart without break-glass, and the clinic's active
/// clinicians who could be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CareTeam {
    pub patient_id: Uuid,
    /// By display name.
    pub members: Vec<StaffMember>,
    /// Active clinicians of the clinic not on the team, by display name.
    pub others: Vec<StaffMember>,
}

/// Puts a clinician on a patient's care team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CareTeamAddition {
    pub clinician_id: Uuid,
}

/// Longest review note, in characters.
pub const REVIEW_NOTE_MAX: usize = 1000;

impl Patient {
    /// The names of the fields this value carries, for the audit event.
    pub fn field_names(&self) -> Vec<String> {
        let mut fields = vec!["name", "birth_date", "mrn", "phone"];
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

/// The server's signed answer to an upload. The client forgets its events up to
/// `highest_contiguous_seq` only after checking the signature (with the audit key it
/// pinned at enrollment), that `contiguous_hash` is the hash of its own event at that
/// sequence, and that `inclusion` proves that event is in the signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditReceipt {
    pub device_id: Uuid,
    /// The highest device sequence number stored with every one before it (0: none).
    pub highest_contiguous_seq: u64,
    /// The hash of the stored event at `highest_contiguous_seq` (zeros when 0).
    pub contiguous_hash: Hash32,
    /// Sequence numbers of this batch at which the server already holds a *different*
    /// event: kept as tamper alerts for the clinic's admins, never stored as the chain.
    pub forked: Vec<u64>,
    /// The clinic's log, signed, including the event at `highest_contiguous_seq`.
    pub checkpoint: SignedCheckpoint,
    /// Inclusion of that event in `checkpoint` (absent when `highest_contiguous_seq` is 0).
    pub inclusion: Option<InclusionEvidence>,
    /// Ed25519 of [`AuditReceipt::canonical_bytes`] by the server's audit key, hex.
    pub signature: String,
}

const RECEIPT_TAG: &[u8] = b"clinicdesk-receipt-v1\0";

impl AuditReceipt {
    /// The signed bytes: tag, device id (16), sequence (u64), hash (32), the forked
    /// sequence numbers (u32 count, u64 each), then the checkpoint's canonical bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.forked.len() * 8);
        out.extend_from_slice(RECEIPT_TAG);
        out.extend_from_slice(self.device_id.as_bytes());
        out.extend_from_slice(&self.highest_contiguous_seq.to_be_bytes());
        out.extend_from_slice(&self.contiguous_hash.0);
        out.extend_from_slice(
            &u32::try_from(self.forked.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for seq in &self.forked {
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out.extend_from_slice(&self.checkpoint.checkpoint.canonical_bytes());
        out
    }

    /// Checks the inclusion proof of the contiguous event against the checkpoint (the
    /// signatures are checked by the holder of the server's key).
    pub fn check_inclusion(&self) -> Result<(), ProofError> {
        let cp = &self.checkpoint.checkpoint;
        match (&self.inclusion, self.highest_contiguous_seq) {
            (None, 0) => Ok(()),
            (Some(p), seq) if seq > 0 && p.tree_size == cp.tree_size => verify_inclusion(
                &cp.root_hash,
                cp.tree_size,
                p.leaf_index,
                &self.contiguous_hash,
                &p.hashes,
            ),
            _ => Err(ProofError::Invalid),
        }
    }
}

/// One stored audit event as the search returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    pub event: crate::audit::AuditEvent,
    pub signature: String,
    pub received_at_ms: i64,
    /// Its place in the clinic's Merkle log.
    pub leaf_index: u64,
}

/// A page of search results, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub events: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A signed event that contradicts a device's stored chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TamperAlert {
    pub device_id: Uuid,
    pub device_seq: u64,
    /// `fork` (a different event at a stored sequence) or `chain_break`.
    pub kind: String,
    pub hash: Hash32,
    pub received_at_ms: i64,
    /// The `tamper_alert` event that records this alert in the clinic's log (its inclusion
    /// proof: `GET /v1/audit/events/{id}/inclusion`).
    pub logged_event_id: Option<Uuid>,
}

/// Device sequences the server has not received although later ones arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutstandingRange {
    pub device_id: Uuid,
    pub from_seq: u64,
    pub to_seq: u64,
}

impl std::fmt::Display for OutstandingRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device {} is missing {} to {}",
            self.device_id, self.from_seq, self.to_seq
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditAlerts {
    pub tamper: Vec<TamperAlert>,
    pub outstanding: Vec<OutstandingRange>,
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
        for printed in [format!("{enroll:?}"), format!("{released:?}")] {
            assert!(!printed.contains("CANARY"), "{printed}");
        }
        // Logins without the field are device-key logins.
        let old: LoginRequest = serde_json::from_value(serde_json::json!({
            "username": "u", "password": "p", "device_id": Uuid::nil(), "nonce": "n",
            "device_signature": "s"
        }))
        .unwrap();
        assert_eq!(old.proof_key, ProofKey::Device);
        assert_ne!(
            escrow_proof_bytes("n", Uuid::nil()),
            login_proof_bytes("n", Uuid::nil(), "")
        );
    }

    #[test]
    fn hidden_clinical_summary_is_absent_not_null() {
        let p = Patient {
            id: Uuid::nil(),
            name: Phi::new("A".into()),
            birth_date: Phi::new("2000-01-01".into()),
            mrn: Phi::new("MRN-1".into()),
            phone: Phi::new("555".into()),
            clinical: None,
            clinical_access: ClinicalAccess::NotPermitted,
            break_glass: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("\"clinical\""), "{json}");
        assert!(!json.contains("break_glass"), "{json}");
        assert!(
            json.contains("\"clinical_access\":\"not_permitted\""),
            "{json}"
        );
        assert_eq!(p.field_names(), vec!["name", "birth_date", "mrn", "phone"]);
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

/// The operator's request for a new clinic with its first admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewClinic {
    /// Chosen by the caller, 8 to 64 letters, digits, `-` or `_`: a retry with the same key
    /// and body answers for the same clinic (with fresh one-time codes while its admin has
    /// not signed in); the same key with another body is a conflict.
    pub idempotency_key: String,
    pub clinic_name: String,
    pub admin_username: String,
    pub admin_display_name: String,
}

/// A provisioned clinic: what its first admin needs to start, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicProvisioned {
    pub clinic_id: Uuid,
    pub clinic_name: String,
    pub admin_user_id: Uuid,
    pub admin_username: String,
    /// The admin's one-time first password: it signs in once, to choose their own password
    /// and set up a second factor, until it expires.
    pub first_password: String,
    /// RFC 3339, UTC.
    pub first_password_expires_at: String,
    /// Enrolls the clinic's first workstation.
    pub enrollment_code: String,
    /// RFC 3339, UTC.
    pub enrollment_code_expires_at: String,
}

impl std::fmt::Debug for ClinicProvisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClinicProvisioned")
            .field("clinic_id", &self.clinic_id)
            .field("admin_user_id", &self.admin_user_id)
            .finish_non_exhaustive()
    }
}
