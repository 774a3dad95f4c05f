//! `clinicdesk-server`: serve the API over TLS, seed the synthetic demo clinic, issue
//! enrollment codes, revoke devices. All state of the embedded default lives under `--data-dir`;
//! with `--database-url` (or `DATABASE_URL`) a `postgres://` database holds the data and the
//! data directory keeps only keys and TLS files.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::export::{ClinicKeys, ExportFilters, PatientAccessReport, ReportOrder};
use clinicdesk_protocol::merkle::{SignedCheckpoint, verify_inclusion};
use clinicdesk_server::admin::{operator, seed, seed_scale};
use clinicdesk_server::audit;
use clinicdesk_server::audit::key::AuditKey;
use clinicdesk_server::audit::query::AuditQuery;
use clinicdesk_server::audit::verify::{VerifyError, verify_all};
use clinicdesk_server::http::tls;
use clinicdesk_server::secrets::kek::KeyFileProvider;
use clinicdesk_server::store::{DatabaseUrls, Store, StoreLocation};
use clinicdesk_server::time::SystemClock;
use clinicdesk_server::{AppState, build_router};

#[derive(Parser)]
#[command(name = "clinicdesk-server", version, about = "The ClinicDesk server")]
struct Cli {
    /// A postgres:// URL: keep the data in PostgreSQL (several instances may share it)
    /// instead of the data directory's embedded SQLite file.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The schema owner's postgres:// URL, for migrations, when `--database-url` logs in as a
    /// role that is only a member of `clinicdesk_app` (recommended: see the README).
    #[arg(
        long,
        global = true,
        env = "DATABASE_MIGRATION_URL",
        hide_env_values = true
    )]
    migration_database_url: Option<String>,
    /// Where the key-encryption keys are kept (default: `DATA_DIR.keys`, beside the data
    /// directory and not in it; see the README). Every instance of a deployment, and every
    /// command run on its data, must be given the same keys.
    #[arg(long, global = true, env = "CLINICDESK_KEY_DIR")]
    key_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--key-dir`, once parsed.
static KEY_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// The key-encryption keys' directory: `--key-dir`, or the default beside `data_dir`.
fn key_dir_for(data_dir: &std::path::Path) -> PathBuf {
    KEY_DIR
        .get()
        .cloned()
        .flatten()
        .unwrap_or_else(|| KeyFileProvider::default_dir(data_dir))
}

/// The key-encryption keys for `data_dir`: `--key-dir`, or the default beside it.
fn key_provider_for(data_dir: &std::path::Path) -> Arc<KeyFileProvider> {
    Arc::new(KeyFileProvider::new(key_dir_for(data_dir)))
}

/// Where `data_dir`'s data lives under `db`: PostgreSQL, or the embedded store, encrypted
/// under its key (unwrapped with the key-encryption keys).
fn location_of(db: &DatabaseUrls, data_dir: &std::path::Path) -> anyhow::Result<StoreLocation> {
    if let Some(postgres) = db.postgres()? {
        return Ok(postgres);
    }
    clinicdesk_server::store::private_files::private_dir(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    clinicdesk_server::state::embedded_location(data_dir, key_provider_for(data_dir).as_ref())
        .with_context(|| format!("opening the database key of {}", data_dir.display()))
}

/// Every store this process opened: closed, from the async context, before it exits (a
/// store dropped inside a runtime can only wait a bounded time for its connections; see
/// `store::at_rest::close_and_wait`).
static OPENED: std::sync::Mutex<Vec<Store>> = std::sync::Mutex::new(Vec::new());

fn opened(store: &Store) {
    OPENED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(store.clone());
}

async fn close_opened() {
    let stores = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|e| e.into_inner()));
    for store in stores {
        store.close().await;
    }
}

/// The exit status a command chose without failing (1: `audit verify` found a problem,
/// which it has said), taken once `run` has returned and the stores are closed:
/// `process::exit` runs no destructors.
static EXIT_STATUS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

async fn open_state(db: &DatabaseUrls, data_dir: &std::path::Path) -> anyhow::Result<AppState> {
    let location = location_of(db, data_dir)?;
    let state = AppState::open_at(
        &location,
        data_dir,
        Arc::new(SystemClock),
        key_provider_for(data_dir),
    )
    .await
    .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    opened(&state.store);
    Ok(state)
}

#[derive(Subcommand)]
enum OperatorTokenCommand {
    /// Create a token and print it once (the server keeps only its hash).
    Create {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        /// Who or what uses it, e.g. "onboarding service".
        #[arg(long)]
        name: String,
    },
    /// Revoke a token by its id.
    Revoke {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over TLS (1.2 and 1.3 only).
    Serve {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// The https origin WebAuthn credentials are bound to; its host name is the
        /// relying party id (any port is accepted).
        #[arg(
            long,
            env = "CLINICDESK_WEBAUTHN_ORIGIN",
            default_value = "https://localhost"
        )]
        webauthn_origin: String,
    },
    /// Write the synthetic demo clinic and print its logins and a one-time enrollment code.
    Seed {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        /// Print the report as JSON (for scripts and tests).
        #[arg(long)]
        json: bool,
        /// Minutes until the enrollment code expires.
        #[arg(long, default_value_t = 15)]
        code_ttl_mins: i64,
        /// Also sign and ingest this many synthetic audit events from synthetic
        /// workstations (for demos, tests and benchmarks), with progress on stderr.
        #[arg(long, default_value_t = 0)]
        audit_events: u64,
        /// Instead of the demo clinic, make this many synthetic clinics (each with its
        /// staff, `--patients` patients, their coverage and a week of appointments), the
        /// same for the same `--seed` on the same day; clinics already made are left.
        #[arg(long, conflicts_with = "audit_events")]
        clinics: Option<u32>,
        /// Patients in each clinic of `--clinics`.
        #[arg(long, default_value_t = 500, requires = "clinics")]
        patients: u32,
        /// The seed of `--clinics`.
        #[arg(long, default_value_t = 1, requires = "clinics")]
        seed: u64,
    },
    /// Issue a one-time device enrollment code for a clinic.
    EnrollmentCode {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: uuid::Uuid,
        #[arg(long, default_value_t = 15)]
        ttl_mins: i64,
    },
    /// Import a clinic's records from its old system: the Patient, Practitioner, Coverage and
    /// Appointment resources of a FHIR R4 Bulk Data export (NDJSON files in a directory).
    /// Each patient, coverage and appointment becomes a record with its first version and
    /// audit event; each practitioner an entry of the clinic's directory, whose
    /// appointments come in once an admin links the entry to the clinician's account.
    /// Running it again changes nothing (and imports what is now linked). Prints what was
    /// imported and what was skipped and why (by resource id, never a value).
    Import {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: uuid::Uuid,
        /// The directory holding `Patient.ndjson` (or `Patient.000.ndjson`, ...) and the
        /// other types' files.
        #[arg(long)]
        fhir_ndjson: PathBuf,
        /// Print the report as JSON (for scripts and tests).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its sessions end, and the app wipes itself on its next contact.
    RevokeDevice {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        device: uuid::Uuid,
    },
    /// Create a clinic with its first admin (who signs in once with the printed one-time
    /// password to choose their own and set up a second factor) and an enrollment code for
    /// its first workstation. Retrying with the same --idempotency-key answers for the same
    /// clinic, with fresh codes.
    ProvisionClinic {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_username: String,
        #[arg(long)]
        admin_display_name: String,
        /// The clinic's IANA time zone, e.g. America/Chicago (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// 8 to 64 letters, digits, '-' or '_' (default: a new random key).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Print the answer as JSON (for scripts and tests).
        #[arg(long)]
        json: bool,
    },
    /// Operator credentials for POST /v1/clinics (self-serve onboarding).
    OperatorToken {
        #[command(subcommand)]
        command: OperatorTokenCommand,
    },
    /// The audit trail: verify it, search it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The keys of sensitive fields: rotate the key-encryption key, re-encrypt, retire.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Back up the embedded store and the data directory's key files into one file, while the
    /// server serves: a consistent snapshot, encrypted under a backup key wrapped by the
    /// key-encryption keys (keep those apart from the backups: see the README). On
    /// PostgreSQL, back up the database with pg_dump and the data directory's files with it.
    Backup {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        /// The backup file to write (outside the data directory); it appears only once whole.
        #[arg(long)]
        to: PathBuf,
        /// Print the report as JSON (for scripts and tests).
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup as the data directory, with the server stopped, then check the audit
    /// trail (`audit verify`). A directory that already holds a database is replaced only
    /// with --force, and kept beside it as DIR.before-restore-<time>.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new key-encryption key version and rewrap every clinic's keys under it, while
    /// the server keeps serving. Killed half-way, run it again: it finishes that rotation.
    Rotate {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        /// Also move every encrypted field to a new data key per clinic (in batches), remake
        /// every blind index under a new index key, and destroy the old data and index keys.
        #[arg(long)]
        reencrypt: bool,
        /// Values re-encrypted (or patients reindexed) per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
        /// Print the report as JSON (for scripts and tests).
        #[arg(long)]
        json: bool,
    },
    /// The key-encryption key versions on file and how many clinic keys each wraps.
    Status {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Destroy an old key-encryption key version once no clinic key is wrapped under it.
    Retire {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        version: u32,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every event hash, signature, device chain, Merkle tree and checkpoint;
    /// exit non-zero naming the first bad event.
    Verify {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        /// Checkpoints kept outside this server (JSON, one per line, as the API returns
        /// them): each must match the log too, which catches a truncated tail.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Search a clinic's audit events, newest first; one JSON object per line.
    Search {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        filters: Filters,
        /// Most events to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Write a clinic's audit events matching the filters to standard output, newest first:
    /// `jsonl` is the verifiable bundle (checkpoint, keys, a proof per event, a signed end),
    /// `csv` a spreadsheet, `fhir` FHIR R4 AuditEvent resources in a Bundle.
    Export {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        format: audit::export::Format,
        #[command(flatten)]
        filters: Filters,
    },
    /// Check an exported `jsonl` bundle offline: signatures, proofs, chain links and the
    /// signed end. Exit non-zero naming the first bad line.
    VerifyExport {
        file: PathBuf,
        /// The clinic's public keys as `audit keys` printed them, obtained independently;
        /// without them the bundle's own keys are used (intact, but not proof of origin).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Write the clinic's access review as CSV to standard output: every user whose role
    /// reaches patient data, with role, status, second factors, workstations, last sign-in.
    AccessReview {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: Option<uuid::Uuid>,
        /// Every user, also those whose role reaches no patient data (admins).
        #[arg(long)]
        all_users: bool,
    },
    /// Print the access policies a clinic runs under (idle lock, offline limit, session
    /// limits, second factor, break-glass review) as JSON, for an auditor.
    Policies {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: Option<uuid::Uuid>,
    },
    /// Print a clinic's public keys (server audit key and every chain's key) as JSON, for
    /// `verify-export --keys`.
    Keys {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: Option<uuid::Uuid>,
    },
    /// Replace the server's audit key with a new one (run with the server stopped): the
    /// old key signs its successor, and the record stays in the data directory, so what
    /// the old key signed still verifies and workstations that pinned it follow the record
    /// to the new key. Print the record as JSON.
    RotateKey {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Who accessed one patient's record in a period: who, role, when, what, why, from
    /// where, each with its inclusion proof against a signed checkpoint.
    Report {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: Option<uuid::Uuid>,
        #[arg(long)]
        patient: uuid::Uuid,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long)]
        to: Option<String>,
        /// Print the report as JSON (with every proof) instead of a table.
        #[arg(long)]
        json: bool,
        /// Newest first by when the server received each event, instead of by the time
        /// the event says (a workstation's clock, or someone holding its key, may date an
        /// event into the past).
        #[arg(long)]
        by_receipt: bool,
    },
}

/// Which events: every filter optional.
#[derive(clap::Args)]
struct Filters {
    /// Needed when the server holds more than one clinic.
    #[arg(long)]
    clinic: Option<uuid::Uuid>,
    #[arg(long)]
    patient: Option<uuid::Uuid>,
    #[arg(long)]
    user: Option<uuid::Uuid>,
    #[arg(long)]
    device: Option<uuid::Uuid>,
    /// view, create, update, delete, export, print, login, logout, lock, unlock, ...
    #[arg(long)]
    action: Option<String>,
    /// RFC 3339 time, inclusive (e.g. 2026-11-17T15:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    to: Option<String>,
}

impl Filters {
    fn parse(self) -> anyhow::Result<ExportFilters> {
        Ok(ExportFilters {
            patient_id: self.patient,
            user_id: self.user,
            device_id: self.device,
            action: parse_action(self.action)?,
            from_ms: parse_opt_time(self.from.as_deref(), "--from")?,
            to_ms: parse_opt_time(self.to.as_deref(), "--to")?,
        })
    }
}

fn parse_action(action: Option<String>) -> anyhow::Result<Option<AuditAction>> {
    action
        .map(|a| {
            serde_json::from_value(serde_json::Value::String(a.clone()))
                .with_context(|| format!("unknown action {a:?}"))
        })
        .transpose()
}

fn parse_opt_time(t: Option<&str>, flag: &str) -> anyhow::Result<Option<i64>> {
    t.map(|t| parse_time(t, flag)).transpose()
}

async fn clinic_or_only(store: &Store, clinic: Option<uuid::Uuid>) -> anyhow::Result<uuid::Uuid> {
    match clinic {
        Some(c) => Ok(c),
        None => store
            .only_clinic()
            .await?
            .context("this server holds several clinics: name one with --clinic"),
    }
}

/// The store and audit key of an existing data directory, for the audit commands.
async fn open_existing_state(
    db: &DatabaseUrls,
    data_dir: &std::path::Path,
) -> anyhow::Result<AppState> {
    open_existing(db, data_dir).await?;
    if !data_dir.join(audit::key::KEY_FILE).exists() {
        anyhow::bail!(
            "no audit key {} under {}",
            audit::key::KEY_FILE,
            data_dir.display()
        );
    }
    open_state(db, data_dir).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let result = run().await;
    close_opened().await;
    match EXIT_STATUS.load(std::sync::atomic::Ordering::SeqCst) {
        0 => result,
        status => std::process::exit(status),
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    KEY_DIR.get_or_init(|| cli.key_dir.clone());
    let db = DatabaseUrls::new(cli.database_url, cli.migration_database_url);
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            webauthn_origin,
        } => serve(&db, data_dir, listen, &webauthn_origin).await,
        Command::Seed {
            data_dir,
            json,
            clinics: Some(clinics),
            patients,
            seed,
            ..
        } => {
            let state = open_state(&db, &data_dir).await?;
            let spec = seed_scale::ScaleSeed {
                clinics,
                patients_per_clinic: patients,
                seed,
            };
            let started = std::time::Instant::now();
            let mut progress = |done: u32, of: u32| {
                if done == of || done.is_multiple_of((of / 20).max(1)) {
                    eprintln!("clinics: {done} / {of}");
                }
            };
            let report = seed_scale::seed_clinics(
                &state.store,
                &clinicdesk_server::scope::Console::operator(),
                &SystemClock,
                spec,
                &mut progress,
            )
            .await
            .context("seeding synthetic clinics")?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{} clinics made ({} there already), {} patients, {} coverages, {} \
                     appointments in {:.1} s",
                    report.clinics_created,
                    report.clinics_existing,
                    report.patients,
                    report.coverages,
                    report.appointments,
                    started.elapsed().as_secs_f64()
                )?;
                if let Some(first) = report.first_clinic_id {
                    writeln!(out, "First clinic: {first}")?;
                }
                writeln!(
                    out,
                    "Users in each clinic: {}; password (synthetic, every user) {}",
                    report.usernames.join(", "),
                    report.password
                )?;
            }
            Ok(())
        }
        Command::Seed {
            data_dir,
            json,
            code_ttl_mins,
            audit_events,
            clinics: None,
            ..
        } => {
            clinicdesk_server::store::private_files::private_dir(&data_dir)
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let state = open_state(&db, &data_dir).await?;
            let report = seed::seed_demo(&state.store, &SystemClock, code_ttl_mins)
                .await
                .context("seeding the demo clinic")?;
            if audit_events > 0 {
                let started = std::time::Instant::now();
                let mut last_shown = 0u64;
                audit::synthetic::seed_audit_events(
                    &state,
                    report.clinic_id,
                    audit_events,
                    |done| {
                        // About every 5 %, and at the end.
                        if done == audit_events || done - last_shown >= (audit_events / 20).max(1) {
                            last_shown = done;
                            eprintln!("audit events: {done} / {audit_events}");
                        }
                    },
                )
                .await
                .context("seeding synthetic audit events")?;
                eprintln!(
                    "audit events: {audit_events} signed, verified and logged in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "Demo clinic: {} ({})",
                    report.clinic_name, report.clinic_id
                )?;
                writeln!(
                    out,
                    "Device enrollment code: {} (one use, expires in {} minutes)",
                    report.enrollment_code, report.enrollment_code_expires_in_mins
                )?;
                writeln!(out, "Demo logins (synthetic, regenerated on every seed):")?;
                for u in &report.users {
                    writeln!(
                        out,
                        "  {:<10} {:<12} password {}",
                        u.username,
                        u.role.as_str(),
                        u.password
                    )?;
                }
            }
            Ok(())
        }
        Command::EnrollmentCode {
            data_dir,
            clinic,
            ttl_mins,
        } => {
            let store = open_store(&db, &data_dir).await?;
            let code = seed::issue_enrollment_code(&store, &SystemClock, clinic, ttl_mins, None)
                .await
                .context("issuing an enrollment code (is the clinic id right?)")?;
            writeln!(std::io::stdout(), "{code}")?;
            Ok(())
        }
        Command::Import {
            data_dir,
            clinic,
            fhir_ndjson,
            json,
        } => {
            let state = open_state(&db, &data_dir).await?;
            let console = clinicdesk_server::scope::Console::operator();
            let scope = clinicdesk_server::scope::ClinicScope::of_console(&console, clinic);
            if state.store.clinic_name(clinic).await?.is_none() {
                anyhow::bail!("no clinic {clinic} on this server");
            }
            let mut progress = |done: u64, total: u64| {
                if done == total || done.is_multiple_of(50) {
                    eprint!("\rimporting: {done} of {total} records");
                    if done == total {
                        eprintln!();
                    }
                }
            };
            let report = clinicdesk_server::admin::import::import_ndjson(
                &state,
                &console,
                &scope,
                &fhir_ndjson,
                &mut progress,
            )
            .await
            .with_context(|| format!("importing from {}", fhir_ndjson.display()))?;
            let mut out = std::io::stdout();
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                let counts = ["Patient", "Practitioner", "Coverage", "Appointment"]
                    .map(|kind| report.of(kind));
                let [patients, practitioners, coverages, appointments] = counts.map(|c| c.0);
                writeln!(
                    out,
                    "imported {patients} patients, {practitioners} practitioners (into the \
                     directory), {coverages} coverages, {appointments} appointments; {} already \
                     imported, left unchanged; {} skipped",
                    report.unchanged,
                    report.skipped.len()
                )?;
                if report
                    .skipped
                    .iter()
                    .any(|s| s.reason.ends_with("not linked to an account"))
                {
                    writeln!(
                        out,
                        "  link the directory's practitioners to their accounts \
                         (PUT /v1/practitioner-directory/{{id}}), then import again for their \
                         appointments"
                    )?;
                }
                for s in &report.skipped {
                    writeln!(out, "  skipped {}: {}", s.resource, s.reason)?;
                }
                for (kind, count) in &report.not_imported {
                    writeln!(out, "  not imported (not supported yet): {count} {kind}")?;
                }
            }
            Ok(())
        }
        Command::RevokeDevice { data_dir, device } => {
            let state = open_state(&db, &data_dir).await?;
            if !operator::revoke_device(&state, device)
                .await
                .context("revoking the device")?
            {
                anyhow::bail!("no device {device} on this server");
            }
            writeln!(std::io::stdout(), "revoked {device}")?;
            Ok(())
        }
        Command::ProvisionClinic {
            data_dir,
            name,
            admin_username,
            admin_display_name,
            time_zone,
            idempotency_key,
            json,
        } => {
            clinicdesk_server::store::private_files::private_dir(&data_dir)
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let state = open_state(&db, &data_dir).await?;
            let new = clinicdesk_protocol::wire::NewClinic {
                idempotency_key: idempotency_key
                    .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
                clinic_name: name,
                admin_username,
                admin_display_name,
                time_zone,
            };
            let console = clinicdesk_protocol::audit::RequestSeen {
                client_ip: "console".into(),
                user_agent: "clinicdesk-server provision-clinic".into(),
                session_device_id: None,
            };
            let (done, created) =
                clinicdesk_server::admin::provisioning::provision(&state, &new, console)
                    .await
                    .map_err(|e| match e.field() {
                        Some(field) => {
                            anyhow::anyhow!("provisioning refused: {} ({field})", e.code().as_str())
                        }
                        None => anyhow::anyhow!("provisioning failed: {}", e.code().as_str()),
                    })?;
            let mut out = std::io::stdout();
            if json {
                serde_json::to_writer_pretty(&mut out, &done)?;
                writeln!(out)?;
            } else {
                let verb = if created {
                    "Created"
                } else {
                    "Already provisioned (codes replaced)"
                };
                writeln!(out, "{verb}: {} ({})", done.clinic_name, done.clinic_id)?;
                writeln!(
                    out,
                    "First admin: {} — one-time password {} (until {})",
                    done.admin_username,
                    done.first_password.expose(),
                    done.first_password_expires_at
                )?;
                writeln!(
                    out,
                    "Enrollment code for the first workstation: {} (until {})",
                    done.enrollment_code.expose(),
                    done.enrollment_code_expires_at
                )?;
                writeln!(out, "Idempotency key: {}", new.idempotency_key)?;
            }
            Ok(())
        }
        Command::OperatorToken { command } => match command {
            OperatorTokenCommand::Create { data_dir, name } => {
                let store = open_store(&db, &data_dir).await?;
                let (id, token) = operator::create_operator_token(&store, &SystemClock, &name)
                    .await
                    .context("creating the operator token")?;
                writeln!(
                    std::io::stdout(),
                    "id {id}\ntoken {token}\n(shown once; the server keeps only its hash)"
                )?;
                Ok(())
            }
            OperatorTokenCommand::Revoke { data_dir, id } => {
                let store = open_store(&db, &data_dir).await?;
                if !operator::revoke_operator_token(&store, &SystemClock, id)
                    .await
                    .context("revoking the operator token")?
                {
                    anyhow::bail!("no live operator token {id}");
                }
                writeln!(std::io::stdout(), "revoked {id}")?;
                Ok(())
            }
        },
        Command::Audit { command } => audit_command(&db, command).await,
        Command::Backup { data_dir, to, json } => backup_command(&db, &data_dir, &to, json).await,
        Command::Restore {
            from,
            data_dir,
            force,
        } => restore_command(&db, &from, &data_dir, force).await,
        Command::Keys { command } => keys_command(&db, command).await,
    }
}

/// For tests of a rotation killed half-way: the process aborts (as a kill would: nothing
/// flushed, the open transaction lost) just before batch N commits.
const FAULT_ABORT_AT_BATCH: &str = "CLINICDESK_FAULT_ABORT_AT_BATCH";

async fn keys_command(db: &DatabaseUrls, command: KeysCommand) -> anyhow::Result<()> {
    use clinicdesk_server::admin::keys::{self, Step};
    let console = clinicdesk_server::scope::Console::operator();
    let mut out = std::io::stdout();
    match command {
        KeysCommand::Rotate {
            data_dir,
            reencrypt,
            batch_size,
            json,
        } => {
            let state = open_existing_state(db, &data_dir).await?;
            let abort_at: Option<u64> = std::env::var(FAULT_ABORT_AT_BATCH)
                .ok()
                .and_then(|v| v.parse().ok());
            let mut progress = |step: Step| match step {
                Step::Clinic { index, of } => eprintln!("rotating keys: clinic {index} of {of}"),
                Step::BatchReady { batch } => {
                    if abort_at == Some(batch) {
                        std::process::abort();
                    }
                }
                Step::Moved { moved, total } => {
                    eprint!("\r  re-encrypted {moved} of {total} values");
                    if moved == total {
                        eprintln!();
                    }
                }
                Step::Reindexed { done, total } => {
                    eprint!("\r  remade the SSN search indexes of {done} of {total} patients");
                    if done == total {
                        eprintln!();
                    }
                }
            };
            let report = keys::rotate(&state, &console, reencrypt, batch_size, &mut progress)
                .await
                .context("rotating keys")?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                writeln!(
                    out,
                    "{} clinic keys of {} clinics{} rewrapped under key-encryption key v{}{}; \
                     {} values re-encrypted, {} old data keys destroyed; \
                     {} patients' SSN indexes remade, {} old index keys destroyed",
                    report.keys_rewrapped,
                    report.clinics,
                    if report.store_key_rewrapped {
                        " and the database key"
                    } else {
                        ""
                    },
                    report.kek_version,
                    if report.resumed {
                        " (an interrupted rotation, finished)"
                    } else {
                        ""
                    },
                    report.values_reencrypted,
                    report.data_keys_destroyed,
                    report.indexes_remade,
                    report.index_keys_destroyed
                )?;
            }
        }
        KeysCommand::Status { data_dir, json } => {
            let state = open_existing_state(db, &data_dir).await?;
            let status = keys::status(&state, &console).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&status)?)?;
            } else {
                for (version, n) in &status.versions {
                    let current = if *version == status.current {
                        " (current)"
                    } else {
                        ""
                    };
                    let store = if status.store_key == Some(*version) {
                        " and the database key"
                    } else {
                        ""
                    };
                    writeln!(out, "v{version}{current}: wraps {n} clinic keys{store}")?;
                }
                if status.rotation_unfinished {
                    writeln!(out, "a rotation has not finished: run `keys rotate` again")?;
                }
            }
        }
        KeysCommand::Retire { data_dir, version } => {
            let state = open_existing_state(db, &data_dir).await?;
            keys::retire(&state, &console, version).await?;
            writeln!(out, "key-encryption key v{version} destroyed")?;
        }
    }
    Ok(())
}

async fn backup_command(
    db: &DatabaseUrls,
    data_dir: &std::path::Path,
    to: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    use clinicdesk_server::store::{EMBEDDED_FILE, StoreLocation};
    if db.postgres()?.is_some() {
        anyhow::bail!(
            "backup takes the embedded store; on PostgreSQL back up the database with pg_dump \
             and the data directory's files with it (see the README)"
        );
    }
    if !data_dir.join(EMBEDDED_FILE).exists() {
        anyhow::bail!("{} holds no embedded database", data_dir.display());
    }
    let (dir, parent) = (
        std::path::absolute(data_dir)?,
        std::path::absolute(to)?.parent().map(|p| p.to_owned()),
    );
    if parent.is_some_and(|p| p.starts_with(&dir)) {
        anyhow::bail!("write the backup outside the data directory");
    }
    let StoreLocation::Embedded(file) = location_of(db, data_dir)? else {
        anyhow::bail!("the data directory's store is not the embedded one");
    };
    let keys = key_provider_for(data_dir);
    eprintln!("backing up {} ...", data_dir.display());
    let report = clinicdesk_server::admin::backup::backup(
        &file,
        data_dir,
        keys.as_ref(),
        to,
        clinicdesk_server::time::Clock::now_ms(&SystemClock),
    )
    .await
    .with_context(|| format!("backing up to {}", to.display()))?;
    let mut out = std::io::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "backed up the database ({} bytes) and {} key and TLS files to {}; it opens only \
             with the key-encryption keys in {}",
            report.database_bytes,
            report.files,
            to.display(),
            key_dir_for(data_dir).display()
        )?;
    }
    Ok(())
}

async fn restore_command(
    db: &DatabaseUrls,
    from: &std::path::Path,
    data_dir: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    if db.postgres()?.is_some() {
        anyhow::bail!("restore puts back the embedded store; on PostgreSQL use pg_restore");
    }
    let keys = key_provider_for(data_dir);
    let report = clinicdesk_server::admin::backup::restore(
        from,
        data_dir,
        keys.as_ref(),
        force,
        clinicdesk_server::time::Clock::now_ms(&SystemClock),
    )
    .with_context(|| format!("restoring {}", from.display()))?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "restored the backup of {} ({} bytes of database, {} key and TLS files) into {}",
        clinicdesk_server::time::rfc3339(report.created_at_ms)
            .unwrap_or_else(|_| report.created_at_ms.to_string()),
        report.database_bytes,
        report.files,
        data_dir.display()
    )?;
    if let Some(kept) = &report.kept_as {
        writeln!(
            out,
            "the directory it replaced is kept as {}",
            kept.display()
        )?;
    }
    // What was restored is checked like any store: its trail, its history, its columns.
    audit_command(
        db,
        AuditCommand::Verify {
            data_dir: data_dir.to_owned(),
            checkpoints: None,
        },
    )
    .await
}

async fn audit_command(db: &DatabaseUrls, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify {
            data_dir,
            checkpoints,
        } => {
            let store = open_existing(db, &data_dir).await?;
            if !data_dir.join(audit::key::KEY_FILE).exists() {
                anyhow::bail!(
                    "no audit key {} under {}: checkpoints cannot be checked without it",
                    audit::key::KEY_FILE,
                    data_dir.display()
                );
            }
            let key = AuditKey::load_or_create(&data_dir)?;
            let trusted = match checkpoints {
                Some(path) => read_checkpoints(&path)?,
                None => Vec::new(),
            };
            // The columns beside each patient's content, checked with the keys that open
            // their sealed fields.
            let keys = KeyFileProvider::new(key_dir_for(&data_dir));
            let console = clinicdesk_server::scope::Console::operator();
            let mut columns =
                clinicdesk_server::clinical::records::check_derived(&store, &console, &keys)
                    .await
                    .context("checking the patients' columns")?;
            columns.extend(
                clinicdesk_server::clinical::booking::check_derived(&store, &console)
                    .await
                    .context("checking the appointments' columns")?,
            );
            let report_columns = |err: &mut dyn Write| -> std::io::Result<()> {
                for d in &columns {
                    writeln!(err, "{d}")?;
                }
                Ok(())
            };
            match verify_all(&console, &store, key.server_keys(), &trusted).await {
                Ok(_) if !columns.is_empty() => {
                    let mut err = std::io::stderr().lock();
                    report_columns(&mut err)?;
                    writeln!(
                        err,
                        "audit trail does NOT verify: {} problem(s)",
                        columns.len()
                    )?;
                    drop(err);
                    EXIT_STATUS.store(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
                Ok(report) => {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "audit trail verified: {} clinic(s), {} event(s), {} checkpoint(s), {} tamper alert(s)",
                        report.clinics, report.events, report.checkpoints, report.alerts
                    )?;
                    for (device, from, to) in &report.gaps {
                        writeln!(
                            out,
                            "outstanding: device {device} is missing {from} to {to}"
                        )?;
                    }
                    Ok(())
                }
                Err(VerifyError::Tampered(findings)) => {
                    let mut err = std::io::stderr().lock();
                    for t in findings.all() {
                        writeln!(err, "{t}")?;
                    }
                    report_columns(&mut err)?;
                    writeln!(
                        err,
                        "audit trail does NOT verify: {} problem(s)",
                        findings.all().len() + columns.len()
                    )?;
                    // A finding is the command's answer, not a failure of the program: exit 1
                    // without an error chain (or a backtrace) around it.
                    drop(err);
                    EXIT_STATUS.store(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
                Err(VerifyError::Store(e)) => {
                    Err(anyhow::Error::new(e).context("reading the audit trail"))
                }
            }
        }
        AuditCommand::Search {
            data_dir,
            filters,
            limit,
        } => {
            let store = open_existing(db, &data_dir).await?;
            let clinic = clinic_or_only(&store, filters.clinic).await?;
            let mut q =
                AuditQuery::first_page(&filters.parse()?, limit.clamp(1, audit::query::MAX_LIMIT));
            let mut printed = 0u32;
            let mut out = std::io::stdout().lock();
            loop {
                let page = operator::search_audit(&store, clinic, &q).await?;
                for record in &page.events {
                    serde_json::to_writer(&mut out, record)?;
                    writeln!(out)?;
                    printed += 1;
                }
                match page.next_cursor {
                    Some(c) if printed < limit => {
                        q.cursor = Some(c);
                        q.limit = Some((limit - printed).min(audit::query::MAX_LIMIT));
                    }
                    _ => break,
                }
            }
            Ok(())
        }
        AuditCommand::Export {
            data_dir,
            format,
            filters,
        } => {
            let state = open_existing_state(db, &data_dir).await?;
            let clinic = clinic_or_only(&state.store, filters.clinic).await?;
            let filters = filters.parse()?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
            let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                while let Some(chunk) = rx.blocking_recv() {
                    out.write_all(&chunk)?;
                }
                out.flush()
            });
            let exported = operator::export_audit(&state, clinic, &filters, format, &tx).await;
            drop(tx);
            // A closed stdout (e.g. `| head`) is the writer's error, not the export's.
            writer.await?.context("writing the export")?;
            let n = exported.context("exporting the audit trail")?;
            eprintln!("exported {n} event(s)");
            Ok(())
        }
        AuditCommand::VerifyExport { file, keys } => {
            let trusted: Option<ClinicKeys> = keys
                .map(|path| -> anyhow::Result<ClinicKeys> {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a clinic key file", path.display()))
                })
                .transpose()?;
            let input = std::io::BufReader::new(
                std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?,
            );
            match audit::verify_export::verify_export(input, trusted.as_ref()) {
                Ok(s) => {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "export verified: {} event(s) of clinic {}, each in the log of {} event(s) whose checkpoint the server signed at {}",
                        s.events,
                        s.clinic_id,
                        s.tree_size,
                        rfc3339(s.checkpoint_issued_at_ms)
                    )?;
                    if s.self_keyed {
                        writeln!(
                            out,
                            "note: checked with the keys inside the file; pass --keys (from `audit keys`) to prove who signed it"
                        )?;
                    }
                    Ok(())
                }
                Err(p) => anyhow::bail!("export does NOT verify: {p}"),
            }
        }
        AuditCommand::AccessReview {
            data_dir,
            clinic,
            all_users,
        } => {
            let store = open_existing(db, &data_dir).await?;
            let clinic = clinic_or_only(&store, clinic).await?;
            let csv = operator::access_review(&store, clinic, all_users).await?;
            std::io::stdout().lock().write_all(&csv)?;
            Ok(())
        }
        AuditCommand::Policies { data_dir, clinic } => {
            let store = open_existing(db, &data_dir).await?;
            let clinic = clinic_or_only(&store, clinic).await?;
            let policies = operator::policies(&store, clinic).await?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &policies)?;
            writeln!(out)?;
            Ok(())
        }
        AuditCommand::RotateKey { data_dir } => {
            if !data_dir.join(audit::key::KEY_FILE).exists() {
                anyhow::bail!(
                    "no audit key {} under {}: nothing to rotate",
                    audit::key::KEY_FILE,
                    data_dir.display()
                );
            }
            let now = clinicdesk_server::time::Clock::now_ms(&SystemClock);
            let rotation = AuditKey::rotate(&data_dir, now).context("rotating the audit key")?;
            // Each clinic's trail says so, signed by the new key.
            let state = open_existing_state(db, &data_dir).await?;
            let console = clinicdesk_server::scope::Console::operator();
            clinicdesk_server::admin::keys::record_audit_key_rotation(
                &state,
                &console,
                &rotation.new_key,
            )
            .await
            .context("recording the rotation in each clinic's trail")?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &rotation)?;
            writeln!(out)?;
            eprintln!(
                "audit key rotated: the new key signs from now on; start the server again (every \
                 instance, with a copy of {} and {})",
                audit::key::KEY_FILE,
                audit::key::ROTATIONS_FILE
            );
            Ok(())
        }
        AuditCommand::Keys { data_dir, clinic } => {
            let state = open_existing_state(db, &data_dir).await?;
            let clinic = clinic_or_only(&state.store, clinic).await?;
            let keys = operator::clinic_keys(&state, clinic).await?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &keys)?;
            writeln!(out)?;
            Ok(())
        }
        AuditCommand::Report {
            data_dir,
            clinic,
            patient,
            from,
            to,
            json,
            by_receipt,
        } => {
            let state = open_existing_state(db, &data_dir).await?;
            let clinic = clinic_or_only(&state.store, clinic).await?;
            let report = operator::patient_access_report(
                &state,
                clinic,
                patient,
                parse_opt_time(from.as_deref(), "--from")?,
                parse_opt_time(to.as_deref(), "--to")?,
                if by_receipt {
                    ReportOrder::Received
                } else {
                    ReportOrder::Occurred
                },
            )
            .await
            .context("building the report")?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                print_report(&mut out, &report)?;
            }
            Ok(())
        }
    }
}

fn rfc3339(ms: i64) -> String {
    audit::fhir::instant(ms).unwrap_or_else(|| ms.to_string())
}

/// Text from the trail as the terminal may show it: a workstation signs its own strings,
/// and a control character among them (an escape sequence that clears the screen or hides
/// a line) is printed escaped, never sent to the terminal.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The report as a table; every proof is checked before it is called verified. Strings
/// from the trail go through [`shown`].
fn print_report(out: &mut impl Write, r: &PatientAccessReport) -> anyhow::Result<()> {
    let cp = &r.checkpoint.checkpoint;
    writeln!(
        out,
        "Accesses to patient {} ({} to {}): {}",
        r.patient_id,
        r.from_ms.map_or("the beginning".into(), rfc3339),
        r.to_ms.map_or("now".into(), rfc3339),
        r.accesses.len()
    )?;
    writeln!(
        out,
        "Proven against the checkpoint of {} event(s) signed at {}.",
        cp.tree_size,
        rfc3339(cp.issued_at_ms)
    )?;
    writeln!(
        out,
        "Newest first by {}.",
        match r.order {
            ReportOrder::Occurred => "the time each event says",
            ReportOrder::Received => "when the server received each event",
        }
    )?;
    writeln!(
        out,
        "{:<24}  {:<24}  {:<20} {:<10}  {:<7} {:<11} {:<28} {:<8} {:<26} proof",
        "when (UTC)",
        "received (UTC)",
        "who",
        "role",
        "action",
        "resource",
        "fields",
        "outcome",
        "where"
    )?;
    for a in &r.accesses {
        let e = &a.event;
        let proven = verify_inclusion(
            &cp.root_hash,
            cp.tree_size,
            a.leaf_index,
            &e.hash(),
            &a.inclusion,
        )
        .is_ok();
        let place = match &e.request {
            Some(seen) => format!("server, from {}", shown(&seen.client_ip)),
            None => a
                .device_name
                .as_deref()
                .map_or_else(|| e.device_id.to_string(), shown),
        };
        writeln!(
            out,
            "{:<24}  {:<24}  {:<20} {:<10}  {:<7} {:<11} {:<28} {:<8} {:<26} {}",
            rfc3339(e.occurred_at_ms),
            a.received_at_ms.map_or_else(|| "-".to_owned(), rfc3339),
            a.actor_name
                .as_deref()
                .map_or_else(|| e.actor_user_id.to_string(), shown),
            e.actor_role.as_str(),
            e.action.as_str(),
            shown(&e.resource_type),
            shown(&e.fields.join(",")),
            e.outcome.as_str(),
            place,
            if proven {
                format!("leaf {} ok", a.leaf_index)
            } else {
                "PROOF FAILS".into()
            }
        )?;
        if let Some(b) = &e.break_glass {
            writeln!(
                out,
                "{:<26}break-glass: {}: {}",
                "",
                shown(&b.reason_code),
                shown(&b.reason_text)
            )?;
        }
    }
    Ok(())
}

fn parse_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} wants an RFC 3339 time such as 2026-11-17T15:00:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).context("time out of range")
}

fn read_checkpoints(path: &std::path::Path) -> anyhow::Result<Vec<SignedCheckpoint>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "{} line {} is not a signed checkpoint",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// Opens the store of a data directory that must already exist (verify and search never
/// create an empty one by mistake).
async fn open_existing(db: &DatabaseUrls, data_dir: &std::path::Path) -> anyhow::Result<Store> {
    if db.postgres()?.is_none()
        && !data_dir
            .join(clinicdesk_server::store::EMBEDDED_FILE)
            .exists()
    {
        anyhow::bail!("no ClinicDesk database under {}", data_dir.display());
    }
    open_store(db, data_dir).await
}

async fn open_store(db: &DatabaseUrls, data_dir: &std::path::Path) -> anyhow::Result<Store> {
    Store::open(&location_of(db, data_dir)?)
        .await
        .inspect(opened)
        .with_context(|| format!("opening the database of {}", data_dir.display()))
}

async fn serve(
    db: &DatabaseUrls,
    data_dir: PathBuf,
    listen: SocketAddr,
    webauthn_origin: &str,
) -> anyhow::Result<()> {
    clinicdesk_server::store::private_files::private_dir(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let files = tls::ensure_local_ca(&data_dir).context("preparing TLS certificates")?;
    let config = tls::server_config(&files)?;
    let state = open_state(db, &data_dir)
        .await?
        .with_webauthn_origin(webauthn_origin)
        .context("--webauthn-origin")?;
    // Fail at start, not at the first registration, if the keys cannot be reached.
    state
        .keys
        .current()
        .context("reaching the key-encryption keys (--key-dir)")?;
    tokio::spawn(audit::publisher::publish_checkpoints(
        state.clone(),
        audit::publisher::CHECKPOINT_INTERVAL,
    ));
    let router = build_router(state)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // One machine-readable line on stdout for scripts and tests; the rest goes to stderr.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "listening https://{addr} ca={}",
        files.ca_cert.display()
    )?;
    out.flush()?;
    drop(out);
    tracing::info!(%addr, "serving over TLS");
    tokio::select! {
        () = tls::serve(listener, config, router) => Ok(()),
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("shutting down"); Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::audit::{
        AuditAction, AuditEvent, BreakGlass, Hash32, Outcome, Recorder,
    };
    use clinicdesk_protocol::export::PatientAccess;
    use clinicdesk_protocol::merkle::Checkpoint;
    use clinicdesk_protocol::policy::Role;
    use uuid::Uuid;

    use super::*;

    /// Ingest refuses control characters in a workstation's text, but a trail stored before
    /// it did may hold them: the terminal still never receives one.
    #[test]
    fn the_report_table_escapes_what_a_workstation_wrote_and_shows_both_times() {
        let event = AuditEvent {
            id: Uuid::from_u128(1),
            clinic_id: Uuid::from_u128(2),
            actor_user_id: Uuid::from_u128(3),
            actor_role: Role::Clinician,
            recorded_by: Recorder::Device,
            device_id: Uuid::from_u128(4),
            device_seq: 1,
            action: AuditAction::View,
            resource_type: "Patient\u{1b}[2J".into(),
            resource_id: "p".into(),
            patient_id: Some(Uuid::from_u128(5)),
            fields: vec!["name\r".into()],
            outcome: Outcome::Success,
            occurred_at_ms: 1_700_000_000_000,
            offline: false,
            route: "patient".into(),
            break_glass: Some(BreakGlass {
                reason_code: "emergency".into(),
                reason_text: "covering\u{1b}]0;owned\u{7}".into(),
            }),
            request: None,
            prev_hash: Hash32::GENESIS,
            change: None,
        };
        let report = PatientAccessReport {
            clinic_id: event.clinic_id,
            patient_id: Uuid::from_u128(5),
            from_ms: None,
            to_ms: None,
            generated_at_ms: 1_800_000_000_000,
            checkpoint: SignedCheckpoint {
                checkpoint: Checkpoint {
                    clinic_id: event.clinic_id,
                    tree_size: 1,
                    root_hash: event.hash(),
                    issued_at_ms: 1_800_000_000_000,
                },
                signature: String::new(),
            },
            order: ReportOrder::Received,
            accesses: vec![PatientAccess {
                event,
                signature: String::new(),
                actor_name: Some("Synthetic\u{1b}[31m clinician".into()),
                device_name: None,
                leaf_index: 0,
                inclusion: vec![],
                received_at_ms: Some(1_750_000_000_000),
            }],
        };
        let mut out = Vec::new();
        print_report(&mut out, &report).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        for escaped in [
            "Patient\\u{1b}[2J",
            "covering\\u{1b}]0;owned\\u{7}",
            "Synthetic\\u{1b}[31m clinician",
        ] {
            assert!(text.contains(escaped), "{text}");
        }
        assert!(
            text.contains("2023-11-14T22:13:20"),
            "the event's time: {text}"
        );
        assert!(text.contains("2025-06-15T15:06:40"), "its receipt: {text}");
        assert!(text.contains("when the server received"), "{text}");
    }
}
