//! What a role may read from the cache: the same table the server applies
//! (`clinicdesk_protocol::policy`), applied again to what comes off the disk, so that a field
//! the current role may not read is never shown offline even while it is still on disk (a
//! copy made under another role is deleted at the next online sign-in: [`super::cache`]).

use clinicdesk_protocol::app::PatientHit;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::policy::{Permission, Role, allows};
use clinicdesk_protocol::wire::{
    AppointmentList, ClinicalAccess, CoverageList, Patient, PatientRecord,
};

/// A cached day, if the role reads the schedule.
pub fn schedule(role: Role, list: Option<AppointmentList>) -> Option<AppointmentList> {
    list.filter(|_| allows(role, Permission::ReadSchedule))
}

/// A cached chart as the role may read it: nothing without demographics, and no clinical
/// summary without the clinical permission.
pub fn chart(role: Role, patient: Option<Patient>) -> Option<Patient> {
    let mut patient = patient.filter(|_| allows(role, Permission::ReadDemographics))?;
    if !allows(role, Permission::ReadClinical) {
        patient.clinical = None;
        patient.clinical_access = ClinicalAccess::NotPermitted;
        patient.break_glass = None;
    }
    Some(patient)
}

/// A cached registration record cut to the fields the role reads.
pub fn record(role: Role, record: Option<PatientRecord>) -> Option<PatientRecord> {
    let mut record = record?;
    record
        .fields
        .retain(|name| field_access(role, Resource::Patient, name).reads());
    Some(record)
}

/// Cached coverages cut to the fields the role reads; none for a role that reads none.
pub fn coverages(role: Role, list: Option<CoverageList>) -> Option<CoverageList> {
    let mut list = list.filter(|_| field_access(role, Resource::Coverage, "payer").reads())?;
    for c in &mut list.coverages {
        c.fields
            .retain(|name| field_access(role, Resource::Coverage, name).reads());
    }
    Some(list)
}

/// Cached search hits (name, birth date, MRN), if the role reads demographics.
pub fn hits(role: Role, hits: Vec<PatientHit>) -> Vec<PatientHit> {
    if allows(role, Permission::ReadDemographics) {
        hits
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::phi::Phi;
    use clinicdesk_protocol::wire::{
        ClinicalSummary, CoverageFields, CoverageRecord, PatientFields,
    };
    use uuid::Uuid;

    use super::*;

    fn cached_chart() -> Patient {
        Patient {
            id: Uuid::from_u128(7),
            name: Phi::new("Canary Synthetic".into()),
            birth_date: Phi::new("1970-01-01".into()),
            mrn: Phi::new("SYN-7".into()),
            phone: Phi::new("555-0100".into()),
            clinical: Some(ClinicalSummary {
                allergies: Phi::new(vec!["Canary allergy".into()]),
                problems: Phi::new(Vec::new()),
                medications: Phi::new(Vec::new()),
            }),
            clinical_access: ClinicalAccess::CareTeam,
            break_glass: None,
        }
    }

    #[test]
    fn a_role_reads_from_the_cache_what_the_table_gives_it() {
        let chart_of = |role| chart(role, Some(cached_chart()));
        assert!(chart_of(Role::Clinician).unwrap().clinical.is_some());
        for role in [Role::FrontDesk, Role::Billing] {
            let seen = chart_of(role).unwrap();
            assert!(
                seen.clinical.is_none(),
                "{role:?} read the clinical summary"
            );
            assert_eq!(seen.clinical_access, ClinicalAccess::NotPermitted);
        }
        assert!(chart_of(Role::Admin).is_none(), "admins read no patient");

        let full = PatientRecord {
            id: Uuid::from_u128(7),
            version: 3,
            fields: PatientFields::default().filled(),
        };
        for role in Role::ALL {
            let seen = record(role, Some(full.clone())).unwrap();
            for name in PatientFields::NAMES {
                assert_eq!(
                    seen.fields.present().contains(name),
                    field_access(role, Resource::Patient, name).reads(),
                    "{role:?} {name}"
                );
            }
        }
        let list = AppointmentList {
            date: "2026-12-07".into(),
            time_zone: "UTC".into(),
            appointments: Vec::new(),
        };
        assert!(schedule(Role::FrontDesk, Some(list.clone())).is_some());
        assert!(schedule(Role::Admin, Some(list)).is_none());

        let covered = CoverageList {
            patient_id: Uuid::from_u128(7),
            coverages: vec![CoverageRecord {
                id: Uuid::from_u128(8),
                patient_id: Uuid::from_u128(7),
                version: 1,
                fields: CoverageFields::default().filled(),
            }],
        };
        for role in Role::ALL {
            let reads_any = CoverageFields::NAMES
                .iter()
                .any(|name| field_access(role, Resource::Coverage, name).reads());
            match coverages(role, Some(covered.clone())) {
                None => assert!(!reads_any, "{role:?} lost coverages it reads"),
                Some(seen) => {
                    for name in CoverageFields::NAMES {
                        assert_eq!(
                            seen.coverages[0].fields.present().contains(name),
                            field_access(role, Resource::Coverage, name).reads(),
                            "{role:?} {name}"
                        );
                    }
                }
            }
        }
        assert!(coverages(Role::Admin, Some(covered)).is_none());
    }
}
