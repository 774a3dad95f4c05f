//! The contract between the desktop app's Rust core and its UI: command results and the
//! status the UI polls. The UI holds PHI only in the values these commands return.

use serde::{Deserialize, Serialize};

use crate::mfa::MfaMethod;
use crate::secret::Secret;
use crate::wire::UserInfo;

/// Where the app is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No device key registered with a server yet.
    NotEnrolled,
    /// Enrolled; nobody signed in.
    SignedOut,
    /// The password was right; the server asks for one of the user's second factors
    /// (`AppStatus::mfa_methods`).
    SecondFactor,
    /// The password was right; the user has no second factor yet and sets one up now.
    SetUpSecondFactor,
    /// The password was a first password someone else chose (an admin, the operator): the
    /// user chooses their own now, then the second factor.
    ChooseNewPassword,
    /// A user is signed in and the cache is open.
    Unlocked,
    /// A user's session is locked: cache closed, keys dropped, password needed.
    Locked,
    /// Enrolled, but the OS keychain is locked or cannot be reached; nothing opens until
    /// it is back (there is no fallback store).
    KeychainUnavailable,
    /// Enrolled, but the keychain no longer holds this device's secret (a reset or new
    /// keyring). A user's online sign-in with a second factor gets the escrowed copy back.
    DeviceSecretMissing,
    /// The server revoked this device: its secret and every cache on it were destroyed.
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub phase: Phase,
    pub clinic_name: Option<String>,
    pub server_url: String,
    pub user: Option<UserInfo>,
    /// Seconds until the idle lock, while unlocked.
    pub idle_seconds_left: Option<u64>,
    /// Audit events waiting in the device's outbox (they upload while locked too).
    pub outbox_pending: Option<u64>,
    /// Whether the unlocked session works from the cache without a server session
    /// (unlocked while the server was unreachable).
    pub offline_session: bool,
    /// Whether the last request to the server got an answer; `None` before the first.
    pub online: Option<bool>,
    /// RFC 3339 time of the last successful audit upload.
    pub last_upload_at: Option<String>,
    /// While signing in: the second factors the server accepts for this user.
    #[serde(default)]
    pub mfa_methods: Vec<MfaMethod>,
    /// Whether this app can run a WebAuthn ceremony (an authenticator is plugged in).
    #[serde(default)]
    pub security_key: bool,
    /// While a security key ceremony runs: what the key waits for from the user.
    #[serde(default)]
    pub security_key_prompt: Option<KeyPrompt>,
    /// After a revocation: the audit events this workstation handed in to the server
    /// before it wiped itself, and those it could not.
    #[serde(default)]
    pub revocation: Option<Revocation>,
    /// While unlocked: the user's changes not yet on the server (waiting, refused or in
    /// conflict).
    #[serde(default)]
    pub unsent_changes: Option<u64>,
    /// While the offline copy of the user's days is being refreshed: how far it is.
    #[serde(default)]
    pub sync: Option<SyncProgress>,
    /// While unlocked: what the user's offline copy on this workstation holds (counts only).
    #[serde(default)]
    pub offline_copy: Option<OfflineCopy>,
}

/// What a user's offline copy holds: how many patients and days, and when it was last
/// refreshed from the server (RFC 3339; absent before the first time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineCopy {
    pub patients: u64,
    pub days: u64,
    pub refreshed_at: Option<String>,
}

/// How far a refresh of the offline copy is: days and patients pulled, of those known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub done: u64,
    pub total: u64,
}

/// What a security key waits for while the core runs a ceremony with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPrompt {
    /// No key is plugged in yet.
    InsertKey,
    /// The key waits for a touch of its button or sensor.
    TouchKey,
    /// The key asks for its PIN (user verification).
    EnterPin,
    /// The key refused the PIN just given and asks again.
    WrongPin,
}

/// What confirming a first second factor returns: the session's status, and the recovery
/// codes to show once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactorSetUp {
    pub status: AppStatus,
    pub recovery_codes: Vec<Secret>,
}

/// A patient found by a search of the user's cache: enough to tell patients apart and open
/// the right chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientHit {
    pub id: uuid::Uuid,
    pub name: crate::phi::Phi<String>,
    pub birth_date: crate::phi::Phi<String>,
    pub mrn: crate::phi::Phi<String>,
}

/// What a patient search found (at most 20), and where it looked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientSearchResults {
    pub patients: Vec<PatientHit>,
    #[serde(default)]
    pub source: SearchSource,
}

/// Where a patient search looked: the server's whole clinic (online), or only the patients
/// this user's copy on this workstation holds (offline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchSource {
    Clinic,
    #[default]
    ThisWorkstation,
}

/// The kinds of change the front desk makes from the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    RegisterPatient,
    UpdatePatient,
    Book,
    ChangeAppointment,
    AddCoverage,
    UpdateCoverage,
}

/// Where a change made in the app stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChangeState {
    /// The server stored it (`version` is the record's version it made).
    Sent { version: u64 },
    /// In this user's queue, waiting for the server (offline, or not tried yet).
    Waiting,
    /// The server refused it for good: `code` and `field` say why (never a value). It stays
    /// until the user discards it.
    Refused {
        code: crate::ErrorCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// Someone changed the record since the version the change was based on: the server's
    /// version now, and the fields changed since. The user picks, field by field.
    Conflict {
        current_version: u64,
        /// Named apart from the summary's own `fields` (the two sit side by side in its
        /// JSON); the queue's rows written before read under the old name.
        #[serde(rename = "changed_since", alias = "fields")]
        fields: Vec<String>,
    },
    /// A registration that matches patients on file: the user checks the candidates and
    /// says whether it is a new person.
    PossibleDuplicate { candidates: Vec<uuid::Uuid> },
}

/// A change made in the app: what it changes and where it stands. Its values stay in the
/// encrypted queue; this names them only by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    pub change_id: uuid::Uuid,
    pub kind: ChangeKind,
    pub record_id: uuid::Uuid,
    pub patient_id: uuid::Uuid,
    /// The fields it changes.
    pub fields: Vec<String>,
    /// RFC 3339, when it was made.
    pub made_at: String,
    #[serde(flatten)]
    pub state: ChangeState,
}

/// One field of a change in conflict: the user's value and the server's now, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldConflict {
    pub field: String,
    pub mine: String,
    pub theirs: String,
}

/// The user's changes not yet on the server, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsentChanges {
    pub changes: Vec<ChangeSummary>,
}

/// What a revoked workstation did with its outbox before it wiped itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Events the server stored (those signed before the revocation).
    pub handed_in: u64,
    /// Events left in the outbox and destroyed with it: signed after the revocation, or
    /// not accepted within the attempts.
    pub left_behind: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change's summary crosses to the UI as JSON, its state flattened beside its own
    /// fields: every state must come back as it went, with no key said twice.
    #[test]
    fn a_change_summary_round_trips_in_every_state() {
        let states = [
            ChangeState::Waiting,
            ChangeState::Sent { version: 3 },
            ChangeState::Refused {
                code: crate::ErrorCode::Forbidden,
                field: Some("ssn".into()),
            },
            ChangeState::Conflict {
                current_version: 4,
                fields: vec!["phone".into()],
            },
            ChangeState::PossibleDuplicate {
                candidates: vec![uuid::Uuid::from_u128(7)],
            },
        ];
        for state in states {
            let summary = ChangeSummary {
                change_id: uuid::Uuid::from_u128(1),
                kind: ChangeKind::UpdatePatient,
                record_id: uuid::Uuid::from_u128(2),
                patient_id: uuid::Uuid::from_u128(2),
                fields: vec!["phone".into(), "email".into()],
                made_at: "2026-12-07T12:00:00Z".into(),
                state,
            };
            let json = serde_json::to_string(&summary).unwrap();
            let back: Result<ChangeSummary, _> = serde_json::from_str(&json);
            assert_eq!(back.ok().as_ref(), Some(&summary), "{json}");
        }
    }

    /// A state stored in the queue before the conflict's fields had a name of their own
    /// still reads.
    #[test]
    fn a_conflict_stored_under_the_old_name_still_reads() {
        let old = r#"{"state":"conflict","current_version":4,"fields":["phone"]}"#;
        assert_eq!(
            serde_json::from_str::<ChangeState>(old).unwrap(),
            ChangeState::Conflict {
                current_version: 4,
                fields: vec!["phone".into()],
            }
        );
    }
}
