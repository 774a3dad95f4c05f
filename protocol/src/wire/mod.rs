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

/// A record's field type: which of its fields a value carries (what a read of it disclosed).
pub trait FieldSet {
    fn present(&self) -> Vec<&'static str>;
}

/// A record's fields as the wire carries them: each optional, absent when the reader may
/// not see it (or, in a change, when it is not changed), with the helpers the record layer
/// needs. `Debug` names the fields present, never a value.
macro_rules! record_fields {
    ($(#[$sdoc:meta])* $name:ident { $($(#[$doc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$sdoc])*
        #[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// Every field's name, in the order of the JSON and of the policy table.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The names of the fields present.
            pub fn present(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.$field.is_some() { names.push(stringify!($field)); })*
                names
            }

            /// Drops every field whose name `keep` refuses.
            pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
                $(if !keep(stringify!($field)) { self.$field = None; })*
            }

            /// The names of the fields whose values differ between the two.
            pub fn differing(&self, other: &Self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.$field != other.$field { names.push(stringify!($field)); })*
                names
            }

            /// Sets every field `change` carries; leaves the others as they are.
            pub fn apply(&mut self, change: &Self) {
                $(if let Some(v) = &change.$field { self.$field = Some(v.clone()); })*
            }

            /// Every field present: an absent one gets its type's empty value.
            pub fn with_defaults(mut self) -> Self {
                $(if self.$field.is_none() { self.$field = Some(<$ty>::default()); })*
                self
            }
        }

        impl $crate::wire::FieldSet for $name {
            fn present(&self) -> Vec<&'static str> {
                $name::present(self)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.present()).finish()
            }
        }
    };
}

mod audit;
mod break_glass;
mod care_team;
mod clinics;
mod devices;
mod health;
mod imports;
pub mod mfa;
mod patients;
mod records;
mod schedule;
mod session;
mod sync;
mod users;

pub use audit::{
    AuditAlerts, AuditPage, AuditReceipt, AuditRecord, AuditUpload, FlaggedClaim,
    MAX_FLAGGED_CLAIMS, OutstandingRange, ReceivedAfterRevocation, TamperAlert,
};
pub use break_glass::{
    BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassGrant, BreakGlassQueue, BreakGlassReason,
    BreakGlassRequest, BreakGlassReview, REVIEW_NOTE_MAX, REVIEWER_COOLING_OFF_DAYS, ReviewNote,
    ReviewRequest,
};
pub use care_team::{CareTeam, CareTeamAddition, StaffMember};
pub use clinics::{ClinicProvisioned, ClinicSettings, NewClinic, ReviewersChange, TimeZoneChange};
pub use devices::{
    DeviceList, DeviceSummary, EnrollRequest, EnrollResponse, EnrollmentCodeIssued, EscrowRelease,
    EscrowedSecret, OfflineCopyHeld, OfflineCopyReport,
};
pub use health::Health;
pub use imports::{
    DirectoryEntry, DirectoryLink, ImportJob, ImportSkip, ImportStatus, ImportTally,
    PractitionerDirectory,
};
pub use patients::{ClinicalAccess, ClinicalSummary, Patient};
pub use records::{
    Address, CoverageChange, CoverageFields, CoverageHistory, CoverageList, CoverageRecord,
    DayPatient, DayPatients, EmergencyContact, Gender, HumanName, Identifier, PatientFields,
    PatientHistory, PatientRecord, PatientRegistration, PatientSearchPage, PatientUpdate,
    RecordHistory, RecordVersion, RecordWritten, SEARCH_PAGE_MAX, SubscriberRelationship,
};
pub use schedule::{
    Appointment, AppointmentFields, AppointmentHistory, AppointmentList, AppointmentRecord,
    AppointmentStatus, AppointmentUpdate, FreeSlots, NewAppointment, PractitionerList, Weekday,
    WorkingHours, WorkingHoursChange, WorkingPeriod,
};
pub use session::{
    ChallengeRequest, ChallengeResponse, LoginRequest, LoginResponse, MFA_GRANT_MS, PasswordChange,
    ProofKey, UserInfo,
};
pub use sync::{SYNC_PAGE_MAX, SYNC_WINDOW_MAX_DAYS, SyncPage, SyncedPatient};
pub use users::{NewUser, RoleChange, UserList, UserSummary};

// Their old paths: the server and the app import them from here.
pub use crate::proof::{escrow_proof_bytes, login_proof_bytes};
