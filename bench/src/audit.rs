//! The audit trail's metrics, each against a baseline measured in the same run:
//! - `audit_ingest_eps`: device-signed events through `POST /v1/audit/batches` over TLS on
//!   loopback (signature, chain, log, checkpoint, receipt), against inserting the same rows
//!   unverified into an identical table; plus the share of this machine's Ed25519
//!   verification limit that rate is.
//! - `audit_search_p99_ms`: "who accessed patient X between T1 and T2" over a large store,
//!   against the same searches over a small one.
//! - `audit_overhead_us`: the median time server-side auditing adds to a PHI read (the same
//!   handler and authorization with and without the recording middleware).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::routing::get;
use clinicdesk_app::secrets::keychain::random_key;
use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, Hash32, Outcome, Recorder, SignedAuditEvent, to_hex,
};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::EnrollResponse;
use clinicdesk_server::admin::seed;
use clinicdesk_server::http::tls;
use clinicdesk_server::secrets::kek::KeyFileProvider;
use clinicdesk_server::store::{Store, StoreLocation};
use clinicdesk_server::time::SystemClock;
use clinicdesk_server::{AppState, build_router};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use tower::ServiceExt;
use uuid::Uuid;

use crate::metrics::Scale;
use crate::report::Metric;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A served data dir with the synthetic clinic and one enrolled workstation.
pub(crate) struct Served {
    pub(crate) state: AppState,
    /// Where the server's store is (for another instance on the same database).
    pub(crate) location: StoreLocation,
    /// The bench's own pool on the server's database ([`own_pool`]).
    pub(crate) db: sqlx::AnyPool,
    dir: tempfile::TempDir,
    pub(crate) url: String,
    /// The server's CA (PEM), for an app to pin.
    pub(crate) ca_cert: std::path::PathBuf,
    pub(crate) client: reqwest::Client,
    pub(crate) key: SigningKey,
    pub(crate) device_id: Uuid,
    pub(crate) clinic_id: Uuid,
    pub(crate) clinician: Uuid,
    /// The clinician's password.
    pub(crate) password: String,
    /// The front desk's password.
    pub(crate) front_desk_password: String,
}

pub(crate) async fn served() -> anyhow::Result<Served> {
    served_on(None).await
}

/// Enrolls a workstation with a throwaway key through the API: (its key, its id).
pub(crate) async fn enroll(
    client: &reqwest::Client,
    url: &str,
    code: &str,
) -> anyhow::Result<(SigningKey, Uuid)> {
    let key = SigningKey::from_bytes(&*random_key()?);
    let enrolled: EnrollResponse = client
        .post(format!("{url}/v1/devices/enroll"))
        .json(&json!({
            "enrollment_code": code,
            "device_name": "Bench workstation",
            "public_key": to_hex(key.verifying_key().as_bytes()),
            "device_secret": to_hex(random_key()?.as_slice()),
            "recovery_public_key": to_hex(SigningKey::from_bytes(&*random_key()?).verifying_key().as_bytes()),
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok((key, enrolled.device_id))
}

/// A pool of the bench's own on the database at `location`, for the rows it writes and
/// reads directly (the server keeps its pool to itself): the SQLite file, or PostgreSQL
/// through the location's owner URL.
pub(crate) async fn own_pool(location: &StoreLocation) -> anyhow::Result<sqlx::AnyPool> {
    use sqlx::ConnectOptions;
    let url = match location {
        StoreLocation::Embedded(file) => {
            clinicdesk_server::store::at_rest::any_url(file)?.to_string()
        }
        StoreLocation::Postgres { url, migration_url } => {
            migration_url.as_ref().unwrap_or(url).clone()
        }
    };
    sqlx::any::install_default_drivers();
    // As the server's pool: long statements (ANALYZE, big inserts) are not worth a warning.
    let options = url
        .parse::<sqlx::any::AnyConnectOptions>()?
        .disable_statement_logging();
    Ok(sqlx::any::AnyPoolOptions::new()
        .connect_with(options)
        .await?)
}

/// The key-encryption keys of a bench's data directory: in their own folder, removed with it.
pub(crate) fn keys_in(dir: &std::path::Path) -> Arc<KeyFileProvider> {
    Arc::new(KeyFileProvider::new(dir.join("keys")))
}

/// The embedded (encrypted) store of a bench's data directory.
pub(crate) fn embedded_in(dir: &std::path::Path) -> anyhow::Result<StoreLocation> {
    Ok(clinicdesk_server::state::embedded_location(
        dir,
        keys_in(dir).as_ref(),
    )?)
}

/// Another server instance on the same database, as behind a load balancer: a data
/// directory of its own with copies of the first one's keys and certificates.
pub(crate) struct Instance {
    pub(crate) url: String,
    _state: AppState,
    _dir: tempfile::TempDir,
}

impl Served {
    pub(crate) async fn another_instance(&self) -> anyhow::Result<Instance> {
        let dir = tempfile::tempdir()?;
        copy_keys(self.dir.path(), dir.path())?;
        let state = AppState::open_at(
            &self.location,
            dir.path(),
            Arc::new(SystemClock),
            keys_in(dir.path()),
        )
        .await?;
        let (url, _) = serve(&state, dir.path()).await?;
        Ok(Instance {
            url,
            _state: state,
            _dir: dir,
        })
    }
}

/// Serves `state` over TLS on a loopback port, with the certificate of the data directory's
/// local CA: (its URL, the certificate files).
async fn serve(state: &AppState, dir: &std::path::Path) -> anyhow::Result<(String, tls::TlsFiles)> {
    let files = tls::ensure_local_ca(dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    tokio::spawn(tls::serve(
        listener,
        tls::server_config(&files)?,
        build_router(state.clone())?,
    ));
    Ok((url, files))
}

/// Copies a data directory's files but the embedded store's.
fn copy_keys(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if path.is_dir() {
            std::fs::create_dir_all(to.join(name))?;
            copy_keys(&path, &to.join(name))?;
        } else if !name
            .to_string_lossy()
            .starts_with(clinicdesk_server::store::EMBEDDED_FILE)
        {
            std::fs::copy(&path, to.join(name))?;
        }
    }
    Ok(())
}

/// Closes the bench's own pool, and waits for it, when the served clinic goes (as the
/// server's `Store` does for its own: `store::at_rest::close_and_wait` says why).
impl Drop for Served {
    fn drop(&mut self) {
        clinicdesk_server::store::at_rest::close_and_wait(self.db.clone());
    }
}

/// A served clinic on the embedded SQLite store, or on the PostgreSQL database at `database`.
pub(crate) async fn served_on(database: Option<&str>) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let location = match database {
        None => embedded_in(dir.path())?,
        Some(url) => StoreLocation::postgres_as_owner(url),
    };
    let state = AppState::open_at(
        &location,
        dir.path(),
        Arc::new(SystemClock),
        keys_in(dir.path()),
    )
    .await?;
    let db = own_pool(&location).await?;
    let clinic_id = Uuid::now_v7();
    let report =
        seed::seed_clinic(&state.store, &SystemClock, clinic_id, "Bench clinic", 15).await?;
    let (url, files) = serve(&state, dir.path()).await?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            &files.ca_cert,
        )?)?)
        .build()?;
    let (key, device_id) = enroll(&client, &url, &report.enrollment_code).await?;
    let clinician: String =
        sqlx::query_scalar("SELECT id FROM users WHERE clinic_id = $1 AND username = 'clinician'")
            .bind(clinic_id.to_string())
            .fetch_one(&db)
            .await?;
    let clinician = Uuid::parse_str(&clinician)?;
    signed_in_on(&state, clinic_id, device_id, clinician).await?;
    let password_of = |username: &str| {
        report
            .users
            .iter()
            .find(|u| u.username == username)
            .map(|u| u.password.clone())
            .with_context(|| format!("no {username} seeded"))
    };
    let password = password_of("clinician")?;
    let front_desk_password = password_of("frontdesk")?;
    Ok(Served {
        state,
        location,
        db,
        dir,
        url,
        ca_cert: files.ca_cert.clone(),
        client,
        key,
        device_id,
        clinic_id,
        clinician,
        password,
        front_desk_password,
    })
}

/// Records the clinician's sign-in on a workstation, as the app has one before it signs
/// events for them: ingest checks each event's actor against the sign-ins on its device.
pub(crate) async fn signed_in_on(
    state: &AppState,
    clinic: Uuid,
    device: Uuid,
    clinician: Uuid,
) -> anyhow::Result<()> {
    let user = clinicdesk_protocol::wire::UserInfo {
        user_id: clinician,
        username: "clinician".into(),
        display_name: String::new(),
        role: Role::Clinician,
        clinic_id: clinic,
    };
    let token_hash = Uuid::now_v7().simple().to_string();
    state
        .store
        .insert_session(&token_hash, &user, device, now_ms(), false)
        .await?;
    Ok(())
}

/// A chart view by the served clinic's clinician on its first workstation.
pub(crate) fn event(s: &Served, seq: u64, prev: Hash32, patient: Uuid, at_ms: i64) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        clinic_id: s.clinic_id,
        actor_user_id: s.clinician,
        actor_role: Role::Clinician,
        recorded_by: Recorder::Device,
        device_id: s.device_id,
        device_seq: seq,
        action: AuditAction::View,
        resource_type: "Patient".into(),
        resource_id: patient.to_string(),
        patient_id: Some(patient),
        fields: ["name", "birth_date", "phone", "allergies"]
            .map(str::to_owned)
            .to_vec(),
        outcome: Outcome::Success,
        occurred_at_ms: at_ms,
        offline: false,
        route: "patient".into(),
        break_glass: None,
        request: None,
        prev_hash: prev,
        change: None,
    }
}

/// Workstations uploading at once in the ingest benchmark, as a clinic's do: while one
/// batch is written (one writer at a time), the next one's signatures are checked.
const UPLOADING_WORKSTATIONS: usize = 4;

/// Runs of the ingest benchmark: each rate is the median of its runs, as one run of a few
/// tenths of a second moves by a fifth on a shared machine.
const INGEST_RUNS: usize = 3;

pub fn audit_ingest_eps(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let n = scale.pick(10_000, 50_000);
    let rt = runtime()?;
    rt.block_on(async {
        let mut runs = Vec::with_capacity(INGEST_RUNS);
        for _ in 0..INGEST_RUNS {
            runs.push(ingest_run(n).await?);
        }
        let median = |pick: fn(&IngestRun) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(pick).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (eps, baseline, verify_limit) = (
            median(|r| r.eps),
            median(|r| r.baseline),
            median(|r| r.verify_limit),
        );
        Ok(vec![
            Metric::new(
                "audit_ingest_eps",
                eps,
                "events/s",
                "unverified_insert_eps",
                baseline,
                ">= 20000 and verification <= 2x the bare insert",
                eps >= 20_000.0 && baseline / eps <= 2.0,
            ),
            // The ratio column is the share of the limit the ingest rate reaches.
            Metric::new(
                "audit_ingest_share_of_ed25519_limit",
                eps,
                "events/s",
                "ed25519_batch_verify_limit_per_s",
                verify_limit,
                "reported",
                true,
            ),
        ])
    })
}

/// One run of the ingest benchmark: its rate, the bare insert's, and the verification limit.
struct IngestRun {
    eps: f64,
    baseline: f64,
    verify_limit: f64,
}

async fn ingest_run(n: usize) -> anyhow::Result<IngestRun> {
    {
        let s = served().await?;
        let mut stations = vec![(s.key.clone(), s.device_id)];
        while stations.len() < UPLOADING_WORKSTATIONS {
            let code =
                seed::issue_enrollment_code(&s.state.store, &SystemClock, s.clinic_id, 15, None)
                    .await?;
            let station = enroll(&s.client, &s.url, &code).await?;
            signed_in_on(&s.state, s.clinic_id, station.1, s.clinician).await?;
            stations.push(station);
        }
        let now = now_ms();
        let per_station = n / UPLOADING_WORKSTATIONS;
        let chains: Vec<(Uuid, Vec<SignedAuditEvent>)> = stations
            .iter()
            .map(|(key, device_id)| {
                let mut prev = Hash32::GENESIS;
                let chain = (1..=per_station as u64)
                    .map(|seq| {
                        let mut e =
                            event(&s, seq, prev, Uuid::now_v7(), now - (n as i64 - seq as i64));
                        e.device_id = *device_id;
                        prev = e.hash();
                        SignedAuditEvent {
                            signature: to_hex(&key.sign(&e.canonical_bytes()).to_bytes()),
                            event: e,
                        }
                    })
                    .collect();
                (*device_id, chain)
            })
            .collect();
        let signed: Vec<SignedAuditEvent> =
            chains.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        let n = signed.len();
        // The upload bodies are written before the clock starts, as workstations write
        // theirs on their own machines: the figure is the server's work (and TLS).
        let bodies = chains
            .iter()
            .map(|(device_id, chain)| {
                chain
                    .chunks(clinicdesk_server::audit::ingest::MAX_BATCH)
                    .map(|batch| {
                        serde_json::to_vec(&json!({ "device_id": device_id, "events": batch }))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let uploads = bodies.into_iter().map(|batches| {
            let s = &s;
            async move {
                for body in batches {
                    // The receipt is read, as a workstation reads it to forget its events.
                    s.client
                        .post(format!("{}/v1/audit/batches", s.url))
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await?;
                }
                anyhow::Ok(())
            }
        });
        for upload in futures_util::future::join_all(uploads).await {
            upload?;
        }
        let eps = n as f64 / started.elapsed().as_secs_f64();

        // Baseline: the same rows, unverified, into an identical table, 500 per transaction
        // in INSERTs of 100 rows (as ingest writes them): the floor of storing them at all.
        let dir = tempfile::tempdir()?;
        // Encrypted like the served store: the floor includes SQLCipher's pages.
        let bare = embedded_in(dir.path())?;
        // Opening a store makes the schema; the rows go in through the bench's own pool.
        Store::open(&bare).await?;
        let db = own_pool(&bare).await?;
        // One connection with foreign keys off: the bare rows name no enrolled device.
        let mut conn = db.acquire().await?;
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await?;
        let started = Instant::now();
        for (i, batch) in signed
            .chunks(clinicdesk_server::audit::ingest::MAX_BATCH)
            .enumerate()
        {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let first_leaf = i64::try_from(i * clinicdesk_server::audit::ingest::MAX_BATCH)?;
            insert_bare(&mut tx, batch, first_leaf).await?;
            tx.commit().await?;
        }
        let baseline = n as f64 / started.elapsed().as_secs_f64();

        // This machine's Ed25519 verification limit, by the audit format's rule checked as
        // ingest checks it (a share of an upload per core, as one batch): one core's rate
        // times the cores.
        let first = &chains[0].1;
        let sample = &first[..first.len().min(5_000)];
        let key =
            clinicdesk_protocol::signature::PublicKey::from_bytes(s.key.verifying_key().as_bytes())
                .context("device key")?;
        let signed = sample
            .iter()
            .map(|x| {
                let signature = clinicdesk_protocol::audit::from_hex(&x.signature)
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .context("signature hex")?;
                anyhow::Ok((x.event.canonical_bytes(), signature))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Fixed coefficients: the speed does not depend on their values.
        let coefficients: Vec<u8> = (0..SHARE * 16).map(|i| (i * 131 % 251) as u8).collect();
        let started = Instant::now();
        for share in signed.chunks(SHARE) {
            anyhow::ensure!(
                clinicdesk_protocol::signature::verify_batch(
                    &key,
                    share,
                    &coefficients[..share.len() * 16]
                ),
                "sample signatures must verify"
            );
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let verify_limit = sample.len() as f64 / started.elapsed().as_secs_f64() * cores;
        Ok(IngestRun {
            eps,
            baseline,
            verify_limit,
        })
    }
}

/// Signatures per batch in the verification limit: half of a full upload, the share of
/// one of this machine's two cores.
const SHARE: usize = clinicdesk_server::audit::ingest::MAX_BATCH / 2;

/// Milliseconds since the epoch, from the server's clock.
fn now_ms() -> i64 {
    use clinicdesk_server::time::Clock;
    SystemClock.now_ms()
}

/// Rows per statement of the bare insert, as the server's ingest writes them.
const BARE_ROWS_PER_INSERT: usize = 100;

/// The events as bare `audit_events` rows: multi-row INSERTs, no checks, no log.
async fn insert_bare(
    conn: &mut sqlx::AnyConnection,
    events: &[SignedAuditEvent],
    first_leaf: i64,
) -> anyhow::Result<()> {
    let mut leaf = first_leaf;
    for rows in events.chunks(BARE_ROWS_PER_INSERT) {
        let sql = values_sql(
            "INSERT INTO audit_events (id, clinic_id, device_id, device_seq, actor_user_id,
               patient_id, action, occurred_at_ms, event_json, hash, signature, received_at_ms,
               leaf_index)
             VALUES ",
            rows.len(),
            13,
            "",
            clinicdesk_server::store::Backend::Sqlite,
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for x in rows {
            let e = &x.event;
            insert = insert
                .bind(e.id.to_string())
                .bind(e.clinic_id.to_string())
                .bind(e.device_id.to_string())
                .bind(i64::try_from(e.device_seq)?)
                .bind(e.actor_user_id.to_string())
                .bind(e.patient_id.map(|p| p.to_string()))
                .bind(e.action.as_str())
                .bind(e.occurred_at_ms)
                .bind(serde_json::to_string(e)?)
                .bind(e.hash().to_hex())
                .bind(x.signature.clone())
                .bind(e.occurred_at_ms)
                .bind(leaf);
            leaf += 1;
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A new empty database on the PostgreSQL server whose superuser URL is `admin`.
pub(crate) async fn fresh_postgres_database(admin: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let name = format!("clinicdesk_bench_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let (server, _) = admin
        .rsplit_once('/')
        .context("the PostgreSQL URL names no database")?;
    Ok(format!("{server}/{name}"))
}

/// Drops a database [`fresh_postgres_database`] made, and whatever is still connected to it.
#[cfg(test)]
pub(crate) async fn drop_postgres_database(admin: &str, database: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let (_, name) = database.rsplit_once('/').context("no database name")?;
    anyhow::ensure!(
        name.starts_with("clinicdesk_bench_"),
        "not a bench database"
    );
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Where a search benchmark runs: the embedded SQLite store, or a fresh database on the
/// PostgreSQL server whose superuser URL is given.
#[derive(Clone, Copy)]
enum Backend<'a> {
    Sqlite,
    Postgres(&'a str),
}

/// Fills a store with `n` events of `patients` patients over the last year, written
/// directly (as `audit_events` rows with their leaf indices; search reads nothing else),
/// and returns the p99 of "patient X in a 7-day window" searches, in milliseconds.
async fn search_p99_ms(
    n: usize,
    patients: usize,
    queries: usize,
    backend: Backend<'_>,
) -> anyhow::Result<f64> {
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(admin) => Some(fresh_postgres_database(admin).await?),
    };
    let s = served_on(database.as_deref()).await?;
    let pool = &s.db;
    let ids: Vec<Uuid> = (0..patients).map(|_| Uuid::now_v7()).collect();
    let now = now_ms();
    let step = (365 * DAY_MS) / n as i64;
    let json_template = serde_json::to_string(&event(&s, 1, Hash32::GENESIS, ids[0], now))?;
    // The clinic's log already holds the server's own events (the enrollment): the
    // synthetic leaves follow them.
    let first_leaf: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE clinic_id = $1")
            .bind(s.clinic_id.to_string())
            .fetch_one(pool)
            .await?;
    // Rows go in a hundred per statement (the same on both backends).
    const ROWS: usize = 100;
    let clinic = s.clinic_id.to_string();
    let device = s.device_id.to_string();
    let clinician = s.clinician.to_string();
    let mut written = 0usize;
    while written < n {
        let mut tx = pool.begin().await?;
        let batch_end = n.min(written + 50_000);
        while written < batch_end {
            let rows: Vec<usize> = (written..batch_end.min(written + ROWS)).collect();
            let events_sql = values_sql(
                "INSERT INTO audit_events (id, clinic_id, device_id, device_seq, actor_user_id,
                   patient_id, occurred_at_ms, event_json, leaf_index, action, hash, signature,
                   received_at_ms)
                 VALUES ",
                rows.len(),
                9,
                ", 'view', '', '', 0",
                s.state.store.backend(),
            );
            let mut events = sqlx::query(sqlx::AssertSqlSafe(events_sql));
            for &i in &rows {
                events = events
                    .bind(Uuid::now_v7().to_string())
                    .bind(clinic.clone())
                    .bind(device.clone())
                    .bind(i as i64 + 1)
                    .bind(clinician.clone())
                    .bind(ids[(i * 7919) % patients].to_string())
                    .bind(now - 365 * DAY_MS + i as i64 * step)
                    .bind(json_template.clone())
                    .bind(first_leaf + i as i64);
            }
            events.execute(&mut *tx).await?;
            written += rows.len();
        }
        tx.commit().await?;
    }
    // The planner's statistics, gathered through the bench's pool: on PostgreSQL that is
    // the owner's (the server's role owns no table).
    let analyze = match backend {
        Backend::Sqlite => "ANALYZE",
        Backend::Postgres(_) => "ANALYZE audit_events",
    };
    sqlx::query(analyze).execute(pool).await?;
    let mut times = Vec::with_capacity(queries);
    for q in 0..queries {
        let from = now - 365 * DAY_MS + ((q as i64 * 104_729) % (358 * DAY_MS));
        let query = clinicdesk_server::audit::query::AuditQuery {
            patient_id: Some(ids[(q * 31) % patients]),
            from_ms: Some(from),
            to_ms: Some(from + 7 * DAY_MS),
            ..Default::default()
        };
        let started = Instant::now();
        let page =
            clinicdesk_server::admin::operator::search_audit(&s.state.store, s.clinic_id, &query)
                .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(page);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[(times.len() * 99 / 100).min(times.len() - 1)])
}

/// `head`, then `rows` groups of `binds` placeholders, each group followed by `literals`
/// (the columns every row shares). Numbered (`$n`) for PostgreSQL, anonymous (`?`) for
/// SQLite, which binds numbered ones in quadratic time (see the server's `sql.rs`).
fn values_sql(
    head: &str,
    rows: usize,
    binds: usize,
    literals: &str,
    backend: clinicdesk_server::store::Backend,
) -> String {
    let groups: Vec<String> = (0..rows)
        .map(|row| {
            let placeholders: Vec<String> = (1..=binds)
                .map(|b| match backend {
                    clinicdesk_server::store::Backend::Postgres => format!("${}", row * binds + b),
                    clinicdesk_server::store::Backend::Sqlite => "?".to_owned(),
                })
                .collect();
            format!("({}{literals})", placeholders.join(", "))
        })
        .collect();
    format!("{head}{}", groups.join(", "))
}

/// "Who accessed patient X between T1 and T2" over n stored events, on the embedded SQLite
/// store, and on PostgreSQL when the bench is given a server (`CLINICDESK_BENCH_POSTGRES_URL`,
/// which `cargo xtask bench` sets to a throwaway cluster on loopback).
pub fn audit_search_p99_ms(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let n = scale.pick(1_000_000, 10_000_000);
    let name = if n >= 10_000_000 {
        "audit_search_p99_ms"
    } else {
        "audit_search_p99_ms_1m"
    };
    let postgres = std::env::var("CLINICDESK_BENCH_POSTGRES_URL").ok();
    let rt = runtime()?;
    rt.block_on(async {
        let mut metrics = Vec::new();
        let mut backends = vec![(Backend::Sqlite, name)];
        if let Some(admin) = &postgres {
            let name = if n >= 10_000_000 {
                "audit_search_p99_ms_postgres"
            } else {
                "audit_search_p99_ms_1m_postgres"
            };
            backends.push((Backend::Postgres(admin), name));
        }
        for (backend, metric) in backends {
            let large = search_p99_ms(n, 10_000, 500, backend).await?;
            let small = search_p99_ms(10_000, 10_000, 500, backend).await?;
            metrics.push(Metric::new(
                metric,
                large,
                "ms",
                "same_searches_over_10k_events_p99_ms",
                small,
                "<= 20",
                large <= 20.0,
            ));
        }
        Ok(metrics)
    })
}

pub fn audit_overhead_us(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let rounds = scale.pick(1_000, 5_000);
    let rt = runtime()?;
    rt.block_on(async {
        let s = served().await?;
        let token = login(&s).await?;
        let patient: String =
            sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 LIMIT 1")
                .bind(s.clinic_id.to_string())
                .fetch_one(&s.db)
                .await?;
        let audited = build_router(s.state.clone())?;
        // The same handler and authorization, without the PHI access recorder.
        let unaudited = axum::Router::new()
            .route(
                "/v1/patients/{patient_id}",
                get(clinicdesk_server::http::routes::patients::get_patient),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                s.state.clone(),
                clinicdesk_server::http::authorize::authorize,
            ))
            .with_state(s.state.clone());
        let request = || {
            let mut r = axum::http::Request::get(format!("/v1/patients/{patient}"))
                .header("authorization", format!("Bearer {token}"))
                .header("user-agent", "clinicdesk-bench")
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            r.extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    40_000,
                ))));
            r
        };
        let mut with = Vec::with_capacity(rounds);
        let mut without = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            for (router, times) in [(&audited, &mut with), (&unaudited, &mut without)] {
                let started = Instant::now();
                let resp = router.clone().oneshot(request()).await?;
                anyhow::ensure!(resp.status() == 200, "PHI read failed: {}", resp.status());
                axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
                times.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (with, without) = (median(&mut with), median(&mut without));
        let overhead = with - without;
        Ok(vec![Metric::new(
            "audit_overhead_us",
            overhead,
            "us",
            "unaudited_phi_read_median_us",
            without,
            "<= 200",
            overhead <= 200.0,
        )])
    })
}

/// The served clinician's first sign-in (setting up TOTP) on the first workstation: the
/// session token.
pub(crate) async fn login(s: &Served) -> anyhow::Result<String> {
    let sign_in = crate::sign_in::SignIn {
        client: &s.client,
        urls: (&s.url, &s.url),
        key: &s.key,
        device: s.device_id,
        username: "clinician",
        password: &s.password,
    };
    let (_, token) = sign_in.first(&Default::default()).await?;
    Ok(token)
}
