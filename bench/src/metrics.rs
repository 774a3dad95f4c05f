//! The desktop core's metrics, each with its same-run baseline.

use std::time::{Duration, Instant};

use anyhow::Context;
use clinicdesk_app::local::cache::{Cache, Meta};
use clinicdesk_app::local::db;
use clinicdesk_app::local::outbox::{Draft, Outbox, Signer};
use clinicdesk_app::secrets::device_key::DeviceKey;
use clinicdesk_app::secrets::keychain::random_key;
use clinicdesk_app::secrets::keys::{ARGON2_M_KIB, ARGON2_P, ARGON2_T, DeviceSecret, WrappedKey};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::UserInfo;
use rusqlite::{Connection, params};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::report::Metric;

#[derive(Debug, Clone, Copy)]
pub enum Scale {
    Quick,
    Full,
}

impl Scale {
    pub fn pick(self, quick: usize, full: usize) -> usize {
        match self {
            Scale::Quick => quick,
            Scale::Full => full,
        }
    }
}

type Run = fn(Scale) -> anyhow::Result<Vec<Metric>>;

pub const ALL: &[(&str, Run)] = &[
    ("outbox_append_eps", |s| {
        outbox_append_eps(s).map(|m| vec![m])
    }),
    ("sqlcipher_overhead_ratio", |s| {
        sqlcipher_overhead_ratio(s).map(|m| vec![m])
    }),
    ("cipher_memory_security_s", |s| {
        cipher_memory_security_s(s).map(|m| vec![m])
    }),
    ("unlock_ms", |s| unlock_ms(s).map(|m| vec![m])),
    (
        "cache_search_p99_ms",
        crate::cache_search::cache_search_p99_ms,
    ),
    ("lock_latency_ms", crate::lock_latency::lock_latency_ms),
    ("offline_write_ms", crate::offline_write::offline_write_ms),
    ("initial_sync_s", crate::initial_sync::initial_sync_s),
    ("app_cold_start_ms", crate::app_start::app_start),
    ("audit_ingest_eps", crate::audit::audit_ingest_eps),
    ("audit_search_p99_ms", crate::audit::audit_search_p99_ms),
    ("audit_overhead_us", crate::audit::audit_overhead_us),
    (
        "provision_50_concurrent_ms",
        crate::provisioning::provision_50_concurrent_ms,
    ),
    ("patient_write_us", crate::records::patient_write_us),
    (
        "key_rotation_rows_per_s",
        crate::records::key_rotation_rows_per_s,
    ),
    (
        "patient_search_p99_ms",
        crate::records::patient_search_p99_ms,
    ),
    (
        "import_patients_per_s",
        crate::records::import_patients_per_s,
    ),
    ("seed_patients_per_s", crate::records::seed_patients_per_s),
    ("load_", crate::load::load),
];

fn user() -> UserInfo {
    UserInfo {
        user_id: Uuid::now_v7(),
        username: "bench".into(),
        display_name: "Bench".into(),
        role: Role::Clinician,
        clinic_id: Uuid::now_v7(),
    }
}

fn draft(i: usize) -> Draft {
    Draft {
        action: AuditAction::View,
        resource_type: "Patient",
        resource_id: format!("patient-{i}"),
        patient_id: Some(Uuid::now_v7()),
        fields: vec!["name".into(), "birth_date".into(), "phone".into()],
        offline: false,
        route: "patient",
        break_glass: None,
    }
}

/// Signed, chained events appended to the encrypted outbox (one transaction each, as the
/// app does), against inserting the same number of ready-made rows into an identical
/// encrypted table without signing or chaining.
fn outbox_append_eps(scale: Scale) -> anyhow::Result<Metric> {
    let n = scale.pick(3_000, 20_000);
    let dir = tempfile::tempdir()?;
    let key = DeviceKey::from_seed(&*random_key()?);
    let user = user();
    let signer = Signer {
        key: &key,
        device_id: Uuid::now_v7(),
        user: &user,
    };
    let mut outbox = Outbox::open(&dir.path().join("outbox.sqlite3"), &random_key()?)?;
    let started = Instant::now();
    for i in 0..n {
        outbox.append(&signer, draft(i), 1_795_435_200_000)?;
    }
    let eps = n as f64 / started.elapsed().as_secs_f64();

    let conn = db::open_encrypted(&dir.path().join("bare-rows.sqlite3"), &random_key()?, &[])?;
    conn.execute_batch(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, event_json TEXT NOT NULL);",
    )?;
    let row = serde_json::to_string(&outbox.pending(1)?)?;
    let started = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN")?;
        conn.execute(
            "INSERT INTO outbox (seq, id, event_json) VALUES (?1, ?2, ?3)",
            params![i as i64, Uuid::now_v7().to_string(), row],
        )?;
        conn.execute_batch("COMMIT")?;
    }
    let baseline = n as f64 / started.elapsed().as_secs_f64();
    Ok(Metric::new(
        "outbox_append_eps",
        eps,
        "events/s",
        "unsigned_insert_eps",
        baseline,
        ">= 10000",
        eps >= 10_000.0,
    ))
}

/// The same cache workload (bulk insert of synthetic patients with indexes, then name
/// prefix, birth date and MRN lookups) on SQLCipher and on plain SQLite.
fn sqlcipher_overhead_ratio(scale: Scale) -> anyhow::Result<Metric> {
    let n = scale.pick(20_000, 100_000);
    let dir = tempfile::tempdir()?;
    // The cipher side is opened exactly as the app opens a user's cache; the plain side
    // gets the same journal mode and page cache size.
    let cipher_conn = db::open_encrypted(&dir.path().join("cipher.sqlite3"), &random_key()?, &[])?;
    let cipher = workload(cipher_conn, n)?;
    let plain_conn = Connection::open(dir.path().join("plain.sqlite3"))?;
    plain_conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA cache_size = -{};",
        db::CACHE_KIB
    ))?;
    let plain = workload(plain_conn, n)?;
    let ratio = cipher.as_secs_f64() / plain.as_secs_f64();
    Ok(Metric::new(
        "sqlcipher_overhead_ratio",
        cipher.as_secs_f64(),
        "s",
        "plain_sqlite_s",
        plain.as_secs_f64(),
        "ratio <= 1.3",
        ratio <= 1.3,
    ))
}

fn workload(conn: Connection, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    conn.execute_batch(
        "CREATE TABLE patients (id TEXT PRIMARY KEY, name TEXT NOT NULL, birth_date TEXT NOT NULL,
             mrn TEXT NOT NULL, json TEXT NOT NULL);
         CREATE INDEX patients_name ON patients (name);
         CREATE INDEX patients_birth ON patients (birth_date);
         CREATE INDEX patients_mrn ON patients (mrn);
         BEGIN;",
    )?;
    {
        let mut insert = conn.prepare(
            "INSERT INTO patients (id, name, birth_date, mrn, json) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for i in 0..n {
            let name = format!("synthetic{:06}", (i * 7919) % n);
            let birth = format!("19{:02}-{:02}-{:02}", i % 100, i % 12 + 1, i % 28 + 1);
            let mrn = format!("MRN{i:08}");
            let json =
                format!("{{\"name\":\"{name}\",\"birth_date\":\"{birth}\",\"mrn\":\"{mrn}\"}}");
            insert.execute(params![Uuid::now_v7().to_string(), name, birth, mrn, json])?;
        }
    }
    conn.execute_batch("COMMIT;")?;
    let mut by_name = conn.prepare_cached(
        "SELECT json FROM patients WHERE name >= ?1 AND name < ?2 ORDER BY name LIMIT 20",
    )?;
    let mut by_birth =
        conn.prepare_cached("SELECT json FROM patients WHERE birth_date = ?1 LIMIT 20")?;
    let mut by_mrn = conn.prepare_cached("SELECT json FROM patients WHERE mrn = ?1")?;
    let mut found = 0usize;
    for i in 0..3_000 {
        let prefix = format!("synthetic{:04}", (i * 31) % (n / 100).max(1));
        let end = format!("{prefix}\u{10ffff}");
        found += by_name.query_map(params![prefix, end], |_| Ok(()))?.count();
        let birth = format!("19{:02}-{:02}-{:02}", i % 100, i % 12 + 1, i % 28 + 1);
        found += by_birth.query_map([birth], |_| Ok(()))?.count();
        found += by_mrn
            .query_map([format!("MRN{:08}", (i * 13) % n)], |_| Ok(()))?
            .count();
    }
    anyhow::ensure!(
        found > 0,
        "the lookups found nothing: the workload is wrong"
    );
    Ok(started.elapsed())
}

/// Set in a child run of this program: the cache workload under SQLCipher with
/// `cipher_memory_security` ON or OFF (the setting is process-wide, so each side gets a
/// process of its own), its seconds printed on stdout.
pub const MEMORY_SECURITY_CHILD: &str = "CLINICDESK_BENCH_MEMORY_SECURITY";
const MEMORY_SECURITY_ROWS: &str = "CLINICDESK_BENCH_MEMORY_SECURITY_ROWS";

/// What `cipher_memory_security = ON` (the app's setting: SQLCipher wipes every buffer it
/// frees and locks its key material in memory) costs the cache workload, against the same
/// workload with it OFF, each in a fresh process, median of three.
fn cipher_memory_security_s(scale: Scale) -> anyhow::Result<Metric> {
    let n = scale.pick(20_000, 100_000);
    let run = |mode: &str| -> anyhow::Result<f64> {
        let out = std::process::Command::new(std::env::current_exe()?)
            .env(MEMORY_SECURITY_CHILD, mode)
            .env(MEMORY_SECURITY_ROWS, n.to_string())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "the {mode} run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    };
    let median = |mode: &str| -> anyhow::Result<f64> {
        let mut times = [run(mode)?, run(mode)?, run(mode)?];
        times.sort_by(f64::total_cmp);
        Ok(times[1])
    };
    let (on, off) = (median("ON")?, median("OFF")?);
    Ok(Metric::new(
        "cipher_memory_security_s",
        on,
        "s",
        "cipher_memory_security_off_s",
        off,
        "reported",
        true,
    ))
}

/// The child side of [`cipher_memory_security_s`]: opens a SQLCipher cache as the app does
/// but with the setting `mode`, runs the workload, prints its seconds.
pub fn memory_security_child(mode: &str) -> anyhow::Result<()> {
    anyhow::ensure!(mode == "ON" || mode == "OFF", "mode is ON or OFF");
    let n: usize = std::env::var(MEMORY_SECURITY_ROWS)?.parse()?;
    let dir = tempfile::tempdir()?;
    let conn = Connection::open(dir.path().join("cache.sqlite3"))?;
    conn.execute_batch(&format!("PRAGMA cipher_memory_security = {mode};"))?;
    let key = clinicdesk_protocol::audit::to_hex(random_key()?.as_slice());
    conn.execute_batch(&format!("PRAGMA key = \"x'{key}'\";"))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA cache_size = -{};",
        db::CACHE_KIB
    ))?;
    // SQLCipher answers the setting as text, "1" or "0".
    let on: String = conn.query_row("PRAGMA cipher_memory_security", [], |r| r.get(0))?;
    anyhow::ensure!((on == "1") == (mode == "ON"), "the setting did not take");
    let took = workload(conn, n)?;
    println!("{}", took.as_secs_f64());
    Ok(())
}

/// Password to an open cache: argon2id (OWASP parameters) + HKDF + unwrap + SQLCipher open,
/// median of 7, against argon2id alone with the same parameters.
fn unlock_ms(_scale: Scale) -> anyhow::Result<Metric> {
    let dir = tempfile::tempdir()?;
    let secret = DeviceSecret::from_bytes(random_key()?);
    let user = user();
    let password = "correct horse battery staple";
    let cache_key = random_key()?;
    let wrapped = WrappedKey::wrap(&secret, user.user_id, &user.username, password, &cache_key)?;
    let path = dir.path().join("cache.sqlite3");
    {
        let mut cache = Cache::open(&path, &cache_key)?;
        cache.put_meta(&Meta {
            user: user.clone(),
            last_online_ms: 0,
            max_offline_secs: 1,
            idle_timeout_secs: 1,
        })?;
    }
    let mut unlock = Vec::new();
    let mut kdf = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let key = wrapped.unwrap(&secret, password)?;
        let cache = Cache::open(&path, &key)?;
        cache.meta()?.context("meta")?;
        unlock.push(started.elapsed());

        let started = Instant::now();
        let params = argon2::Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32))
            .map_err(|_| anyhow::anyhow!("argon2 params"))?;
        let mut out = Zeroizing::new([0u8; 32]);
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(
                password.as_bytes(),
                b"sixteen byte salt",
                out.as_mut_slice(),
            )
            .map_err(|_| anyhow::anyhow!("argon2"))?;
        kdf.push(started.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let value = median(&mut unlock);
    Ok(Metric::new(
        "unlock_ms",
        value,
        "ms",
        "argon2id_only_ms",
        median(&mut kdf),
        "<= 500",
        value <= 500.0,
    ))
}
