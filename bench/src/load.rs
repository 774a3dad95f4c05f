//! Many workstations at once against one server on loopback (or, on PostgreSQL, two server
//! instances on one database behind a round-robin client), while clinicians sign in and
//! read charts:
//! - `load_ingest_eps`: device-signed events acknowledged per second, every workstation
//!   uploading its own chain under its own key, a batch at a time, each next batch sent as
//!   soon as the last one's receipt is read (as an outbox that has fallen behind does);
//! - `load_ack_p99_ms`: from sending a batch to holding its receipt;
//! - `load_read_p99_ms`: a clinician's chart read (`GET /v1/patients/{id}`, with its audit
//!   event), against the same readers' reads with no upload load just before.
//!
//! Each figure is given at 50 workstations and at more (up to 500), so the report shows how
//! it grows. Afterwards the store is read directly: every event a receipt acknowledged is
//! stored exactly once, and nothing else, and every chart read answered has the server's
//! audit event (`LoadOutcome::faults`). The bounded smoke version runs in `cargo xtask test`
//! (the test below): it asserts that, never a speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clinicdesk_protocol::audit::{Hash32, SignedAuditEvent, to_hex};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::AuditReceipt;
use clinicdesk_server::admin::seed;
use clinicdesk_server::clinical::care_team;
use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::secrets::passwords;
use clinicdesk_server::time::{Clock, SystemClock};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{Served, enroll, fresh_postgres_database, runtime, served_on, signed_in_on};
use crate::metrics::Scale;
use crate::report::Metric;
use crate::sign_in::SignIn;

/// Events in each upload: what an outbox holds after a few minutes of a busy workstation.
const BATCH: u64 = 20;

/// A reader's pause between two chart reads: a clinician reads a chart, not a stream.
const READ_PAUSE: Duration = Duration::from_millis(200);

/// How long a request may take before the workstation gives up on it and sends it again.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One load run.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    pub(crate) workstations: usize,
    pub(crate) readers: usize,
    /// How long the readers read alone (the baseline), then again under upload load.
    pub(crate) idle_reads: Duration,
    /// How long the workstations upload.
    pub(crate) duration: Duration,
    /// A fresh PostgreSQL database (two server instances on it), or the embedded store.
    pub(crate) postgres: Option<String>,
}

/// What a load run measured, and what it found wrong.
#[derive(Debug)]
pub(crate) struct LoadOutcome {
    pub(crate) events_acknowledged: u64,
    pub(crate) ingest_eps: f64,
    pub(crate) ack_p99_ms: f64,
    pub(crate) uploads: usize,
    /// Uploads sent again after an error or a timeout (the same events).
    pub(crate) upload_retries: usize,
    pub(crate) idle_read_p99_ms: f64,
    pub(crate) read_p99_ms: f64,
    pub(crate) idle_reads: usize,
    pub(crate) reads: usize,
    /// The server's own audit events of chart views in the clinic: one per read answered.
    pub(crate) audited_reads: u64,
    /// Sign-ins asked to wait a moment (429) and sent again.
    pub(crate) sign_in_waits: usize,
    /// Workstations whose stored chain is not exactly what their receipts acknowledged,
    /// chart reads that were refused, and the like: empty when nothing was lost,
    /// duplicated or refused.
    pub(crate) faults: Vec<String>,
}

/// A workstation: its key, its id, and what it sent.
struct Workstation {
    key: SigningKey,
    id: Uuid,
}

/// What one workstation's upload loop did.
#[derive(Default)]
struct Uploaded {
    acknowledged: u64,
    ack_ms: Vec<f64>,
    retries: usize,
}

/// A clinician of the run, signed in on a workstation.
struct Reader {
    username: String,
    station: usize,
    totp: String,
    token: String,
}

/// Everything the run's tasks share.
struct Run {
    served: Served,
    /// The instances' addresses; requests go round-robin.
    urls: Vec<String>,
    client: reqwest::Client,
    stations: Vec<Workstation>,
    patients: Vec<Uuid>,
    password: String,
    /// Sign-ins the server asked to wait (429: the address's attempts in flight).
    sign_in_waits: AtomicUsize,
}

impl Run {
    fn url(&self, turn: usize) -> &str {
        &self.urls[turn % self.urls.len()]
    }
}

pub(crate) async fn run_load(plan: &LoadPlan) -> anyhow::Result<LoadOutcome> {
    let served = served_on(plan.postgres.as_deref()).await?;
    let second = match plan.postgres {
        Some(_) => Some(served.another_instance().await?),
        None => None,
    };
    let mut urls = vec![served.url.clone()];
    urls.extend(second.as_ref().map(|i| i.url.clone()));
    // One connection per workstation and reader, as each is its own machine.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            &served.ca_cert,
        )?)?)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let stations = enroll_workstations(&served, &client, plan.workstations).await?;
    let patients = clinic_patients(&served).await?;
    let password = format!("load-{}", Uuid::new_v4().simple());
    let run = Run {
        served,
        urls,
        client,
        stations,
        patients,
        password,
        sign_in_waits: AtomicUsize::new(0),
    };
    let readers = add_readers(&run, plan.readers).await?;
    let run = Arc::new(run);
    let readers: Vec<Arc<Reader>> = readers.into_iter().map(Arc::new).collect();
    let mut faults = Vec::new();

    // The baseline: the same readers reading with no upload load. Each workstation and
    // reader is a task of its own, as each is a machine of its own.
    let idle_until = Instant::now() + plan.idle_reads;
    let idle = all(readers.iter().enumerate().map(|(i, reader)| {
        let (run, reader) = (Arc::clone(&run), Arc::clone(reader));
        async move { read_charts(&run, &reader.token, &reader.username, i, idle_until).await }
    }))
    .await?;
    let mut idle_ms = Vec::new();
    for (ms, refused) in idle {
        idle_ms.extend(ms);
        faults.extend(refused);
    }

    // The load: every workstation uploads until the deadline while the readers sign in
    // again (password and second factor) and read.
    let started = Instant::now();
    let deadline = started + plan.duration;
    let uploads = all((0..run.stations.len()).map(|i| {
        let run = Arc::clone(&run);
        async move { upload_until(&run, i, deadline).await }
    }));
    let reading = all(readers.iter().enumerate().map(|(i, reader)| {
        let (run, reader) = (Arc::clone(&run), Arc::clone(reader));
        async move {
            let sign_in = reader.sign_in(&run);
            let token = sign_in.again(&reader.totp, &run.sign_in_waits).await?;
            read_charts(&run, &token, &reader.username, i, deadline).await
        }
    }));
    let (uploaded, read) = tokio::join!(uploads, reading);
    let elapsed = started.elapsed().as_secs_f64();
    let mut read_ms = Vec::new();
    for (ms, refused) in read? {
        read_ms.extend(ms);
        faults.extend(refused);
    }
    let uploaded = uploaded?;
    faults.extend(stored_chains(&run, &uploaded).await?);
    let audited_reads = audited_chart_reads(&run).await?;
    let answered = idle_ms.len() + read_ms.len();
    if audited_reads != answered as u64 {
        faults.push(format!(
            "{answered} chart reads answered, {audited_reads} recorded as views by the server"
        ));
    }
    let events_acknowledged: u64 = uploaded.iter().map(|u| u.acknowledged).sum();
    let mut ack_ms: Vec<f64> = uploaded.iter().flat_map(|u| u.ack_ms.clone()).collect();
    drop(second);
    Ok(LoadOutcome {
        events_acknowledged,
        ingest_eps: events_acknowledged as f64 / elapsed,
        ack_p99_ms: p99(&mut ack_ms),
        uploads: ack_ms.len(),
        upload_retries: uploaded.iter().map(|u| u.retries).sum(),
        idle_read_p99_ms: p99(&mut idle_ms),
        read_p99_ms: p99(&mut read_ms),
        idle_reads: idle_ms.len(),
        reads: read_ms.len(),
        audited_reads,
        sign_in_waits: run.sign_in_waits.load(Ordering::Relaxed),
        faults,
    })
}

/// Runs each future as a task of its own and waits for all: their results, or the first
/// error.
async fn all<T: Send + 'static>(
    tasks: impl Iterator<Item = impl Future<Output = anyhow::Result<T>> + Send + 'static>,
) -> anyhow::Result<Vec<T>> {
    let handles: Vec<_> = tasks.map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await??);
    }
    Ok(results)
}

fn p99(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() * 99 / 100).min(values.len() - 1)]
}

/// Enrolls `n` workstations through the API, each with a key of its own and the clinic's
/// clinician signed in on it (ingest checks each event's actor against the device's
/// sign-ins), a few at a time.
async fn enroll_workstations(
    s: &Served,
    client: &reqwest::Client,
    n: usize,
) -> anyhow::Result<Vec<Workstation>> {
    let mut stations = vec![Workstation {
        key: s.key.clone(),
        id: s.device_id,
    }];
    while stations.len() < n {
        let wave = (n - stations.len()).min(16);
        let enrolled = futures_util::future::join_all((0..wave).map(|_| async {
            let code =
                seed::issue_enrollment_code(&s.state.store, &SystemClock, s.clinic_id, 15, None)
                    .await?;
            let (key, id) = enroll(client, &s.url, &code).await?;
            signed_in_on(&s.state, s.clinic_id, id, s.clinician).await?;
            anyhow::Ok(Workstation { key, id })
        }))
        .await;
        for station in enrolled {
            stations.push(station?);
        }
    }
    Ok(stations)
}

async fn clinic_patients(s: &Served) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1")
        .bind(s.clinic_id.to_string())
        .fetch_all(&s.db)
        .await?;
    let ids = ids
        .iter()
        .map(|id| Uuid::parse_str(id))
        .collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!ids.is_empty(), "the clinic has no patients to read");
    Ok(ids)
}

/// Adds `n` clinicians (one password for all, hashed once), each with every patient on
/// their care team, and signs each in for the first time on a workstation of its own
/// (setting up their TOTP).
async fn add_readers(run: &Run, n: usize) -> anyhow::Result<Vec<Reader>> {
    let s = &run.served;
    let hash = passwords::hash(&run.password)?;
    let scope = ClinicScope::of_console(&Console::operator(), s.clinic_id);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("load-clinician-{i:03}");
        let user = s
            .state
            .store
            .upsert_user(
                s.clinic_id,
                &username,
                "Load clinician",
                Role::Clinician,
                &hash,
            )
            .await?;
        for patient in &run.patients {
            care_team::assign(&s.state.store, &scope, user, *patient).await?;
        }
        readers.push(Reader {
            username,
            station: i % run.stations.len(),
            totp: String::new(),
            token: String::new(),
        });
    }
    let signed_in = futures_util::future::join_all(
        readers
            .iter()
            .map(|r| async move { r.sign_in(run).first(&run.sign_in_waits).await }),
    )
    .await;
    for (reader, signed_in) in readers.iter_mut().zip(signed_in) {
        (reader.totp, reader.token) = signed_in?;
    }
    Ok(readers)
}

impl Reader {
    /// This reader's sign-in on their workstation: the challenge from one instance, the
    /// rest from the next.
    fn sign_in<'a>(&'a self, run: &'a Run) -> SignIn<'a> {
        let station = &run.stations[self.station];
        SignIn {
            client: &run.client,
            urls: (run.url(self.station), run.url(self.station + 1)),
            key: &station.key,
            device: station.id,
            username: &self.username,
            password: &run.password,
        }
    }
}

/// Reads charts until `until` (at least one), a pause between reads: each read's time, and a fault for
/// each read that was not answered with the chart.
async fn read_charts(
    run: &Run,
    token: &str,
    username: &str,
    offset: usize,
    until: Instant,
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let (mut times, mut faults) = (Vec::new(), Vec::new());
    let mut turn = offset;
    // At least one read, however late the sign-in before it ended.
    loop {
        let patient = run.patients[turn % run.patients.len()];
        let started = Instant::now();
        let response = run
            .client
            .get(format!("{}/v1/patients/{patient}", run.url(turn)))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if status != reqwest::StatusCode::OK {
            faults.push(format!("{username} read a chart: {status}"));
        }
        turn += 1;
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(READ_PAUSE).await;
    }
    Ok((times, faults))
}

/// One workstation's uploads until `deadline` (at least one): each batch is signed and sent, and sent
/// again (the same events) until a receipt acknowledges it.
async fn upload_until(run: &Run, index: usize, deadline: Instant) -> anyhow::Result<Uploaded> {
    let station = &run.stations[index];
    let s = &run.served;
    let mut done = Uploaded::default();
    let mut prev = Hash32::GENESIS;
    let mut turn = index;
    // At least one batch, however late this workstation starts.
    loop {
        let first = done.acknowledged + 1;
        let mut events = Vec::with_capacity(BATCH as usize);
        for seq in first..first + BATCH {
            let patient = run.patients[seq as usize % run.patients.len()];
            let mut event = crate::audit::event(s, seq, prev, patient, SystemClock.now_ms());
            event.device_id = station.id;
            prev = event.hash();
            events.push(SignedAuditEvent {
                signature: to_hex(&station.key.sign(&event.canonical_bytes()).to_bytes()),
                event,
            });
        }
        let body = serde_json::to_vec(&json!({ "device_id": station.id, "events": events }))?;
        let last = first + BATCH - 1;
        loop {
            turn += 1;
            let started = Instant::now();
            match send_batch(run, turn, &body).await {
                Ok(receipt) => {
                    anyhow::ensure!(
                        receipt.highest_contiguous_seq == last,
                        "workstation {index}: a receipt acknowledged {} after sending up to {last}",
                        receipt.highest_contiguous_seq
                    );
                    done.ack_ms.push(started.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                Err(e) => {
                    done.retries += 1;
                    anyhow::ensure!(
                        done.retries <= 20,
                        "workstation {index}: uploads keep failing: {e:#}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        done.acknowledged = last;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(done)
}

async fn send_batch(run: &Run, turn: usize, body: &[u8]) -> anyhow::Result<AuditReceipt> {
    Ok(run
        .client
        .post(format!("{}/v1/audit/batches", run.url(turn)))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The server's chart-view events in the run's clinic (its own chain is a `devices` row of
/// kind `server`): under load as without it, no chart is shown without one.
async fn audited_chart_reads(run: &Run) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events e JOIN devices d ON d.id = e.device_id
         WHERE e.clinic_id = $1 AND d.kind = 'server' AND e.action = 'view'
           AND e.patient_id IS NOT NULL",
    )
    .bind(run.served.clinic_id.to_string())
    .fetch_one(&run.served.db)
    .await?;
    Ok(u64::try_from(count)?)
}

/// Reads every workstation's stored chain directly: exactly the events its receipts
/// acknowledged, once each (rows = distinct sequences = distinct ids = highest sequence =
/// acknowledged), and no workstation's event of a workstation the run did not enroll (the server's own
/// chain, of the chart reads, is a `devices` row of kind `server`).
async fn stored_chains(run: &Run, uploaded: &[Uploaded]) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT e.device_id, count(*), count(DISTINCT e.device_seq), count(DISTINCT e.id),
                max(e.device_seq)
         FROM audit_events e JOIN devices d ON d.id = e.device_id
         WHERE e.clinic_id = $1 AND d.kind = 'workstation'
         GROUP BY e.device_id",
    )
    .bind(run.served.clinic_id.to_string())
    .fetch_all(&run.served.db)
    .await?;
    let mut faults = Vec::new();
    for (i, (station, done)) in run.stations.iter().zip(uploaded).enumerate() {
        let id = station.id.to_string();
        let acknowledged = i64::try_from(done.acknowledged)?;
        let stored = rows
            .iter()
            .find(|r| r.0 == id)
            .map_or((0, 0, 0, 0), |r| (r.1, r.2, r.3, r.4));
        if stored != (acknowledged, acknowledged, acknowledged, acknowledged) {
            faults.push(format!(
                "workstation {i}: acknowledged {acknowledged}, stored (rows, sequences, ids, highest) {stored:?}"
            ));
        }
    }
    let known = rows
        .iter()
        .filter(|r| !run.stations.iter().any(|s| s.id.to_string() == r.0))
        .count();
    if known > 0 {
        faults.push(format!("{known} workstations not of this run hold events"));
    }
    Ok(faults)
}

/// The workstation counts of the full benchmark: the figures at the first are the
/// baseline of the growth.
const FULL_COUNTS: &[usize] = &[50, 200, 500];

pub fn load(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let (counts, seconds, idle_seconds): (&[usize], u64, u64) = match scale {
        Scale::Quick => (&[50, 100], 10, 5),
        Scale::Full => (FULL_COUNTS, 60, 15),
    };
    let rt = runtime()?;
    let postgres = std::env::var("CLINICDESK_BENCH_POSTGRES_URL").ok();
    let mut metrics = Vec::new();
    for on_postgres in [false, true] {
        if on_postgres && postgres.is_none() {
            continue;
        }
        let mut outcomes = Vec::new();
        for &workstations in counts {
            let database = match (&postgres, on_postgres) {
                (Some(admin), true) => Some(rt.block_on(fresh_postgres_database(admin))?),
                _ => None,
            };
            let plan = LoadPlan {
                workstations,
                readers: 50,
                idle_reads: Duration::from_secs(idle_seconds),
                duration: Duration::from_secs(seconds),
                postgres: database,
            };
            let outcome = rt.block_on(run_load(&plan))?;
            println!(
                "  {workstations} workstations{}: {} events, {:.0} events/s, {} uploads ({} sent again), ack p99 {:.1} ms, reads p99 {:.1} ms ({} reads) against {:.1} ms idle ({} reads), {} views audited, {} sign-ins asked to wait, faults: {}",
                if on_postgres {
                    " (PostgreSQL, two instances)"
                } else {
                    ""
                },
                outcome.events_acknowledged,
                outcome.ingest_eps,
                outcome.uploads,
                outcome.upload_retries,
                outcome.ack_p99_ms,
                outcome.read_p99_ms,
                outcome.reads,
                outcome.idle_read_p99_ms,
                outcome.idle_reads,
                outcome.audited_reads,
                outcome.sign_in_waits,
                outcome.faults.len(),
            );
            anyhow::ensure!(
                outcome.faults.is_empty(),
                "the load run lost, duplicated or refused: {:?}",
                &outcome.faults[..outcome.faults.len().min(5)]
            );
            outcomes.push((workstations, outcome));
        }
        metrics.extend(figures(&outcomes, on_postgres));
    }
    Ok(metrics)
}

/// The report's figures, at each count: the upload figures against the first count's (the
/// growth), the reads against the same readers' with no upload load. The largest count's
/// figures carry the issue's names (`load_ingest_eps`, ...), the others their count.
fn figures(outcomes: &[(usize, LoadOutcome)], postgres: bool) -> Vec<Metric> {
    let Some((base, first)) = outcomes.first() else {
        return Vec::new();
    };
    let largest = outcomes.iter().map(|(c, _)| *c).max().unwrap_or(0);
    let db = if postgres { "_postgres" } else { "" };
    let name = |figure: &str, count: usize| -> &'static str {
        let at = if count == largest {
            String::new()
        } else {
            format!("_{count}ws")
        };
        leak(format!("{figure}{at}{db}"))
    };
    let growth = leak(format!(
        "reported: the ratio is the growth from {base} workstations"
    ));
    let mut metrics = Vec::new();
    for (count, o) in outcomes {
        let upload_figures = [
            (
                "load_ingest_eps",
                o.ingest_eps,
                first.ingest_eps,
                "events/s",
            ),
            ("load_ack_p99_ms", o.ack_p99_ms, first.ack_p99_ms, "ms"),
        ];
        for (figure, value, at_base, unit) in upload_figures {
            let baseline = leak(format!("{figure}_{base}ws{db}"));
            let metric = Metric::new(
                name(figure, *count),
                value,
                unit,
                baseline,
                at_base,
                growth,
                true,
            );
            metrics.push(metric);
        }
        metrics.push(Metric::new(
            name("load_read_p99_ms", *count),
            o.read_p99_ms,
            "ms",
            "read_p99_ms_with_no_upload_load",
            o.idle_read_p99_ms,
            "reported",
            true,
        ));
    }
    metrics
}

/// A metric's name made at run time (the report keeps `&'static str` names); a few per run.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smoke version of the load benchmark, bounded in time (seconds of load): fifty
    /// workstations upload at once while clinicians sign in and read charts, on the
    /// embedded store and (given the test run's PostgreSQL cluster) on two instances on
    /// one PostgreSQL database. It asserts what must hold at any speed: every event a
    /// receipt acknowledged is stored exactly once, every workstation got its batches
    /// acknowledged, and every chart read was answered.
    #[test]
    fn fifty_workstations_uploading_at_once_lose_and_duplicate_nothing() {
        let rt = runtime().unwrap();
        let admin = std::env::var("CLINICDESK_CROSS_POSTGRES_URL").ok();
        if admin.is_none() && std::env::var_os("CI").is_some() {
            panic!("CI runs this on PostgreSQL too: CLINICDESK_CROSS_POSTGRES_URL is not set");
        }
        let mut databases = vec![None];
        if let Some(admin) = &admin {
            databases.push(Some(rt.block_on(fresh_postgres_database(admin)).unwrap()));
        } else {
            eprintln!("SKIPPED the PostgreSQL leg: CLINICDESK_CROSS_POSTGRES_URL is not set");
        }
        for postgres in databases {
            let plan = LoadPlan {
                workstations: 50,
                readers: 10,
                idle_reads: Duration::from_secs(1),
                duration: Duration::from_secs(3),
                postgres: postgres.clone(),
            };
            let outcome = rt.block_on(run_load(&plan)).unwrap();
            let leg = if postgres.is_some() {
                "PostgreSQL, two instances"
            } else {
                "SQLite"
            };
            // Counts and times only (no PHI: the clinic is synthetic): what the run did.
            eprintln!("{leg}: {outcome:?}");
            assert!(outcome.faults.is_empty(), "{leg}: {:?}", outcome.faults);
            assert!(
                outcome.events_acknowledged >= 50 * BATCH,
                "{leg}: every workstation's first batch is acknowledged: {outcome:?}"
            );
            // Every chart read answered was recorded by the server (also among the faults,
            // named here so that a miss says which leg).
            assert_eq!(
                outcome.audited_reads,
                (outcome.idle_reads + outcome.reads) as u64,
                "{leg}: {outcome:?}"
            );
            assert!(
                outcome.idle_reads >= 10 && outcome.reads >= 10,
                "{leg}: {outcome:?}"
            );
            if let (Some(admin), Some(database)) = (&admin, postgres) {
                rt.block_on(crate::audit::drop_postgres_database(admin, &database))
                    .unwrap();
            }
        }
    }
}
