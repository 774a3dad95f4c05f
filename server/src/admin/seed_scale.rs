//! `seed --clinics N --patients M --seed S`: many synthetic clinics for demos, tests and
//! benchmarks, the same for the same seed (on the same day: the appointments fill the
//! current week). Each clinic has a front desk, two clinicians, billing and an admin, all
//! with one shared password; M patients with plausible made-up names, ages, addresses and
//! contacts (phones in the fictional 555-01xx range, mail at `.invalid`), coverage for most;
//! and for each clinician a week of appointments, Monday to Friday in the clinic's time zone,
//! with the statuses a week has by now: seen, no-shows and cancellations before now, booked
//! after. No value here belongs to a real person: names are drawn from common given and
//! family names, and every other value is generated. A clinic that exists is left as it is,
//! so running the command again adds nothing.

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    Address, CoverageFields, EmergencyContact, Gender, HumanName, PatientFields,
    SubscriberRelationship,
};
use jiff::ToSpan;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::Serialize;
use uuid::Uuid;

use crate::admin::seed::SharedPassword;
use crate::clinical::{coverage, records};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::store::synthetic::{SeededAppointment, SeededCoverage};
use crate::store::{NewPatient, Store};
use crate::time::Clock;

/// What to make.
#[derive(Debug, Clone, Copy)]
pub struct ScaleSeed {
    pub clinics: u32,
    pub patients_per_clinic: u32,
    pub seed: u64,
}

/// What was made, printed once for the operator.
#[derive(Debug, Default, Serialize)]
pub struct ScaleReport {
    pub clinics_created: u32,
    /// Clinics of this seed that were there already (left as they were).
    pub clinics_existing: u32,
    pub patients: u64,
    pub coverages: u64,
    pub appointments: u64,
    /// Every seeded user's password (synthetic, shown once).
    pub password: String,
    pub usernames: Vec<String>,
    /// The first clinic's id, to sign in to.
    pub first_clinic_id: Option<Uuid>,
}

/// SplitMix64: small, fast, and the same sequence on every machine and version, which a
/// general-purpose generator does not promise.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Self(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (the bias of a modulo is below 1e-9 for these n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// 0..len, for indexing.
    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.index(xs.len())]
    }

    fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

const GIVEN_FEMALE: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Sandra",
    "Ashley",
    "Emily",
    "Michelle",
    "Amanda",
    "Melissa",
    "Stephanie",
    "Rebecca",
    "Laura",
    "Sharon",
    "Cynthia",
    "Amy",
    "Angela",
    "Maria",
    "Sofia",
    "Camila",
    "Valentina",
    "Isabella",
    "Mei",
    "Aiko",
    "Priya",
    "Fatima",
    "Amara",
    "Olivia",
];
const GIVEN_MALE: &[&str] = &[
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Christopher",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kevin",
    "Brian",
    "George",
    "Jose",
    "Luis",
    "Carlos",
    "Miguel",
    "Wei",
    "Hiroshi",
    "Arjun",
    "Omar",
    "Kwame",
    "Liam",
    "Noah",
    "Ethan",
    "Lucas",
    "Mateo",
];
const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Wang",
    "Kim",
    "Patel",
    "Okafor",
    "Nakamura",
    "Kowalski",
    "Novak",
    "Haddad",
    "Mensah",
];
const STREETS: &[&str] = &[
    "Maple",
    "Oak",
    "Cedar",
    "Elm",
    "Pine",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Main",
    "Church",
    "River",
    "Sunset",
    "Willow",
    "Highland",
    "Meadow",
    "Spring",
    "Forest",
    "Ridge",
];
const STREET_KINDS: &[&str] = &["St", "Ave", "Rd", "Ln", "Dr", "Ct", "Blvd", "Way"];
/// Made-up towns (with the state each is put in).
const TOWNS: &[(&str, &str)] = &[
    ("Riverton Falls", "IL"),
    ("Lakeshore Bend", "WI"),
    ("Cedar Hollow", "OH"),
    ("Millbrook Junction", "PA"),
    ("Pine Ridge Crossing", "CO"),
    ("Harbor Point", "WA"),
    ("Sunvale", "AZ"),
    ("Westmere", "OR"),
    ("Brookhaven Flats", "GA"),
    ("Fairmont Springs", "TX"),
];
const AREA_CODES: &[&str] = &[
    "217", "312", "414", "614", "215", "303", "206", "480", "503",
];
const TIME_ZONES: &[&str] = &[
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
];
const CLINIC_KINDS: &[&str] = &[
    "Family Medicine",
    "Community Health Center",
    "Pediatrics",
    "Internal Medicine",
    "Primary Care",
];
const PAYERS: &[(&str, &str)] = &[
    ("Synthetic Mutual Health", "SMH"),
    ("Acme Health Plan (synthetic)", "AHP"),
    ("Northwind Care Insurance (synthetic)", "NCI"),
    ("Medicare (synthetic)", "MCR"),
    ("Medicaid (synthetic)", "MCD"),
];
const REASONS: &[&str] = &[
    "Annual physical",
    "Follow-up visit",
    "Blood pressure check",
    "Diabetes review",
    "Cough and fever",
    "Medication review",
    "Back pain",
    "Well-child visit",
    "Vaccination",
    "Lab results review",
    "Sore throat",
    "Skin rash",
];

/// The users of every seeded clinic: (username, role).
const STAFF: &[(&str, Role)] = &[
    ("frontdesk", Role::FrontDesk),
    ("clinician1", Role::Clinician),
    ("clinician2", Role::Clinician),
    ("billing", Role::Billing),
    ("admin", Role::Admin),
];

/// Makes the clinics `spec` names that are not there yet; `progress(done, of)` after each.
pub async fn seed_clinics(
    store: &Store,
    console: &Console,
    clock: &dyn Clock,
    spec: ScaleSeed,
    progress: &mut (dyn FnMut(u32, u32) + Send),
) -> Result<ScaleReport, ServerError> {
    let password = SharedPassword::new()?;
    let mut report = ScaleReport {
        password: password.password.clone(),
        usernames: STAFF.iter().map(|(u, _)| (*u).to_owned()).collect(),
        ..ScaleReport::default()
    };
    let now = clock.now_ms();
    for index in 0..spec.clinics {
        let mut rng = Rng::new(spec.seed, u64::from(index));
        let clinic_id = rng.uuid();
        report.first_clinic_id.get_or_insert(clinic_id);
        if store.clinic_name(clinic_id).await?.is_some() {
            report.clinics_existing += 1;
            progress(index + 1, spec.clinics);
            continue;
        }
        let (town, _) = rng.pick(TOWNS);
        let name = format!(
            "{town} {} {} (synthetic)",
            rng.pick(CLINIC_KINDS),
            index + 1
        );
        let tz_name = rng.pick(TIME_ZONES);
        store
            .create_clinic(clinic_id, &name, 15 * 60, tz_name, now)
            .await?;
        let mut clinicians = Vec::new();
        for (username, role) in STAFF {
            let display = format!(
                "{}{} {} (synthetic)",
                if *role == Role::Clinician { "Dr. " } else { "" },
                given_name(&mut rng, Gender::Unknown),
                rng.pick(FAMILY)
            );
            let id = store
                .upsert_user(clinic_id, username, &display, *role, password.hash())
                .await?;
            if *role == Role::Clinician {
                clinicians.push(id);
            }
        }
        let tz = TimeZone::get(tz_name).map_err(|_| ServerError::Internal("time zone unknown"))?;
        let clinic = Clinic {
            tz: &tz,
            now_ms: now,
            clinicians: &clinicians,
        };
        let (patients, coverages) = patients(&mut rng, spec.patients_per_clinic, &clinic)?;
        let appointments = appointments(&mut rng, &patients, &clinic)?;
        let scope = ClinicScope::of_console(console, clinic_id);
        store
            .insert_synthetic(&scope, &patients, &coverages, &appointments)
            .await?;
        report.clinics_created += 1;
        report.patients += patients.len() as u64;
        report.coverages += coverages.len() as u64;
        report.appointments += appointments.len() as u64;
        progress(index + 1, spec.clinics);
    }
    Ok(report)
}

struct Clinic<'a> {
    tz: &'a TimeZone,
    now_ms: i64,
    clinicians: &'a [Uuid],
}

impl Clinic<'_> {
    fn today(&self) -> Result<Date, ServerError> {
        jiff::Timestamp::from_millisecond(self.now_ms)
            .map(|t| t.to_zoned(self.tz.clone()).date())
            .map_err(|_| ServerError::Internal("clock out of range"))
    }
}

/// A given name for `gender` (either list when it is neither).
fn given_name(rng: &mut Rng, gender: Gender) -> &'static str {
    let list = match gender {
        Gender::Female => GIVEN_FEMALE,
        Gender::Male => GIVEN_MALE,
        _ if rng.percent(50) => GIVEN_FEMALE,
        _ => GIVEN_MALE,
    };
    rng.pick(list)
}

fn phone(rng: &mut Rng) -> String {
    format!("{}-555-01{:02}", rng.pick(AREA_CODES), rng.below(100))
}

/// An age in years as a clinic's patients have them: children, working adults, more of
/// them older.
fn age(rng: &mut Rng) -> i64 {
    let bucket = rng.below(100);
    let (from, span) = match bucket {
        0..=19 => (0, 18),
        20..=54 => (18, 32),
        55..=84 => (50, 25),
        _ => (75, 21),
    };
    i64::try_from(from + rng.below(span)).unwrap_or(40)
}

fn patients(
    rng: &mut Rng,
    n: u32,
    clinic: &Clinic<'_>,
) -> Result<(Vec<NewPatient>, Vec<SeededCoverage>), ServerError> {
    let today = clinic.today()?;
    let mut patients = Vec::with_capacity(n as usize);
    let mut coverages = Vec::new();
    for i in 0..n {
        let gender = match rng.below(100) {
            0..=49 => Gender::Female,
            50..=97 => Gender::Male,
            98 => Gender::Other,
            _ => Gender::Unknown,
        };
        let given = given_name(rng, gender);
        let family = rng.pick(FAMILY);
        let years = age(rng);
        let birth = today
            .checked_sub(years.years())
            .and_then(|d| d.checked_sub(i64::try_from(rng.below(365)).unwrap_or(0).days()))
            .map_err(|_| ServerError::Internal("birth date out of range"))?;
        let mrn = format!("MRN-{:06}", 100_001 + i);
        let phone_number = phone(rng);
        let (town, state) = rng.pick(TOWNS);
        let language = match rng.below(100) {
            0..=77 => "en",
            78..=92 => "es",
            93..=95 => "vi",
            96..=97 => "zh",
            _ => "fr",
        };
        let fields = PatientFields {
            mrn: Some(mrn.clone()),
            identifiers: Some(Vec::new()),
            ssn: Some(String::new()),
            name: Some(HumanName {
                given: given.to_owned(),
                family: family.to_owned(),
                preferred: String::new(),
            }),
            birth_date: Some(birth.to_string()),
            gender: Some(gender),
            phone: Some(phone_number.clone()),
            email: Some(format!(
                "{}.{}{}@example.invalid",
                given.to_lowercase(),
                family.to_lowercase(),
                i + 1
            )),
            address: Some(Address {
                line: vec![format!(
                    "{} {} {}",
                    1 + rng.below(9_899),
                    rng.pick(STREETS),
                    rng.pick(STREET_KINDS)
                )],
                city: town.to_owned(),
                state: state.to_owned(),
                postal_code: format!("{:05}", 10_000 + rng.below(89_999)),
                country: "US".into(),
            }),
            language: Some(language.to_owned()),
            emergency_contact: Some(EmergencyContact {
                name: format!("{} {family}", given_name(rng, Gender::Unknown)),
                relationship: rng
                    .pick(&["spouse", "parent", "child", "sibling", "friend"])
                    .to_owned(),
                phone: phone(rng),
            }),
            active: Some(!rng.percent(3)),
        };
        let id = rng.uuid();
        if rng.percent(88) {
            let (payer, prefix) = rng.pick(PAYERS);
            let relationship = if years < 18 {
                SubscriberRelationship::Child
            } else if rng.percent(85) {
                SubscriberRelationship::Own
            } else {
                SubscriberRelationship::Spouse
            };
            let body = coverage::seeded_content(CoverageFields {
                payer: Some(payer.to_owned()),
                member_id: Some(format!("{prefix}{:09}", rng.below(1_000_000_000))),
                group: Some(format!("GRP-{:05}", rng.below(100_000))),
                subscriber_relationship: Some(relationship),
                period_start: Some(format!("{}-01-01", today.year())),
                ..CoverageFields::default()
            })?;
            coverages.push(SeededCoverage {
                id: rng.uuid(),
                patient_id: id,
                record: body,
            });
        }
        patients.push(NewPatient {
            id,
            name: format!("{given} {family}"),
            birth_date: birth.to_string(),
            record: records::seeded_content(fields)?,
            mrn,
            phone: phone_number,
            given: given.to_owned(),
            family: family.to_owned(),
            allergies: Vec::new(),
            problems: Vec::new(),
            medications: Vec::new(),
        });
    }
    Ok((patients, coverages))
}

/// A week of appointments for each clinician: every half hour from 09:00 to 16:30, Monday to
/// Friday of the current week in the clinic's time zone, seven slots in ten filled, each
/// with the status its time gives it.
fn appointments(
    rng: &mut Rng,
    patients: &[NewPatient],
    clinic: &Clinic<'_>,
) -> Result<Vec<SeededAppointment>, ServerError> {
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    let today = clinic.today()?;
    let monday = today
        .checked_sub(i64::from(today.weekday().to_monday_zero_offset()).days())
        .map_err(|_| ServerError::Internal("date out of range"))?;
    let mut out = Vec::new();
    for practitioner in clinic.clinicians {
        for day in 0..5 {
            let date = monday
                .checked_add((day as i64).days())
                .map_err(|_| ServerError::Internal("date out of range"))?;
            for slot in 0..16i8 {
                if !rng.percent(70) {
                    continue;
                }
                let time = Time::new(9 + slot / 2, (slot % 2) * 30, 0, 0)
                    .map_err(|_| ServerError::Internal("slot out of range"))?;
                let starts_at_ms = date
                    .to_datetime(time)
                    .to_zoned(clinic.tz.clone())
                    .map_err(|_| ServerError::Internal("slot out of range"))?
                    .timestamp()
                    .as_millisecond();
                let ends_at_ms = starts_at_ms + 30 * 60_000;
                let status = if ends_at_ms <= clinic.now_ms {
                    match rng.below(100) {
                        0..=85 => "fulfilled",
                        86..=91 => "noshow",
                        _ => "cancelled",
                    }
                } else if starts_at_ms <= clinic.now_ms {
                    "checked-in"
                } else if starts_at_ms - clinic.now_ms <= 30 * 60_000 && rng.percent(50) {
                    "arrived"
                } else if rng.percent(7) {
                    "cancelled"
                } else {
                    "booked"
                };
                out.push(SeededAppointment {
                    id: rng.uuid(),
                    patient_id: patients[rng.index(patients.len())].id,
                    practitioner_id: *practitioner,
                    starts_at_ms,
                    duration_mins: 30,
                    reason: rng.pick(REASONS).to_owned(),
                    status,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned to SplitMix64's definition (the values computed apart from this code): a
    /// change here would change every seeded data set.
    #[test]
    fn the_generator_is_splitmix64_and_the_same_sequence_everywhere() {
        let mut r = Rng::new(7, 0);
        let first: Vec<u64> = (0..3).map(|_| r.next()).collect();
        assert_eq!(
            first,
            [
                0x044c_3cd7_f43c_661c,
                0xe698_4080_bab1_2a02,
                0x953a_eb70_673e_29cb
            ]
        );
        assert_ne!(Rng::new(7, 1).next(), Rng::new(7, 0).next());
        assert_ne!(Rng::new(8, 0).next(), Rng::new(7, 0).next());
    }
}
