//! Request and response bodies of the `/v1` API, one file per resource; the app and the UI
//! use the same types for what they send and show.
//!
//! A body is data: fields holding PHI are `Phi<_>` and passwords, one-time codes and
//! tokens are `Secret`, so neither prints; hidden fields are absent from the JSON (not
//! null) when a role may not read them. Nothing here may import `signature` (host-only,
//! behind a feature) or any crate that holds keys or does I/O: the UI compiles this for
//! wasm32. The bytes that get signed are not defined here but in [`crate::proof`].
//!
//! Every type outside `mfa` is re-exported here, so `wire::Xyz` is its path whatever file
//! holds it; `mfa` stays a module of its own (`wire::mfa`, and `crate::mfa` as before).

mod audit;
mod break_glass;
mod care_team;
mod clinics;
mod devices;
mod health;
pub mod mfa;
mod patients;
mod records;
mod schedule;
mod session;
mod users;

pub use audit::{
    AuditAlerts, AuditPage, AuditReceipt, AuditRecord, AuditUpload, OutstandingRange,
    ReceivedAfterRevocation, TamperAlert,
};
pub use break_glass::{
    BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassGrant, BreakGlassQueue, BreakGlassReason,
    BreakGlassRequest, BreakGlassReview, REVIEW_NOTE_MAX, ReviewNote, ReviewRequest,
};
pub use care_team::{CareTeam, CareTeamAddition, StaffMember};
pub use clinics::{ClinicProvisioned, ClinicSettings, NewClinic, TimeZoneChange};
pub use devices::{
    DeviceList, DeviceSummary, EnrollRequest, EnrollResponse, EnrollmentCodeIssued, EscrowRelease,
    EscrowedSecret,
};
pub use health::Health;
pub use patients::{ClinicalAccess, ClinicalSummary, Patient};
pub use records::{
    Address, EmergencyContact, Gender, HumanName, Identifier, PatientFields, PatientRecord,
    PatientRegistration, PatientSearchPage, PatientUpdate, RecordHistory, RecordVersion,
    RecordWritten, SEARCH_PAGE_MAX,
};
pub use schedule::{Appointment, AppointmentList};
pub use session::{
    ChallengeRequest, ChallengeResponse, LoginRequest, LoginResponse, PasswordChange, ProofKey,
    UserInfo,
};
pub use users::{NewUser, RoleChange, UserList, UserSummary};

// Their old paths: the server and the app import them from here.
pub use crate::proof::{escrow_proof_bytes, login_proof_bytes};
