//! The record layer's metrics, each against a baseline measured in the same run:
//! - `patient_write_us`: the median of an audited, versioned, field-encrypted patient update
//!   (a new phone and SSN each time: the SSN sealed anew and indexed, the version stored,
//!   the `update` event chained, one transaction), called as the route calls it, against the
//!   same change as one bare `UPDATE` of the row in a transaction.
//! - `key_rotation_rows_per_s`: sealed values moved to a new data key by
//!   `keys rotate --reencrypt` (open, seal, rewrite, batches of 500), each patient's SSN
//!   indexes then remade under a new index key (read, open, index, rewrite), against
//!   rewriting the same sealed rows unchanged in the same batches.
//! - `patient_search_p99_ms`: as-you-type name searches through the API in a clinic of
//!   100,000 patients among 1,000,000 (`--quick`: 10,000 among 100,000), each answer's
//!   disclosure events stored before it leaves, against reading one record by id.
//!
//! - `import_patients_per_s`: Synthea patients (the 100 of the server's test export, copied
//!   under new ids up to 5,000, `--quick` 500) imported by `import --fhir-ndjson` as the CLI
//!   runs it (read, parsed, validated, each a record with its SSN sealed, its first version
//!   and `create` event, a batch of them per transaction), against the same stored rows
//!   inserted bare in the same batches.
//!
//! - `seed_patients_per_s`: `seed --clinics` (200 clinics of 500 patients, `--quick` 20),
//!   staff, patients, coverages and a week of appointments each, against the same patient
//!   rows copied bare into one table by one `INSERT ... SELECT`, the floor of writing them.
//!   Target: 200 clinics of 500 in under a minute, 1,667 patients per second.
//!
//! Each runs on the embedded store, and again on PostgreSQL (`_postgres`) when the bench is
//! given a server ([`Db`]).

use std::time::Instant;

use anyhow::Context;
use clinicdesk_protocol::Phi;
use clinicdesk_protocol::audit::RequestSeen;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    HumanName, PatientFields, PatientRegistration, PatientUpdate, UserInfo,
};
use clinicdesk_server::admin::keys;
use clinicdesk_server::build_router;
use clinicdesk_server::clinical::records::{self, Writer};
use clinicdesk_server::scope::{ClinicScope, Console};
use sqlx::Row;
use tower::ServiceExt;
use uuid::Uuid;

use crate::audit::{Served, fresh_postgres_database, login, runtime, served, served_on};
use crate::metrics::Scale;
use crate::report::Metric;

/// Where a record benchmark runs: the embedded store, and PostgreSQL too when the bench is
/// given a server (`CLINICDESK_BENCH_POSTGRES_URL`, which `cargo xtask bench` sets to a
/// throwaway cluster on loopback), each in a fresh database. (On PostgreSQL the bench's
/// server connects as the schema owner, as the audit benches' does, so row-level security
/// is not in the figures.)
enum Db {
    Embedded,
    Postgres(String),
}

impl Db {
    fn each() -> Vec<Db> {
        let mut all = vec![Db::Embedded];
        if let Ok(admin) = std::env::var("CLINICDESK_BENCH_POSTGRES_URL") {
            all.push(Db::Postgres(admin));
        }
        all
    }

    async fn served(&self) -> anyhow::Result<Served> {
        match self {
            Db::Embedded => served().await,
            Db::Postgres(admin) => {
                let database = fresh_postgres_database(admin).await?;
                served_on(Some(&database)).await
            }
        }
    }

    /// The metric's name on this database.
    fn name(&self, embedded: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Db::Embedded => embedded,
            Db::Postgres(_) => postgres,
        }
    }
}

async fn front_desk(s: &Served) -> anyhow::Result<UserInfo> {
    let id: String =
        sqlx::query_scalar("SELECT id FROM users WHERE clinic_id = $1 AND username = 'frontdesk'")
            .bind(s.clinic_id.to_string())
            .fetch_one(&s.db)
            .await?;
    Ok(UserInfo {
        user_id: Uuid::parse_str(&id)?,
        username: "frontdesk".into(),
        display_name: "Bench front desk".into(),
        role: Role::FrontDesk,
        clinic_id: s.clinic_id,
    })
}

fn writer(user: &UserInfo) -> Writer<'_> {
    Writer {
        user,
        device_id: None,
        seen: RequestSeen {
            client_ip: "127.0.0.1".into(),
            user_agent: "clinicdesk-bench".into(),
            session_device_id: None,
        },
        change_id: None,
    }
}

/// Synthetic SSNs: the 999 area is never issued.
fn ssn(i: usize) -> String {
    format!("999-{:02}-{:04}", (i / 10_000) % 100, i % 10_000)
}

fn registration(i: usize) -> PatientRegistration {
    PatientRegistration {
        id: None,
        fields: PatientFields {
            name: Some(HumanName {
                given: format!("Bench{i}"),
                family: "Synthetica".into(),
                preferred: String::new(),
            }),
            birth_date: Some("1970-01-01".into()),
            ssn: Some(ssn(i)),
            ..PatientFields::default()
        },
        confirm_new_person: true,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() * 99 / 100).copied().unwrap_or_default()
}

pub fn patient_write_us(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let rounds = scale.pick(300, 2_000);
    runtime()?.block_on(async {
        let mut metrics = Vec::new();
        for db in Db::each() {
            let s = db.served().await?;
            let scope = ClinicScope::of_console(&Console::operator(), s.clinic_id);
            let front = front_desk(&s).await?;
            let audited =
                records::register(&s.state, &scope, writer(&front), registration(0)).await?;
            let bare = records::register(&s.state, &scope, writer(&front), registration(1)).await?;
            let bare_body = serde_json::to_string(&registration(1).fields.filled())?;
            let mut version = audited.version;
            let (mut with, mut without) = (Vec::new(), Vec::new());
            for i in 0..rounds {
                let change = PatientUpdate {
                    fields: PatientFields {
                        phone: Some(format!("555-{:04}", i % 10_000)),
                        ssn: Some(ssn(i + 2)),
                        ..PatientFields::default()
                    },
                    reason: Phi::new(String::new()),
                };
                let started = Instant::now();
                let written = records::update(
                    &s.state,
                    &scope,
                    writer(&front),
                    audited.id,
                    version,
                    change,
                )
                .await?;
                with.push(started.elapsed().as_secs_f64() * 1e6);
                version = written.version;

                let started = Instant::now();
                let mut tx = s.db.begin().await?;
                sqlx::query(
                    "UPDATE patients SET record = $1, phone = $2 WHERE id = $3 AND clinic_id = $4",
                )
                .bind(&bare_body)
                .bind(format!("555-{:04}", i % 10_000))
                .bind(bare.id.to_string())
                .bind(s.clinic_id.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                without.push(started.elapsed().as_secs_f64() * 1e6);
            }
            anyhow::ensure!(
                version == 1 + rounds as u64,
                "every update stored a version"
            );
            let (with, without) = (median(&mut with), median(&mut without));
            metrics.push(Metric::new(
                db.name("patient_write_us", "patient_write_us_postgres"),
                with,
                "us",
                "bare_row_update_median_us",
                without,
                "<= 2x the bare update",
                with <= 2.0 * without,
            ));
        }
        Ok(metrics)
    })
}

pub fn key_rotation_rows_per_s(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let n = scale.pick(1_000, 10_000);
    runtime()?.block_on(async {
        let mut metrics = Vec::new();
        for db in Db::each() {
            let s = db.served().await?;
            let scope = ClinicScope::of_console(&Console::operator(), s.clinic_id);
            let front = front_desk(&s).await?;
            for i in 0..n {
                records::register(&s.state, &scope, writer(&front), registration(i)).await?;
            }
            // The baseline: the same rows rewritten unchanged, 500 to a transaction.
            let started = Instant::now();
            let mut offset = 0i64;
            loop {
                let rows = sqlx::query(
                    "SELECT id, sealed FROM sealed_values WHERE clinic_id = $1
                 ORDER BY id LIMIT 500 OFFSET $2",
                )
                .bind(s.clinic_id.to_string())
                .bind(offset)
                .fetch_all(&s.db)
                .await?;
                if rows.is_empty() {
                    break;
                }
                let mut tx = s.db.begin().await?;
                for row in &rows {
                    sqlx::query(
                        "UPDATE sealed_values SET sealed = $1 WHERE clinic_id = $2 AND id = $3",
                    )
                    .bind(row.get::<String, _>(1))
                    .bind(s.clinic_id.to_string())
                    .bind(row.get::<String, _>(0))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                offset += 500;
            }
            let bare = n as f64 / started.elapsed().as_secs_f64();

            let started = Instant::now();
            let report =
                keys::rotate(&s.state, &Console::operator(), true, 500, &mut |_| {}).await?;
            let secs = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                report.values_reencrypted == n as u64 && report.indexes_remade == n as u64,
                "every value moved and every index remade: {report:?}"
            );
            let rate = n as f64 / secs;
            metrics.push(Metric::new(
                db.name(
                    "key_rotation_rows_per_s",
                    "key_rotation_rows_per_s_postgres",
                ),
                rate,
                "rows/s",
                "bare_row_rewrite_rows_per_s",
                bare,
                "reported",
                true,
            ));
        }
        Ok(metrics)
    })
}

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ren", "sa", "tov", "ul", "ve", "nor", "bel", "dra", "qui", "zan", "har",
    "pel", "ost",
];

/// A deterministic synthetic name part from `n`.
fn name_part(mut n: usize) -> String {
    let mut out = String::new();
    for _ in 0..3 {
        out.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    let mut chars = out.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `per_clinic` synthetic patients in the benchmark's clinic and in each of `others` more
/// clinics, inserted as rows (the seed of a big store, not what is measured).
async fn fill(s: &Served, per_clinic: usize, others: usize) -> anyhow::Result<()> {
    let mut clinics = vec![s.clinic_id];
    for _ in 0..others {
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO clinics (id, name, created_at_ms) VALUES ($1, 'Bench other', 0)")
            .bind(id.to_string())
            .execute(&s.db)
            .await?;
        clinics.push(id);
    }
    // A hundred rows per statement (a round trip each is most of a million rows' time).
    const ROWS: usize = 100;
    let row = |n: usize| {
        let b = n * 8;
        format!(
            "(${}, ${}, ${}, '1980-05-05', ${}, '[]', '[]', '[]', ${}, ${}, 0, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        )
    };
    for clinic in clinics {
        for chunk in (0..per_clinic).collect::<Vec<_>>().chunks(10_000) {
            let mut tx = s.db.begin().await?;
            for rows in chunk.chunks(ROWS) {
                let values: Vec<String> = (0..rows.len()).map(row).collect();
                let sql = format!(
                    "INSERT INTO patients (id, clinic_id, name, birth_date, phone, allergies,
                         problems, medications, mrn, record, version, family_key, given_key)
                     VALUES {}",
                    values.join(", ")
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for i in rows {
                    let (given, family) = (name_part(i * 7 + 3), name_part(*i));
                    let record = serde_json::json!({
                        "mrn": format!("{i:08}"),
                        "name": { "given": given, "family": family },
                        "birth_date": "1980-05-05",
                        "phone": format!("555-{:04}", i % 10_000),
                    })
                    .to_string();
                    insert = insert
                        .bind(Uuid::now_v7().to_string())
                        .bind(clinic.to_string())
                        .bind(format!("{given} {family}"))
                        .bind(format!("555-{:04}", i % 10_000))
                        .bind(format!("{i:08}"))
                        .bind(record)
                        .bind(family.to_lowercase())
                        .bind(given.to_lowercase());
                }
                insert.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    sqlx::query("ANALYZE").execute(&s.db).await?;
    Ok(())
}

pub fn patient_search_p99_ms(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let per_clinic = scale.pick(10_000, 100_000);
    let searches = scale.pick(200, 1_000);
    runtime()?
        .block_on(async {
            let mut metrics = Vec::new();
            for db in Db::each() {
                let s = db.served().await?;
                fill(&s, per_clinic, 9).await?;
                let token = login(&s).await?;
                let router = build_router(s.state.clone())?;
                let patient: String = sqlx::query_scalar(
                    "SELECT id FROM patients WHERE clinic_id = $1 ORDER BY id LIMIT 1",
                )
                .bind(s.clinic_id.to_string())
                .fetch_one(&s.db)
                .await?;
                let get = |path: String| {
                    let mut r = axum::http::Request::get(path)
                        .header("authorization", format!("Bearer {token}"))
                        .header("user-agent", "clinicdesk-bench")
                        .body(axum::body::Body::empty())
                        .unwrap_or_default();
                    r.extensions_mut().insert(axum::extract::ConnectInfo(
                        std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)),
                    ));
                    r
                };
                let timed = async |path: String| -> anyhow::Result<f64> {
                    let started = Instant::now();
                    let resp = router.clone().oneshot(get(path)).await?;
                    anyhow::ensure!(resp.status() == 200, "read failed: {}", resp.status());
                    axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
                    Ok(started.elapsed().as_secs_f64() * 1e3)
                };
                let (mut search, mut by_id) = (Vec::new(), Vec::new());
                for i in 0..searches {
                    // As a person types a family name: two, three, then four letters.
                    let family = name_part((i * 7_919) % per_clinic).to_lowercase();
                    let typed = &family[..2 + i % 3];
                    search.push(timed(format!("/v1/patients?q={typed}")).await?);
                    by_id.push(timed(format!("/v1/patients/{patient}/record")).await?);
                }
                let (search, by_id) = (p99(&mut search), p99(&mut by_id));
                metrics.push(Metric::new(
                    db.name("patient_search_p99_ms", "patient_search_p99_ms_postgres"),
                    search,
                    "ms",
                    "patient_read_by_id_p99_ms",
                    by_id,
                    "<= 5",
                    search <= 5.0,
                ));
            }
            Ok::<_, anyhow::Error>(metrics)
        })
        .context("patient search")
}

/// The server's Synthea test export (100 patients).
const SYNTHEA_PATIENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../server/tests/data/synthea-100-patients/Patient.000.ndjson"
);

/// `n` Synthea patients: the export's, copied under new resource ids (and the Synthea
/// identifier that repeats the id) as often as needed, so each is a new source record.
fn synthea_lines(n: usize) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(SYNTHEA_PATIENTS).context("the Synthea test export")?;
    let originals: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut out = String::new();
    for i in 0..n {
        let mut p = originals[i % originals.len()].clone();
        let id = p["id"].as_str().unwrap_or_default().to_owned();
        let copy = format!("{id}-{}", i / originals.len());
        p["id"] = serde_json::Value::String(copy.clone());
        if let Some(ids) = p["identifier"].as_array_mut() {
            for ident in ids.iter_mut().filter(|x| x["value"] == id.as_str()) {
                ident["value"] = serde_json::Value::String(copy.clone());
            }
        }
        out.push_str(&serde_json::to_string(&p)?);
        out.push('\n');
    }
    Ok(out)
}

pub fn import_patients_per_s(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let n = scale.pick(500, 5_000);
    runtime()?.block_on(async {
        let mut metrics = Vec::new();
        for db in Db::each() {
            let s = db.served().await?;
            let console = Console::operator();
            let export = tempfile::tempdir()?;
            std::fs::write(export.path().join("Patient.000.ndjson"), synthea_lines(n)?)?;
            let into = Uuid::now_v7();
            s.state
                .store
                .create_clinic(into, "Import bench", 900, "UTC", 0)
                .await?;
            let scope = ClinicScope::of_console(&console, into);
            let started = Instant::now();
            let report = clinicdesk_server::admin::import::import_ndjson(
                &s.state,
                &console,
                &scope,
                export.path(),
                &mut |_, _| {},
            )
            .await?;
            let imported_per_s = n as f64 / started.elapsed().as_secs_f64();
            anyhow::ensure!(
                report.imported == n as u64 && report.skipped.is_empty(),
                "imported {} of {n}, skipped {}",
                report.imported,
                report.skipped.len()
            );

            // The baseline: the same stored rows (content, derived columns, source keys, blind
            // indexes), inserted bare into another clinic in the import's batches, one
            // transaction each: what is left is the record layer's own work (its versions,
            // events, sealing and checks).
            let rows = sqlx::query(
                "SELECT name, birth_date, mrn, phone, record, given_key, family_key, phone_key,
                 import_key, ssn_index, ssn_last4_index
             FROM patients WHERE clinic_id = $1",
            )
            .bind(into.to_string())
            .fetch_all(&s.db)
            .await?;
            let bare_clinic = Uuid::now_v7();
            s.state
                .store
                .create_clinic(bare_clinic, "Bare bench", 900, "UTC", 0)
                .await?;
            let started = Instant::now();
            for batch in rows.chunks(clinicdesk_server::admin::import::BATCH) {
                let mut tx = s.db.begin().await?;
                for r in batch {
                    sqlx::query(
                        "INSERT INTO patients (id, clinic_id, name, birth_date, mrn, phone, record,
                         given_key, family_key, phone_key, import_key, ssn_index,
                         ssn_last4_index, allergies, problems, medications, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                         '[]', '[]', '[]', 1)",
                    )
                    .bind(Uuid::now_v7().to_string())
                    .bind(bare_clinic.to_string())
                    .bind(r.get::<String, _>(0))
                    .bind(r.get::<String, _>(1))
                    .bind(r.get::<String, _>(2))
                    .bind(r.get::<String, _>(3))
                    .bind(r.get::<String, _>(4))
                    .bind(r.get::<String, _>(5))
                    .bind(r.get::<String, _>(6))
                    .bind(r.get::<String, _>(7))
                    .bind(r.get::<Option<String>, _>(8))
                    .bind(r.get::<String, _>(9))
                    .bind(r.get::<String, _>(10))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            let bare_per_s = rows.len() as f64 / started.elapsed().as_secs_f64();
            metrics.push(Metric::new(
                db.name("import_patients_per_s", "import_patients_per_s_postgres"),
                imported_per_s,
                "patients/s",
                "bare_patient_inserts_per_s",
                bare_per_s,
                ">= 5000/s, and at least a third of the bare inserts' rate",
                imported_per_s >= 5_000.0 && imported_per_s * 3.0 >= bare_per_s,
            ));
        }
        Ok(metrics)
    })
}

pub fn seed_patients_per_s(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let clinics = u32::try_from(scale.pick(20, 200))?;
    runtime()?.block_on(async {
        let s = served().await?;
        let spec = clinicdesk_server::admin::seed_scale::ScaleSeed {
            clinics,
            patients_per_clinic: 500,
            seed: 7,
        };
        let started = Instant::now();
        let report = clinicdesk_server::admin::seed_scale::seed_clinics(
            &s.state.store,
            &Console::operator(),
            &clinicdesk_server::time::SystemClock,
            spec,
            &mut |_, _| {},
        )
        .await?;
        let seeded_per_s = report.patients as f64 / started.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.patients == u64::from(clinics) * 500,
            "seeded {} patients",
            report.patients
        );
        // The floor: the same rows copied bare, in one statement, into a table of the same
        // shape without its indexes.
        sqlx::query("CREATE TABLE bench_patients AS SELECT * FROM patients WHERE 0 = 1")
            .execute(&s.db)
            .await?;
        let started = Instant::now();
        let copied = sqlx::query("INSERT INTO bench_patients SELECT * FROM patients")
            .execute(&s.db)
            .await?
            .rows_affected();
        let bare_per_s = copied as f64 / started.elapsed().as_secs_f64();
        Ok(vec![Metric::new(
            "seed_patients_per_s",
            seeded_per_s,
            "patients/s",
            "bare_row_copy_per_s",
            bare_per_s,
            ">= 1667/s (200 clinics of 500 within a minute)",
            seeded_per_s >= 1_667.0,
        )])
    })
}
