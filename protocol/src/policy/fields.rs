//! Minimum necessary, per field: for each resource and field, what each role may do with
//! it. The server drops what a role may not read from every answer (the field is absent,
//! not null) and refuses a write of a field the role may not write by naming it; the app
//! applies the same table to what it caches. `docs/policy.md` is generated from this table
//! ([`markdown`]) and a test fails when it is out of date.
//!
//! A later resource (a problem, a note) is new rows here, not new machinery.

use super::Role;

/// A kind of record, named as FHIR R4 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Patient,
    Coverage,
    Appointment,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Patient, Resource::Coverage, Resource::Appointment];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Patient => "Patient",
            Resource::Coverage => "Coverage",
            Resource::Appointment => "Appointment",
        }
    }
}

/// What a role may do with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FieldAccess {
    None,
    Read,
    ReadWrite,
}

impl FieldAccess {
    pub fn reads(self) -> bool {
        self >= FieldAccess::Read
    }

    pub fn writes(self) -> bool {
        self == FieldAccess::ReadWrite
    }

    fn cell(self) -> &'static str {
        match self {
            FieldAccess::None => "",
            FieldAccess::Read => "read",
            FieldAccess::ReadWrite => "read, write",
        }
    }
}

/// One row of the table: a field of a resource and each role's access to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRule {
    pub resource: Resource,
    /// The field's name in the JSON (and in audit events, which name fields, never values).
    pub field: &'static str,
    /// Clinical content: besides the role, the reader needs the patient in scope (on their
    /// care team, or under a break-glass grant).
    pub clinical: bool,
    /// Sensitive beyond the rest (an SSN; later, note text): the server encrypts it before
    /// it reaches the database, under the clinic's data key, and finds it only by a keyed
    /// blind index.
    pub sensitive: bool,
    /// Access for front desk, clinician, billing and admin, in [`Role::ALL`] order.
    access: [FieldAccess; 4],
}

impl FieldRule {
    pub fn access(&self, role: Role) -> FieldAccess {
        let i = match role {
            Role::FrontDesk => 0,
            Role::Clinician => 1,
            Role::Billing => 2,
            Role::Admin => 3,
        };
        self.access[i]
    }
}

use FieldAccess::{None as NO, Read as R, ReadWrite as RW};

/// Registration and contact fields: the front desk keeps them, clinicians and billing read
/// them, admins see no patient fields at all.
const fn front_desk_keeps(resource: Resource, field: &'static str) -> FieldRule {
    FieldRule {
        resource,
        field,
        clinical: false,
        sensitive: false,
        access: [RW, R, R, NO],
    }
}

/// Coverage: the front desk and billing keep it, clinicians read it.
const fn coverage(resource: Resource, field: &'static str) -> FieldRule {
    FieldRule {
        resource,
        field,
        clinical: false,
        sensitive: false,
        access: [RW, R, RW, NO],
    }
}

/// The schedule: the front desk keeps it, clinicians read it.
const fn schedule(resource: Resource, field: &'static str) -> FieldRule {
    FieldRule {
        resource,
        field,
        clinical: false,
        sensitive: false,
        access: [RW, R, NO, NO],
    }
}

/// Clinical content: clinicians read it for patients in their scope; nobody else does.
/// (Writes come with the clinical records.)
const fn clinical(resource: Resource, field: &'static str) -> FieldRule {
    FieldRule {
        resource,
        field,
        clinical: true,
        sensitive: false,
        access: [NO, R, NO, NO],
    }
}

/// The table. Rows are in the order the fields appear in the JSON.
pub const FIELDS: &[FieldRule] = &[
    front_desk_keeps(Resource::Patient, "mrn"),
    // Kept from the system a clinic moved from; an import writes them, nobody edits them.
    FieldRule {
        resource: Resource::Patient,
        field: "identifiers",
        clinical: false,
        sensitive: false,
        access: [R, R, R, NO],
    },
    // The front desk takes it for billing's claims; clinicians have no need of it.
    FieldRule {
        resource: Resource::Patient,
        field: "ssn",
        clinical: false,
        sensitive: true,
        access: [RW, NO, R, NO],
    },
    front_desk_keeps(Resource::Patient, "name"),
    front_desk_keeps(Resource::Patient, "birth_date"),
    front_desk_keeps(Resource::Patient, "gender"),
    front_desk_keeps(Resource::Patient, "phone"),
    front_desk_keeps(Resource::Patient, "email"),
    front_desk_keeps(Resource::Patient, "address"),
    front_desk_keeps(Resource::Patient, "language"),
    // Billing needs who to bill and where, not whom to call in an emergency.
    FieldRule {
        resource: Resource::Patient,
        field: "emergency_contact",
        clinical: false,
        sensitive: false,
        access: [RW, R, NO, NO],
    },
    front_desk_keeps(Resource::Patient, "active"),
    clinical(Resource::Patient, "allergies"),
    clinical(Resource::Patient, "problems"),
    clinical(Resource::Patient, "medications"),
    // Insurance: the front desk takes it at registration, billing keeps it right,
    // clinicians may read it.
    coverage(Resource::Coverage, "payer"),
    coverage(Resource::Coverage, "member_id"),
    coverage(Resource::Coverage, "group"),
    coverage(Resource::Coverage, "subscriber_relationship"),
    coverage(Resource::Coverage, "period_start"),
    coverage(Resource::Coverage, "period_end"),
    coverage(Resource::Coverage, "active"),
    // The front desk keeps the schedule and clinicians read it; billing does not hold the
    // schedule permission (its day of patients comes with its own workspace).
    schedule(Resource::Appointment, "patient_id"),
    schedule(Resource::Appointment, "practitioner_id"),
    schedule(Resource::Appointment, "start"),
    schedule(Resource::Appointment, "duration_mins"),
    schedule(Resource::Appointment, "appointment_type"),
    schedule(Resource::Appointment, "reason"),
    schedule(Resource::Appointment, "status"),
    schedule(Resource::Appointment, "cancellation_reason"),
];

/// The rule for a resource's field; `None` for a field the table does not know.
pub fn field_rule(resource: Resource, field: &str) -> Option<&'static FieldRule> {
    FIELDS
        .iter()
        .find(|r| r.resource == resource && r.field == field)
}

/// The fields of `resource` that the server encrypts at rest.
pub fn sensitive_fields(resource: Resource) -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(move |r| r.resource == resource && r.sensitive)
        .map(|r| r.field)
}

/// What `role` may do with a resource's field; a field the table does not know is `None`.
pub fn field_access(role: Role, resource: Resource, field: &str) -> FieldAccess {
    field_rule(resource, field).map_or(FieldAccess::None, |r| r.access(role))
}

/// The fields of `resource` that `role` may read, clinical ones only if `in_scope`.
pub fn readable_fields(
    role: Role,
    resource: Resource,
    in_scope: bool,
) -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(move |r| r.resource == resource && r.access(role).reads())
        .filter(move |r| in_scope || !r.clinical)
        .map(|r| r.field)
}

/// The table as Markdown: the body of `docs/policy.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Minimum necessary, per field\n\n\
         Generated from `protocol/src/policy/fields.rs` by `cargo xtask policy-doc`; a test \
         fails when this file is out of date. A field a role may not read is absent from the \
         server's answers and from the app's cache; a write of a field a role may not write is \
         refused with `403 forbidden` naming the field. Clinical fields are read only for a \
         patient in the clinician's scope (on their care team, or under break-glass). Admins \
         see no patient fields at all. Sensitive fields are encrypted by the server before they \
         reach the database (under the clinic's data key, wrapped by a key-encryption key kept \
         apart from the data) and searched only by a keyed blind index.\n",
    );
    for resource in Resource::ALL {
        out.push_str(&format!("\n## {}\n\n| field |", resource.as_str()));
        for role in Role::ALL {
            out.push_str(&format!(" {} |", role.as_str()));
        }
        out.push_str("\n|---|");
        for _ in Role::ALL {
            out.push_str("---|");
        }
        out.push('\n');
        for rule in FIELDS.iter().filter(|r| r.resource == resource) {
            let mark = match (rule.clinical, rule.sensitive) {
                (true, _) => " (clinical)",
                (false, true) => " (sensitive)",
                (false, false) => "",
            };
            out.push_str(&format!("| `{}`{mark} |", rule.field));
            for role in Role::ALL {
                out.push_str(&format!(" {} |", rule.access(role).cell()));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_read_no_patient_field() {
        for rule in FIELDS {
            assert_eq!(
                rule.access(Role::Admin),
                FieldAccess::None,
                "{}",
                rule.field
            );
        }
    }

    #[test]
    fn only_clinicians_read_clinical_fields_and_nobody_writes_them_yet() {
        for rule in FIELDS.iter().filter(|r| r.clinical) {
            for role in Role::ALL {
                let want = if role == Role::Clinician {
                    FieldAccess::Read
                } else {
                    FieldAccess::None
                };
                assert_eq!(rule.access(role), want, "{} {role:?}", rule.field);
            }
        }
    }

    #[test]
    fn billing_reads_demographics_but_not_the_emergency_contact() {
        let billing: Vec<_> = readable_fields(Role::Billing, Resource::Patient, true).collect();
        assert!(billing.contains(&"name") && billing.contains(&"address"));
        assert!(!billing.contains(&"emergency_contact"));
        assert!(!billing.contains(&"allergies"));
    }

    #[test]
    fn clinical_fields_need_the_patient_in_scope() {
        let out: Vec<_> = readable_fields(Role::Clinician, Resource::Patient, false).collect();
        assert!(!out.contains(&"allergies"));
        let inside: Vec<_> = readable_fields(Role::Clinician, Resource::Patient, true).collect();
        assert!(inside.contains(&"allergies"));
    }

    #[test]
    fn access_columns_follow_role_all() {
        let rule = FieldRule {
            resource: Resource::Patient,
            field: "probe",
            clinical: false,
            sensitive: false,
            access: [RW, R, NO, NO],
        };
        let got: Vec<_> = Role::ALL.iter().map(|r| rule.access(*r)).collect();
        assert_eq!(got, rule.access);
    }

    #[test]
    fn fields_are_unique_per_resource() {
        for (i, a) in FIELDS.iter().enumerate() {
            for b in &FIELDS[i + 1..] {
                assert!(
                    !(a.resource == b.resource && a.field == b.field),
                    "{}",
                    a.field
                );
            }
        }
    }

    #[test]
    fn an_unknown_field_is_nobodys() {
        for role in Role::ALL {
            assert_eq!(
                field_access(role, Resource::Patient, "passport"),
                FieldAccess::None
            );
        }
    }

    /// The table and the wire types name the same fields, in the same order.
    #[test]
    fn the_table_covers_every_field_of_every_record() {
        let of = |resource: Resource| -> Vec<&str> {
            FIELDS
                .iter()
                .filter(|r| r.resource == resource && !r.clinical)
                .map(|r| r.field)
                .collect()
        };
        assert_eq!(of(Resource::Patient), crate::wire::PatientFields::NAMES);
        assert_eq!(
            of(Resource::Appointment),
            crate::wire::AppointmentFields::NAMES
        );
        assert_eq!(of(Resource::Coverage), crate::wire::CoverageFields::NAMES);
    }

    /// `docs/policy.md` is this table; regenerate it with `cargo xtask policy-doc`.
    #[test]
    fn the_policy_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md");
        if std::env::var_os("CLINICDESK_WRITE_POLICY_DOC").is_some() {
            std::fs::write(path, markdown()).expect("writing docs/policy.md");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == markdown(),
            "docs/policy.md is out of date: run `cargo xtask policy-doc`"
        );
    }
}
