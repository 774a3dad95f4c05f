//! The synthetic demo clinic: a few staff with random passwords, made-up patients (all but
//! the last on the clinician's care team) and today's appointments. Nothing here resembles a real person's record.

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    Address, CoverageFields, EmergencyContact, Gender, HumanName, PatientFields,
};
use serde::Serialize;
use uuid::Uuid;

use crate::clinical::{care_team, coverage, records};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::secrets::passwords;
use crate::secrets::random::{hash_secret, human_code, normalize_code};
use crate::store::{self, NewPatient, Store};
use crate::time::Clock;

/// The demo clinic's fixed id, so seeding again refreshes it instead of adding another.
pub const DEMO_CLINIC_ID: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_d3e0);
pub const DEMO_CLINIC_NAME: &str = "Maple Street Family Practice (synthetic demo)";

/// What seeding created: printed once for the operator, never stored in the clear.
#[derive(Serialize)]
pub struct SeedReport {
    pub clinic_id: Uuid,
    pub clinic_name: String,
    pub enrollment_code: String,
    pub enrollment_code_expires_in_mins: i64,
    pub users: Vec<SeededUser>,
}

#[derive(Serialize)]
pub struct SeededUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password: String,
}

const STAFF: &[(&str, &str, Role)] = &[
    ("frontdesk", "Robin Front (demo)", Role::FrontDesk),
    ("clinician", "Dr. Sam Chart (demo)", Role::Clinician),
    ("admin", "Alex Admin (demo)", Role::Admin),
];

struct Synthetic {
    name: &'static str,
    birth_date: &'static str,
    allergies: &'static [&'static str],
    problems: &'static [&'static str],
    medications: &'static [&'static str],
    reason: &'static str,
    /// On the clinicians' care team; the others are read only by breaking the glass.
    on_care_team: bool,
}

const PATIENTS: &[Synthetic] = &[
    Synthetic {
        name: "Testa Quillfeather",
        birth_date: "1961-04-12",
        allergies: &["Penicillin"],
        problems: &["Essential hypertension"],
        medications: &["Lisinopril 10 mg daily"],
        reason: "Blood pressure follow-up",
        on_care_team: true,
    },
    Synthetic {
        name: "Demo Brightwater",
        birth_date: "1988-09-30",
        allergies: &[],
        problems: &["Seasonal allergic rhinitis"],
        medications: &["Loratadine 10 mg as needed"],
        reason: "Annual physical",
        on_care_team: true,
    },
    Synthetic {
        name: "Sample Okonkwo-Vale",
        birth_date: "1975-01-05",
        allergies: &["Latex", "Sulfonamides"],
        problems: &["Type 2 diabetes mellitus"],
        medications: &["Metformin 500 mg twice daily"],
        reason: "Diabetes review",
        on_care_team: true,
    },
    Synthetic {
        name: "Fictional Marchetti",
        birth_date: "2001-07-19",
        allergies: &[],
        problems: &["Asthma, mild intermittent"],
        medications: &["Albuterol inhaler as needed"],
        reason: "Cough, 5 days",
        on_care_team: true,
    },
    Synthetic {
        name: "Placeholder Lindqvist",
        birth_date: "1949-11-23",
        allergies: &["Codeine"],
        problems: &["Osteoarthritis of knee", "Hyperlipidemia"],
        medications: &["Atorvastatin 20 mg daily"],
        reason: "Knee pain",
        on_care_team: false,
    },
];

/// Writes (or refreshes) the demo clinic and issues a fresh enrollment code.
pub async fn seed_demo(
    store: &Store,
    clock: &dyn Clock,
    code_ttl_mins: i64,
) -> Result<SeedReport, ServerError> {
    seed_clinic(
        store,
        clock,
        DEMO_CLINIC_ID,
        DEMO_CLINIC_NAME,
        code_ttl_mins,
    )
    .await
}

/// Writes (or refreshes) a synthetic clinic with the demo's staff, patients and today's
/// appointments, and issues a fresh enrollment code. Tests use it to make several clinics.
pub async fn seed_clinic(
    store: &Store,
    clock: &dyn Clock,
    clinic_id: Uuid,
    clinic_name: &str,
    code_ttl_mins: i64,
) -> Result<SeedReport, ServerError> {
    let mut fresh_password = || -> Result<(String, String), ServerError> {
        let password = human_code()?.to_lowercase();
        let hash = passwords::hash(&password)?;
        Ok((password, hash))
    };
    seed_clinic_with(
        store,
        clock,
        (clinic_id, clinic_name),
        code_ttl_mins,
        &mut fresh_password,
    )
    .await
}

/// A password and its argon2id hash, made once and given to every seeded user.
pub struct SharedPassword {
    pub password: String,
    hash: String,
}

impl SharedPassword {
    pub fn new() -> Result<Self, ServerError> {
        let password = human_code()?.to_lowercase();
        let hash = passwords::hash(&password)?;
        Ok(Self { password, hash })
    }

    /// The password's argon2id hash, as stored for each user.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// [`seed_clinic`] whose staff all get `password`: for making hundreds of synthetic clinics
/// (isolation tests, benchmarks) without hashing a password per user.
pub async fn seed_clinic_sharing(
    store: &Store,
    clock: &dyn Clock,
    clinic_id: Uuid,
    clinic_name: &str,
    password: &SharedPassword,
) -> Result<SeedReport, ServerError> {
    let mut same = || Ok((password.password.clone(), password.hash.clone()));
    seed_clinic_with(store, clock, (clinic_id, clinic_name), 15, &mut same).await
}

async fn seed_clinic_with(
    store: &Store,
    clock: &dyn Clock,
    (clinic_id, clinic_name): (Uuid, &str),
    code_ttl_mins: i64,
    password_for: &mut (dyn FnMut() -> Result<(String, String), ServerError> + Send),
) -> Result<SeedReport, ServerError> {
    let now = clock.now_ms();
    let scope = ClinicScope::of_console(&Console::operator(), clinic_id);
    let fresh = store.clinic_name(clinic_id).await?.is_none();
    if fresh {
        store
            .create_clinic(clinic_id, clinic_name, 15 * 60, "UTC", now)
            .await?;
    }

    let mut users = Vec::new();
    let mut clinicians = Vec::new();
    for (username, display_name, role) in STAFF {
        let (password, hash) = password_for()?;
        let user_id = store
            .upsert_user(clinic_id, username, display_name, *role, &hash)
            .await?;
        if *role == Role::Clinician {
            clinicians.push(user_id);
        }
        users.push(SeededUser {
            username: (*username).to_owned(),
            display_name: (*display_name).to_owned(),
            role: *role,
            password,
        });
    }

    if fresh {
        let day_start = now - now.rem_euclid(86_400_000);
        for (i, p) in PATIENTS.iter().enumerate() {
            let id = Uuid::now_v7();
            let mrn = format!("MRN-{:06}", 100_001 + i);
            let phone = format!("555-01{:02}", 10 + i);
            let (given, family) = p.name.split_once(' ').unwrap_or(("", p.name));
            store
                .insert_patient(
                    &scope,
                    &NewPatient {
                        id,
                        name: p.name.to_owned(),
                        birth_date: p.birth_date.to_owned(),
                        record: seeded_record(p, i, &mrn, &phone)?,
                        mrn,
                        phone,
                        given: given.to_owned(),
                        family: family.to_owned(),
                        allergies: p.allergies.iter().map(|s| (*s).to_owned()).collect(),
                        problems: p.problems.iter().map(|s| (*s).to_owned()).collect(),
                        medications: p.medications.iter().map(|s| (*s).to_owned()).collect(),
                    },
                )
                .await?;
            let insurance = CoverageFields {
                payer: Some("Synthetic Mutual (demo)".into()),
                member_id: Some(format!("SM-{:06}", 500_001 + i)),
                group: Some("GRP-DEMO".into()),
                period_start: Some("2026-01-01".into()),
                ..CoverageFields::default()
            };
            store
                .insert_seeded_coverage(&scope, id, &coverage::seeded_content(insurance)?)
                .await?;
            // 08:00 UTC onwards, every 30 minutes.
            let starts = day_start + 8 * 3_600_000 + i64::try_from(i).unwrap_or(0) * 1_800_000;
            store
                .insert_appointment(&scope, id, clinicians.first().copied(), starts, p.reason)
                .await?;
            if p.on_care_team {
                for clinician in &clinicians {
                    care_team::assign(store, &scope, *clinician, id).await?;
                }
            }
        }
    }

    let code = issue_enrollment_code(store, clock, clinic_id, code_ttl_mins, None).await?;
    Ok(SeedReport {
        clinic_id,
        clinic_name: clinic_name.to_owned(),
        enrollment_code: code,
        enrollment_code_expires_in_mins: code_ttl_mins,
        users,
    })
}

/// A seeded patient's registration content: made-up contact details on a street that does
/// not exist, in a town with a reserved-looking name, and `.invalid` mail addresses.
fn seeded_record(p: &Synthetic, i: usize, mrn: &str, phone: &str) -> Result<String, ServerError> {
    let (given, family) = p.name.split_once(' ').unwrap_or(("", p.name));
    // (The caller splits the same way for the search columns.)
    let genders = [Gender::Female, Gender::Male, Gender::Other, Gender::Unknown];
    records::seeded_content(PatientFields {
        mrn: Some(mrn.to_owned()),
        identifiers: Some(Vec::new()),
        ssn: Some(String::new()),
        name: Some(HumanName {
            given: given.to_owned(),
            family: family.to_owned(),
            preferred: String::new(),
        }),
        birth_date: Some(p.birth_date.to_owned()),
        gender: Some(genders[i % genders.len()]),
        phone: Some(phone.to_owned()),
        email: Some(format!("patient{}@example.invalid", i + 1)),
        address: Some(Address {
            line: vec![format!("{} Synthetic Lane", 100 + i)],
            city: "Demoville".into(),
            state: "ZZ".into(),
            postal_code: format!("{:05}", 1000 + i),
            country: "US".into(),
        }),
        language: Some(if i % 3 == 2 { "es" } else { "en" }.to_owned()),
        emergency_contact: Some(EmergencyContact {
            name: format!("Contact of patient {}", i + 1),
            relationship: "spouse".into(),
            phone: format!("555-02{:02}", 10 + i),
        }),
        active: Some(true),
    })
}

/// Issues a one-time enrollment code for a clinic, on the operator's console (`issued_by`
/// none) or for an admin.
pub async fn issue_enrollment_code(
    store: &Store,
    clock: &dyn Clock,
    clinic_id: Uuid,
    ttl_mins: i64,
    issued_by: Option<Uuid>,
) -> Result<String, ServerError> {
    if store.clinic_name(clinic_id).await?.is_none() {
        return Err(ServerError::NotFound);
    }
    let code = human_code()?;
    let mut tx = store.tx().await?;
    store::enrollment::insert_code(
        &mut tx,
        clinic_id,
        &hash_secret(&normalize_code(&code)),
        clock.now_ms() + ttl_mins * 60_000,
        issued_by,
    )
    .await?;
    tx.commit().await?;
    Ok(code)
}
