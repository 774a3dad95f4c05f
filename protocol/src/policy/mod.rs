//! The one source of truth for who may do what: roles, permissions, and the rule for
//! every HTTP route. The server refuses to build a router with a route missing from
//! [`ROUTES`], and the app reads the same table to decide what a role may see offline.

pub mod fields;

use serde::{Deserialize, Serialize};

use crate::audit::AuditAction;

/// A user's role within one clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    FrontDesk,
    Clinician,
    Billing,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::FrontDesk, Role::Clinician, Role::Billing, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::FrontDesk => "front_desk",
            Role::Clinician => "clinician",
            Role::Billing => "billing",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What an authenticated request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Today's schedule: appointment times and patient names.
    ReadSchedule,
    /// A patient's demographics (name, date of birth, phone).
    ReadDemographics,
    /// A patient's clinical summary (allergies, problems, medications).
    ReadClinical,
    /// List and revoke the clinic's enrolled devices.
    ManageDevices,
    /// Manage the clinic's users: create, change roles, deactivate, reset second factors.
    ManageUsers,
    /// Read one patient's clinical summary outside one's care team for an hour, with a
    /// reason; every access under it is flagged and an admin reviews it.
    BreakGlass,
    /// Search the clinic's audit trail, see tamper alerts, fetch checkpoints and proofs.
    /// Audit events name patients by id and fields by name, never their content.
    ReviewAudit,
    /// See and change which clinicians are on a patient's care team (and so read their
    /// chart without break-glass): registration work at the front desk. Clinicians do not
    /// hold it, so none can add themselves to a chart outside their panel.
    ManageCareTeam,
    /// Register patients and change their registration and contact details: which fields,
    /// [`fields::FIELDS`] says.
    RegisterPatients,
    /// Change the clinic's own settings (its time zone).
    ManageClinic,
    /// Add and correct a patient's insurance coverage: the front desk and billing.
    ManageCoverage,
    /// Book, reschedule, cancel and check in appointments: which fields, [`fields::FIELDS`]
    /// says.
    ManageSchedule,
    /// Bring the clinic's records in from its old system (a FHIR export) and follow the
    /// job: writes records and reads none of them back (the job names source ids only); and
    /// link the old system's practitioners to the clinicians' accounts.
    ImportRecords,
    /// Read when a practitioner can be booked: their weekly working hours, times only (no
    /// PHI). The front desk reads every practitioner's (it also holds `ManageSchedule`); a
    /// clinician only their own, which the handler checks.
    ReadWorkingHours,
    /// Which patients are booked on a day, with their demographics and coverage and no
    /// detail of the appointment (time, practitioner, reason): billing's working list, which
    /// it needs without holding the schedule. The front desk holds it too, to check
    /// coverage before the day's visits.
    ReadDayPatients,
}

/// Minimum necessary: the permissions each role holds. Admins see no clinical content.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        Role::FrontDesk => matches!(
            permission,
            ReadSchedule
                | ReadDemographics
                | ManageCareTeam
                | RegisterPatients
                | ManageSchedule
                | ManageCoverage
                | ReadWorkingHours
                | ReadDayPatients
        ),
        Role::Clinician => matches!(
            permission,
            ReadSchedule | ReadDemographics | ReadClinical | BreakGlass | ReadWorkingHours
        ),
        Role::Billing => matches!(
            permission,
            ReadDemographics | ManageCoverage | ReadDayPatients
        ),
        Role::Admin => matches!(
            permission,
            ManageDevices | ManageUsers | ReviewAudit | ManageClinic | ImportRecords
        ),
    }
}

/// How a route is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may call it; it serves no PHI and changes nothing that needs an identity.
    Public,
    /// Proven by a one-time enrollment code in the body.
    EnrollmentCode,
    /// Proven by the device key's signature over a server nonce plus the user's password.
    DeviceAndPassword,
    /// Proven by the ticket a `DeviceAndPassword` login issued (single user, single device,
    /// minutes long, burned after a few wrong codes); the step that proves a second factor.
    MfaTicket,
    /// Proven by the registered, non-revoked device key's signature on every item of the
    /// body (audit batches, which a locked app keeps sending without a user session).
    DeviceSigned,
    /// A live operator credential (the hosting organisation's automation, not a clinic
    /// user): provisioning clinics. Created and revoked on the server's console.
    Operator,
    /// A live session whose role holds the permission.
    Session(Permission),
    /// A live session of any role (e.g. ending it).
    AnySession,
}

/// One route's rule, keyed by method and axum path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// Set on every route that reads or writes PHI: the server records each of its
    /// responses as a server-signed audit event before the response leaves.
    pub phi: Option<PhiAccess>,
    /// Set on every route that reads the audit trail itself (who looked at which patient's
    /// record, and why): each request is recorded as an `AuditTrail` event with this
    /// action, so the trail shows who searched it.
    pub trail: Option<AuditAction>,
    /// Set on every route that changes who may see a patient's chart (break-glass, care
    /// teams). A change records its own event in its transaction; a refused one (no
    /// permission for it, or answered 401, 403 or 404) is recorded by the server as a
    /// denied event of this kind, as a refused read is.
    pub refusal: Option<PhiAccess>,
}

/// How a PHI route's responses are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhiAccess {
    pub action: AuditAction,
    /// The FHIR-style resource type served, e.g. `Patient`.
    pub resource_type: &'static str,
}

const fn rule(method: &'static str, path: &'static str, access: Access) -> RouteRule {
    RouteRule {
        method,
        path,
        access,
        phi: None,
        trail: None,
        refusal: None,
    }
}

/// `r`, a route that changes who may see a chart, with its refusals recorded as events of
/// this kind (see [`RouteRule::refusal`]).
const fn refusals_recorded(
    mut r: RouteRule,
    action: AuditAction,
    resource_type: &'static str,
) -> RouteRule {
    r.refusal = Some(PhiAccess {
        action,
        resource_type,
    });
    r
}

/// A route that reads the audit trail, for those who review it.
const fn trail_rule(method: &'static str, path: &'static str, action: AuditAction) -> RouteRule {
    RouteRule {
        method,
        path,
        access: Access::Session(Permission::ReviewAudit),
        phi: None,
        trail: Some(action),
        refusal: None,
    }
}

const fn phi_rule(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    action: AuditAction,
    resource_type: &'static str,
) -> RouteRule {
    let mut r = rule(method, path, Access::Session(permission));
    r.phi = Some(PhiAccess {
        action,
        resource_type,
    });
    r
}

/// Every route the server serves. A route missing here makes the server refuse to start.
pub const ROUTES: &[RouteRule] = &[
    rule("GET", "/healthz", Access::Public),
    rule("GET", "/openapi.json", Access::Public),
    rule("POST", "/v1/clinics", Access::Operator),
    rule("POST", "/v1/devices/enroll", Access::EnrollmentCode),
    rule("POST", "/v1/auth/challenge", Access::Public),
    rule("POST", "/v1/auth/login", Access::DeviceAndPassword),
    rule("POST", "/v1/auth/password/first", Access::MfaTicket),
    rule("POST", "/v1/auth/mfa/totp", Access::MfaTicket),
    rule("POST", "/v1/auth/mfa/recovery", Access::MfaTicket),
    rule("POST", "/v1/auth/mfa/webauthn/challenge", Access::MfaTicket),
    rule("POST", "/v1/auth/mfa/webauthn", Access::MfaTicket),
    rule("POST", "/v1/auth/mfa/setup/totp", Access::MfaTicket),
    rule("POST", "/v1/auth/mfa/setup/totp/confirm", Access::MfaTicket),
    rule(
        "POST",
        "/v1/auth/mfa/setup/webauthn/challenge",
        Access::MfaTicket,
    ),
    rule("POST", "/v1/auth/mfa/setup/webauthn", Access::MfaTicket),
    rule("POST", "/v1/auth/logout", Access::AnySession),
    // What the user's offline copy on the session's workstation holds: counts, no PHI.
    rule("PUT", "/v1/devices/this/offline-copy", Access::AnySession),
    rule("POST", "/v1/auth/password", Access::AnySession),
    // The clinic's name, time zone and today's date there: every workstation needs them.
    rule("GET", "/v1/clinic", Access::AnySession),
    rule(
        "POST",
        "/v1/clinic/time-zone",
        Access::Session(Permission::ManageClinic),
    ),
    rule(
        "POST",
        "/v1/clinic/break-glass-reviewers",
        Access::Session(Permission::ManageClinic),
    ),
    // An import records each record's `create` event in the transaction that writes it.
    refusals_recorded(
        rule(
            "POST",
            "/v1/imports",
            Access::Session(Permission::ImportRecords),
        ),
        AuditAction::Create,
        "Patient",
    ),
    rule(
        "GET",
        "/v1/imports/{import_id}",
        Access::Session(Permission::ImportRecords),
    ),
    // The old system's practitioners (workforce, not patients) and the accounts they stand
    // for: each link is a version with its event.
    rule(
        "GET",
        "/v1/practitioner-directory",
        Access::Session(Permission::ImportRecords),
    ),
    rule(
        "PUT",
        "/v1/practitioner-directory/{entry_id}",
        Access::Session(Permission::ImportRecords),
    ),
    rule("GET", "/v1/users", Access::Session(Permission::ManageUsers)),
    rule(
        "POST",
        "/v1/users",
        Access::Session(Permission::ManageUsers),
    ),
    rule(
        "POST",
        "/v1/users/{user_id}/role",
        Access::Session(Permission::ManageUsers),
    ),
    rule(
        "POST",
        "/v1/users/{user_id}/deactivate",
        Access::Session(Permission::ManageUsers),
    ),
    rule(
        "POST",
        "/v1/users/{user_id}/mfa/reset",
        Access::Session(Permission::ManageUsers),
    ),
    phi_rule(
        "GET",
        "/v1/appointments",
        Permission::ReadSchedule,
        AuditAction::View,
        "Appointment",
    ),
    phi_rule(
        "GET",
        "/v1/patients/{patient_id}",
        Permission::ReadDemographics,
        AuditAction::View,
        "Patient",
    ),
    // Bookings and their changes record their own event in their transaction, like a
    // patient's; a check-in opens the visit's encounter with its own event.
    refusals_recorded(
        rule(
            "POST",
            "/v1/appointments",
            Access::Session(Permission::ManageSchedule),
        ),
        AuditAction::Create,
        "Appointment",
    ),
    refusals_recorded(
        rule(
            "PATCH",
            "/v1/appointments/{appointment_id}",
            Access::Session(Permission::ManageSchedule),
        ),
        AuditAction::Update,
        "Appointment",
    ),
    // Who can be booked: names of staff, no PHI.
    rule(
        "GET",
        "/v1/practitioners",
        Access::Session(Permission::ManageSchedule),
    ),
    // When they can be booked, and where a booking fits: times, never who holds them (no
    // PHI, so not under a PHI-reading permission); the front desk's, like the list.
    rule(
        "GET",
        "/v1/practitioners/{practitioner_id}/working-hours",
        Access::Session(Permission::ReadWorkingHours),
    ),
    rule(
        "PUT",
        "/v1/practitioners/{practitioner_id}/working-hours",
        Access::Session(Permission::ManageSchedule),
    ),
    rule(
        "GET",
        "/v1/practitioners/{practitioner_id}/free-slots",
        Access::Session(Permission::ManageSchedule),
    ),
    phi_rule(
        "GET",
        "/v1/appointments/{appointment_id}",
        Permission::ReadSchedule,
        AuditAction::View,
        "Appointment",
    ),
    phi_rule(
        "GET",
        "/v1/appointments/{appointment_id}/history",
        Permission::ReadSchedule,
        AuditAction::View,
        "Appointment",
    ),
    // A search discloses each patient it returns: one event per match, naming its fields.
    phi_rule(
        "GET",
        "/v1/patients",
        Permission::ReadDemographics,
        AuditAction::View,
        "Patient",
    ),
    // A registration or change records its own event in its transaction, with the fields
    // it changed and the content hashes of the versions before and after.
    refusals_recorded(
        rule(
            "POST",
            "/v1/patients",
            Access::Session(Permission::RegisterPatients),
        ),
        AuditAction::Create,
        "Patient",
    ),
    refusals_recorded(
        rule(
            "PATCH",
            "/v1/patients/{patient_id}",
            Access::Session(Permission::RegisterPatients),
        ),
        AuditAction::Update,
        "Patient",
    ),
    phi_rule(
        "GET",
        "/v1/patients/{patient_id}/record",
        Permission::ReadDemographics,
        AuditAction::View,
        "Patient",
    ),
    // The day's patients with their coverage: one event per patient, naming the patient's
    // fields and the coverages' (`Coverage.payer`, ...).
    phi_rule(
        "GET",
        "/v1/day/patients",
        Permission::ReadDayPatients,
        AuditAction::View,
        "Patient",
    ),
    // The patients of the window a workstation keeps offline, a page at a time: one event
    // per patient, naming the chart's, the record's and the coverages' fields.
    phi_rule(
        "GET",
        "/v1/sync/patients",
        Permission::ReadSchedule,
        AuditAction::View,
        "Patient",
    ),
    // A patient's coverages: changes record their own event, like a patient's.
    refusals_recorded(
        rule(
            "POST",
            "/v1/patients/{patient_id}/coverages",
            Access::Session(Permission::ManageCoverage),
        ),
        AuditAction::Create,
        "Coverage",
    ),
    phi_rule(
        "GET",
        "/v1/patients/{patient_id}/coverages",
        Permission::ReadDemographics,
        AuditAction::View,
        "Coverage",
    ),
    refusals_recorded(
        rule(
            "PATCH",
            "/v1/coverages/{coverage_id}",
            Access::Session(Permission::ManageCoverage),
        ),
        AuditAction::Update,
        "Coverage",
    ),
    phi_rule(
        "GET",
        "/v1/coverages/{coverage_id}/history",
        Permission::ReadDemographics,
        AuditAction::View,
        "Coverage",
    ),
    // The same record as a FHIR R4 Patient: the exchange format other systems speak.
    phi_rule(
        "GET",
        "/v1/fhir/Patient/{patient_id}",
        Permission::ReadDemographics,
        AuditAction::View,
        "Patient",
    ),
    // The patient's whole record as a Bundle: one disclosure of the patient, naming every
    // field sent, theirs and their coverages' and appointments'.
    phi_rule(
        "GET",
        "/v1/fhir/Patient/{patient_id}/$everything",
        Permission::ReadDemographics,
        AuditAction::View,
        "Patient",
    ),
    phi_rule(
        "GET",
        "/v1/patients/{patient_id}/history",
        Permission::ReadDemographics,
        AuditAction::View,
        "Patient",
    ),
    refusals_recorded(
        rule(
            "POST",
            "/v1/patients/{patient_id}/break-glass",
            Access::Session(Permission::BreakGlass),
        ),
        AuditAction::BreakGlass,
        "Patient",
    ),
    phi_rule(
        "GET",
        "/v1/patients/{patient_id}/care-team",
        Permission::ManageCareTeam,
        AuditAction::View,
        "CareTeam",
    ),
    // Changes record their own event in the change's transaction (no event, no change).
    refusals_recorded(
        rule(
            "POST",
            "/v1/patients/{patient_id}/care-team",
            Access::Session(Permission::ManageCareTeam),
        ),
        AuditAction::Create,
        "CareTeam",
    ),
    refusals_recorded(
        rule(
            "POST",
            "/v1/patients/{patient_id}/care-team/{user_id}/remove",
            Access::Session(Permission::ManageCareTeam),
        ),
        AuditAction::Delete,
        "CareTeam",
    ),
    trail_rule("GET", "/v1/break-glass", AuditAction::View),
    rule(
        "POST",
        "/v1/break-glass/{grant_id}/review",
        Access::Session(Permission::ReviewAudit),
    ),
    rule(
        "GET",
        "/v1/devices",
        Access::Session(Permission::ManageDevices),
    ),
    rule(
        "POST",
        "/v1/devices/enrollment-codes",
        Access::Session(Permission::ManageDevices),
    ),
    rule(
        "POST",
        "/v1/devices/{device_id}/revoke",
        Access::Session(Permission::ManageDevices),
    ),
    // Only to the device the session was opened on, with its recovery key's proof.
    rule("POST", "/v1/devices/escrow/release", Access::AnySession),
    rule("POST", "/v1/audit/batches", Access::DeviceSigned),
    trail_rule("GET", "/v1/audit/events", AuditAction::View),
    trail_rule(
        "GET",
        "/v1/audit/events/{event_id}/inclusion",
        AuditAction::View,
    ),
    trail_rule("GET", "/v1/audit/checkpoint", AuditAction::View),
    trail_rule("GET", "/v1/audit/consistency", AuditAction::View),
    trail_rule("GET", "/v1/audit/alerts", AuditAction::View),
    trail_rule("GET", "/v1/audit/export", AuditAction::Export),
    trail_rule(
        "GET",
        "/v1/audit/patients/{patient_id}/report",
        AuditAction::View,
    ),
    trail_rule("GET", "/v1/audit/access-review", AuditAction::Export),
];

/// The rule for a method and axum path template, if there is one.
pub fn rule_for(method: &str, path: &str) -> Option<RouteRule> {
    ROUTES
        .iter()
        .copied()
        .find(|r| r.method == method && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The roles that hold `permission`.
    fn holders(permission: Permission) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| allows(*r, permission))
            .collect()
    }

    #[test]
    fn admin_sees_no_clinical_content() {
        for p in [
            Permission::ReadSchedule,
            Permission::ReadDemographics,
            Permission::ReadClinical,
        ] {
            assert!(!allows(Role::Admin, p), "{p:?}");
        }
    }

    #[test]
    fn only_clinicians_read_clinical() {
        assert_eq!(holders(Permission::ReadClinical), [Role::Clinician]);
    }

    #[test]
    fn only_clinicians_break_the_glass() {
        assert_eq!(holders(Permission::BreakGlass), [Role::Clinician]);
    }

    /// No clinician can put themselves on a care team: that would be break-glass unreviewed.
    #[test]
    fn only_the_front_desk_manages_care_teams() {
        assert_eq!(holders(Permission::ManageCareTeam), [Role::FrontDesk]);
    }

    #[test]
    fn the_front_desk_and_billing_keep_coverage() {
        assert_eq!(
            holders(Permission::ManageCoverage),
            [Role::FrontDesk, Role::Billing]
        );
    }

    /// Billing works from the day's patients without the schedule's times and reasons.
    #[test]
    fn billing_and_the_front_desk_list_the_days_patients() {
        assert_eq!(
            holders(Permission::ReadDayPatients),
            [Role::FrontDesk, Role::Billing]
        );
        assert!(!allows(Role::Billing, Permission::ReadSchedule));
    }

    #[test]
    fn only_the_front_desk_keeps_the_schedule() {
        assert_eq!(holders(Permission::ManageSchedule), [Role::FrontDesk]);
    }

    #[test]
    fn only_the_front_desk_registers_patients() {
        assert_eq!(holders(Permission::RegisterPatients), [Role::FrontDesk]);
    }

    #[test]
    fn roles_round_trip_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    /// Every route that needs a PHI-reading permission is audited by the server.
    #[test]
    fn phi_permissions_imply_audited_routes() {
        for r in ROUTES {
            if let Access::Session(
                Permission::ReadSchedule
                | Permission::ReadDemographics
                | Permission::ReadClinical
                | Permission::ReadDayPatients,
            ) = r.access
            {
                assert!(
                    r.phi.is_some(),
                    "{} {} serves PHI unaudited",
                    r.method,
                    r.path
                );
            }
        }
    }

    /// Recorded routes only read: the server writes a recorded request's session last-seen
    /// time after its handler, with its event, which is only sound for a read.
    #[test]
    fn recorded_routes_are_reads() {
        for r in ROUTES {
            if r.phi.is_some() || r.trail.is_some() {
                assert_eq!(
                    r.method, "GET",
                    "{} {} is recorded but writes",
                    r.method, r.path
                );
            }
        }
    }

    /// Whatever writes under a patient's path changes the record or who may see it: its
    /// refusals are recorded, as refused reads are.
    #[test]
    fn refused_chart_access_changes_are_recorded() {
        for r in ROUTES {
            if r.method != "GET" && r.path.starts_with("/v1/patients") {
                assert!(
                    r.refusal.is_some(),
                    "{} {} refuses unrecorded",
                    r.method,
                    r.path
                );
            }
            assert!(
                r.refusal.is_none() || r.phi.is_none(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }

    /// Every read of the audit trail (and of the break-glass queue, with its reasons) is
    /// itself recorded.
    #[test]
    fn reading_the_trail_is_recorded() {
        for r in ROUTES {
            if r.method == "GET" && r.access == Access::Session(Permission::ReviewAudit) {
                assert!(
                    r.trail.is_some(),
                    "{} {} reads the trail unrecorded",
                    r.method,
                    r.path
                );
            }
            assert!(
                r.trail.is_none() || r.phi.is_none(),
                "{}: one record per request",
                r.path
            );
        }
    }

    #[test]
    fn routes_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
