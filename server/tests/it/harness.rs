//! A real server on `127.0.0.1:0` with TLS, its own data dir and a manual clock, plus a
//! device that can enroll and sign in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use clinicdesk_protocol::audit::{AuditEvent, to_hex};
use clinicdesk_protocol::mfa::{LoginStep, MfaEnrolled, TotpSetup};
use clinicdesk_protocol::wire::{
    ChallengeResponse, EnrollResponse, LoginResponse, ProofKey, escrow_proof_bytes,
    login_proof_bytes,
};
use clinicdesk_server::admin::seed::{SeedReport, seed_clinic};
use clinicdesk_server::http::tls;
use clinicdesk_server::secrets::kek::KeyFileProvider;
use clinicdesk_server::sign_in::mfa::totp::{STEP_SECS, TotpSecret};
use clinicdesk_server::state::embedded_location;
use clinicdesk_server::store::{Store, StoreLocation, at_rest};
use clinicdesk_server::time::{Clock, ManualClock};
use clinicdesk_server::{AppState, build_router};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sqlx::any::AnyPoolOptions;
use sqlx::{Executor, Row};
use uuid::Uuid;

/// Per (clinic, username), shared by the instances of one deployment.
pub type Shared<T> = Arc<Mutex<HashMap<(Uuid, String), T>>>;

pub struct TestServer {
    pub url: String,
    /// The PostgreSQL database of this server (the PostgreSQL leg), or `None` for the
    /// embedded SQLite file in `dir`.
    pub database: Option<PostgresUrls>,
    pub ca_pem: Vec<u8>,
    http: reqwest::Client,
    pub store: Store,
    location: StoreLocation,
    /// [`TestServer::owner_pool`], opened on first use.
    own: tokio::sync::OnceCell<sqlx::AnyPool>,
    /// The pools [`TestServer::app_role_pool`] handed out, closed with the server.
    handed_out: Mutex<Vec<sqlx::AnyPool>>,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    /// The key-encryption keys, kept apart from `dir` as a deployment keeps them (shared
    /// by every instance of this server).
    pub key_dir: Arc<tempfile::TempDir>,
    /// The authenticator app of every user who set up TOTP here: (clinic, username) to
    /// (base32 secret, last step used).
    pub authenticator: Shared<(String, u64)>,
    /// The recovery codes each user was shown.
    pub recovery_codes: Shared<Vec<String>>,
}

/// A test server's PostgreSQL database, set up as the README asks of a deployment: the
/// server logs in as a role that is only a member of `clinicdesk_app`; migrations (and the
/// operator's view in tests) use the owner's URL.
#[derive(Clone, Debug)]
pub struct PostgresUrls {
    pub server: String,
    pub owner: String,
}

/// The login role test servers use on the PostgreSQL leg.
pub const SERVER_LOGIN: &str = "clinicdesk_test_server";

/// Creates the server's login role once per test process: roles are cluster-wide, and the
/// application role may not exist yet (the first migration makes it too, and tolerates this).
async fn ensure_server_login(conn: &mut sqlx::PgConnection) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        for role in [
            "CREATE ROLE clinicdesk_app NOLOGIN".to_owned(),
            format!("CREATE ROLE {SERVER_LOGIN} LOGIN IN ROLE clinicdesk_app"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DO $$ BEGIN {role}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
        }
    })
    .await;
}

/// The prefix of the databases test servers get; the test process's id follows it.
const DATABASE_PREFIX: &str = "clinicdesk_t";

/// Drops, once per test process, the databases that test processes no longer running left
/// behind (each name carries its process's id). Nothing else drops them: CI's cluster is
/// thrown away, but a cluster kept between runs by hand filled a developer's disk (570
/// databases, 6 GB). Linux only, where a process's `/proc` entry tells whether it runs.
async fn drop_leftover_databases(conn: &mut sqlx::PgConnection) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    if !cfg!(target_os = "linux") {
        return;
    }
    DONE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)",
        )
        .bind(DATABASE_PREFIX)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        for name in names {
            let pid = name[DATABASE_PREFIX.len()..]
                .split('_')
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            let gone = pid.is_some_and(|p| {
                p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
            });
            if plain && gone {
                // A name of this harness's own making: letters, digits and underscores.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut *conn)
                .await
                .unwrap();
            }
        }
    })
    .await;
}

/// On the PostgreSQL leg (`cargo xtask test` sets `CLINICDESK_TEST_POSTGRES_URL` to its
/// throwaway cluster), a new empty database for one test server; otherwise `None`.
pub async fn fresh_postgres_database() -> Option<PostgresUrls> {
    use sqlx::Connection;
    let admin = std::env::var("CLINICDESK_TEST_POSTGRES_URL").ok()?;
    let name = format!(
        "{DATABASE_PREFIX}{}_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    drop_leftover_databases(&mut conn).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    ensure_server_login(&mut conn).await;
    let mut owner = url::Url::parse(&admin).unwrap();
    owner.set_path(&name);
    let mut server = owner.clone();
    server.set_username(SERVER_LOGIN).unwrap();
    server.set_password(None).unwrap();
    Some(PostgresUrls {
        server: server.into(),
        owner: owner.into(),
    })
}

impl PostgresUrls {
    pub fn location(&self) -> StoreLocation {
        StoreLocation::Postgres {
            url: self.server.clone(),
            migration_url: Some(self.owner.clone()),
        }
    }
}

/// The test's own pool on the database at `location`, as an operator or an insider with
/// SQL or file access has it, apart from the server's pool: on PostgreSQL as the schema
/// owner when the location names one (no application role, no row-level security); on
/// SQLite the same file (sqlx's 5 s busy timeout waits out the server's writers).
pub async fn own_pool(location: &StoreLocation) -> sqlx::AnyPool {
    let url = match location {
        StoreLocation::Embedded(file) => at_rest::any_url(file).unwrap().to_string(),
        StoreLocation::Postgres { url, migration_url } => {
            migration_url.as_ref().unwrap_or(url).clone()
        }
    };
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new().connect(&url).await.unwrap()
}

/// Writes a plaintext copy of the SQLCipher store that `pool` opens to `to` (SQLCipher's
/// export into a database attached with an empty key).
pub async fn export_plaintext(pool: &sqlx::AnyPool, to: &std::path::Path) {
    let mut conn = pool.acquire().await.unwrap();
    let attach = format!(
        "ATTACH DATABASE '{}' AS plaintext KEY ''",
        to.to_str().unwrap()
    );
    conn.execute(sqlx::AssertSqlSafe(attach)).await.unwrap();
    sqlx::query("SELECT sqlcipher_export('plaintext')")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    conn.execute("DETACH DATABASE plaintext").await.unwrap();
}

/// The test's own pool on the database at `location` as the server's role has it: on
/// PostgreSQL its login URL, then `SET ROLE clinicdesk_app` as the server's pool does; on
/// SQLite, which has no roles, [`own_pool`].
pub async fn app_role_pool(location: &StoreLocation) -> sqlx::AnyPool {
    let StoreLocation::Postgres { url, .. } = location else {
        return own_pool(location).await;
    };
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET ROLE clinicdesk_app").await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .unwrap()
}

/// Where a test server's data lives: its PostgreSQL database, or `dir`'s SQLite file under
/// its database key (wrapped by the keys in `key_dir`).
fn location_of(
    database: Option<&PostgresUrls>,
    dir: &std::path::Path,
    key_dir: &std::path::Path,
) -> StoreLocation {
    database.map_or_else(
        || embedded_location(dir, &KeyFileProvider::new(key_dir)).unwrap(),
        PostgresUrls::location,
    )
}

/// The key-encryption keys of a test's own data directory (not a [`TestServer`]'s): in a
/// `kek` folder inside it, so they go with it.
pub fn keys_in(dir: &std::path::Path) -> Arc<KeyFileProvider> {
    Arc::new(KeyFileProvider::new(dir.join("kek")))
}

/// The embedded store of a test's own data directory, under its key ([`keys_in`]).
pub fn embedded_in(dir: &std::path::Path) -> StoreLocation {
    embedded_location(dir, keys_in(dir).as_ref()).unwrap()
}

/// A server's state on a test's own data directory ([`embedded_in`]).
pub async fn state_in(dir: &std::path::Path, clock: Arc<dyn Clock>) -> AppState {
    AppState::open_at(&embedded_in(dir), dir, clock, keys_in(dir))
        .await
        .unwrap()
}

/// A command of the server's CLI on this test server's database.
pub fn cli(server: &TestServer) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_clinicdesk-server"));
    match &server.database {
        Some(db) => cmd
            .env("DATABASE_URL", &db.server)
            .env("DATABASE_MIGRATION_URL", &db.owner),
        None => cmd
            .env_remove("DATABASE_URL")
            .env_remove("DATABASE_MIGRATION_URL"),
    };
    cmd.env("CLINICDESK_KEY_DIR", server.key_dir.path());
    cmd
}

/// `clinicdesk-server ARGS --data-dir <this server's>`: its output.
pub fn run_cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    cli(server)
        .args(args)
        .arg("--data-dir")
        .arg(server.dir.path())
        .output()
        .unwrap()
}

/// [`run_cli`], which must succeed (its stderr otherwise): its stdout.
pub fn cli_ok(server: &TestServer, args: &[&str]) -> Vec<u8> {
    let out = run_cli(server, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Copies a data directory's files but its SQLite database (keys, TLS files).
fn copy_keys(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
            copy_keys(&path, &to.join(&name));
        } else if !name.to_string_lossy().starts_with("clinicdesk.sqlite3") {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// The app version the test device reports at login.
pub const HARNESS_APP_VERSION: &str = "0.0.0-harness";

/// 2026-11-23 12:00 UTC, so "today" has the seeded appointments.
pub const START_MS: i64 = 1_795_435_200_000;

impl Drop for TestServer {
    fn drop(&mut self) {
        let handed_out = std::mem::take(&mut *self.handed_out.lock().unwrap());
        // Keyed pools are closed, and waited for, before the test process can exit.
        for pool in self.own.get().cloned().into_iter().chain(handed_out) {
            at_rest::close_and_wait(pool);
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|state| build_router(state).unwrap()).await
    }

    /// A server whose router `make` builds (to prove what the real one refuses to do).
    pub async fn start_with(make: impl FnOnce(AppState) -> axum::Router) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let database = fresh_postgres_database().await;
        let key_dir = Arc::new(tempfile::tempdir().unwrap());
        let location = location_of(database.as_ref(), dir.path(), key_dir.path());
        Self::serve(
            dir,
            key_dir,
            location,
            database,
            ManualClock::new(START_MS),
            make,
        )
        .await
    }

    /// A server on the embedded store in `dir` whatever the leg (a test's own place for it:
    /// a small filesystem), with its key-encryption keys apart as usual.
    pub async fn start_embedded_in(dir: tempfile::TempDir) -> TestServer {
        let key_dir = Arc::new(tempfile::tempdir().unwrap());
        let location = location_of(None, dir.path(), key_dir.path());
        Self::serve(
            dir,
            key_dir,
            location,
            None,
            ManualClock::new(START_MS),
            |state| build_router(state).unwrap(),
        )
        .await
    }

    /// A second server instance on this one's database, as behind a load balancer: its own
    /// process state (pool, router, listener) and data directory, holding copies of the
    /// key and TLS files (which instances of one deployment share); the same clock.
    pub async fn another_instance(&self) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        copy_keys(self.dir.path(), dir.path());
        let location = location_of(self.database.as_ref(), self.dir.path(), self.key_dir.path());
        let mut other = Self::serve(
            dir,
            Arc::clone(&self.key_dir),
            location,
            self.database.clone(),
            self.clock.clone(),
            |state| build_router(state).unwrap(),
        )
        .await;
        other.authenticator = Arc::clone(&self.authenticator);
        other.recovery_codes = Arc::clone(&self.recovery_codes);
        other
    }

    async fn serve(
        dir: tempfile::TempDir,
        key_dir: Arc<tempfile::TempDir>,
        location: StoreLocation,
        database: Option<PostgresUrls>,
        clock: ManualClock,
        make: impl FnOnce(AppState) -> axum::Router,
    ) -> TestServer {
        let state = AppState::open_at(
            &location,
            dir.path(),
            Arc::new(clock.clone()),
            Arc::new(KeyFileProvider::new(key_dir.path())),
        )
        .await
        .unwrap();
        let store = state.store.clone();
        let files = tls::ensure_local_ca(dir.path()).unwrap();
        let config = tls::server_config(&files).unwrap();
        let router = make(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(tls::serve(listener, config, router));
        let ca_pem = std::fs::read(&files.ca_cert).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
            .build()
            .unwrap();
        TestServer {
            url: format!("https://127.0.0.1:{}", addr.port()),
            database,
            ca_pem,
            http,
            store,
            location,
            own: tokio::sync::OnceCell::new(),
            handed_out: Mutex::default(),
            clock,
            dir,
            key_dir,
            authenticator: Arc::default(),
            recovery_codes: Arc::default(),
        }
    }

    /// Another workstation of `clinic`, enrolled with a fresh code from the operator's
    /// console (the seeded code works once).
    pub async fn enroll_another(&self, clinic: Uuid) -> TestDevice {
        let code = clinicdesk_server::admin::seed::issue_enrollment_code(
            &self.store,
            &self.clock,
            clinic,
            15,
            None,
        )
        .await
        .unwrap();
        TestDevice::enroll(self, &code).await
    }

    pub async fn seed(&self, clinic: u128, name: &str) -> SeedReport {
        seed_clinic(&self.store, &self.clock, Uuid::from_u128(clinic), name, 15)
            .await
            .unwrap()
    }

    /// Seeds a clinic, enrolls a workstation with its code and signs `username` in on it.
    pub async fn signed_in(&self, clinic: u128, username: &str) -> SignedIn {
        let report = self.seed(clinic, &format!("Clinic {clinic:X}")).await;
        let device = TestDevice::enroll(self, &report.enrollment_code).await;
        let login = device
            .login(self, username, password_of(&report, username))
            .await;
        SignedIn {
            report,
            device,
            login,
        }
    }

    /// A TOTP code for the user's authenticator that the server has not seen yet: the
    /// earliest unused step within the server's ±1 step, moving the clock on a step when
    /// all three are used (as a person would wait for the next code).
    pub fn totp_code(&self, clinic: Uuid, username: &str) -> String {
        let mut apps = self.authenticator.lock().unwrap();
        let (secret, last) = apps
            .get_mut(&(clinic, username.to_owned()))
            .expect("the user set up TOTP");
        let now_step = u64::try_from(self.clock.now_ms() / 1000).unwrap() / STEP_SECS;
        let mut step = (*last + 1).max(now_step - 1);
        if step > now_step + 1 {
            self.clock
                .advance_ms(i64::try_from(STEP_SECS * 1000).unwrap());
            step = now_step;
        }
        *last = step;
        TotpSecret::from_base32(secret)
            .unwrap()
            .code_at(step * STEP_SECS)
            .unwrap()
    }

    /// The test's own pool on this server's database ([`own_pool`]): on PostgreSQL as the
    /// owner (the operator's console), on SQLite the same file.
    pub async fn owner_pool(&self) -> sqlx::AnyPool {
        self.own
            .get_or_init(|| own_pool(&self.location))
            .await
            .clone()
    }

    /// Every page of the embedded store as the key opens it: a plaintext copy made with
    /// SQLCipher's export (the live file is encrypted whole, so reading its bytes proves
    /// nothing about what the server put in it).
    pub async fn decrypted_image(&self) -> Vec<u8> {
        assert!(self.database.is_none(), "the embedded store only");
        let out = tempfile::tempdir().unwrap();
        let plain = out.path().join("plain.sqlite3");
        export_plaintext(&self.owner_pool().await, &plain).await;
        let bytes = std::fs::read(&plain).unwrap();
        assert!(bytes.starts_with(b"SQLite format 3\0"), "a plaintext image");
        bytes
    }

    /// A pool of the test's own as the server's role ([`app_role_pool`]), for tests of what
    /// that role may do.
    pub async fn app_role_pool(&self) -> sqlx::AnyPool {
        let pool = app_role_pool(&self.location).await;
        self.handed_out.lock().unwrap().push(pool.clone());
        pool
    }

    /// A break-glass grant stored for the clinic's clinician on one of its patients, as
    /// setup data for tests that need grants in many clinics (no session, no audit event:
    /// `break_glass.rs` tests the real path).
    pub async fn insert_grant(&self, clinic: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let now = self.clock.now_ms();
        sqlx::query(
            "INSERT INTO break_glass_grants
                 (id, clinic_id, user_id, patient_id, reason_code, reason_text, granted_at_ms,
                  expires_at_ms)
             SELECT $1, $2,
                    (SELECT id FROM users WHERE clinic_id = $2 AND username = 'clinician'),
                    (SELECT min(id) FROM patients WHERE clinic_id = $2),
                    'other', 'test setup', $3, $4",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(now)
        .bind(now + 3_600_000)
        .execute(&self.owner_pool().await)
        .await
        .unwrap();
        id
    }

    /// The stored audit events of one action (e.g. `mfa_reset`), oldest first.
    pub async fn events_of(&self, action: &str) -> Vec<AuditEvent> {
        // The test clock often stands still, so many events share a receipt time: the log's
        // leaf order is the order they were stored in.
        sqlx::query(
            "SELECT event_json FROM audit_events WHERE action = $1 \
             ORDER BY received_at_ms, leaf_index",
        )
        .bind(action)
        .fetch_all(&self.owner_pool().await)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<&str, _>(0)).unwrap())
        .collect()
    }

    /// A client trusting only this server's CA; one per server, so its requests share
    /// connections (a TLS handshake per request made big tests slow).
    pub fn client(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut rb = self
            .client()
            .post(format!("{}{path}", self.url))
            .json(&body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `PATCH path` with `If-Match: "<version>"`, as a record change is sent.
    pub async fn patch(&self, path: &str, token: &str, version: u64, body: Value) -> (u16, Value) {
        let resp = self
            .client()
            .patch(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("If-Match", format!("\"{version}\""))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client()
            .put(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// A seeded clinic, its enrolled workstation and a user's session on it.
pub struct SignedIn {
    pub report: SeedReport,
    pub device: TestDevice,
    pub login: LoginResponse,
}

/// A workstation with its Ed25519 device key, its recovery key and the device secret it
/// left in escrow.
pub struct TestDevice {
    pub key: SigningKey,
    pub recovery: SigningKey,
    pub secret: [u8; 32],
    pub id: Uuid,
    pub clinic_id: Uuid,
    /// The server's audit key as pinned at enrollment (hex).
    pub audit_public_key: String,
}

impl TestDevice {
    /// A login nonce for this device from `server`'s public challenge route.
    pub async fn challenge(&self, server: &TestServer) -> String {
        let (status, body) = server
            .post("/v1/auth/challenge", None, json!({ "device_id": self.id }))
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value::<ChallengeResponse>(body)
            .unwrap()
            .nonce
    }

    pub async fn enroll(server: &TestServer, code: &str) -> TestDevice {
        let key = SigningKey::from_bytes(&rand32());
        let recovery = SigningKey::from_bytes(&rand32());
        let secret = rand32();
        let (status, body) = server
            .post(
                "/v1/devices/enroll",
                None,
                json!({
                    "enrollment_code": code,
                    "device_name": "Test workstation",
                    "public_key": to_hex(key.verifying_key().as_bytes()),
                    "device_secret": to_hex(&secret),
                    "recovery_public_key": to_hex(recovery.verifying_key().as_bytes()),
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let r: EnrollResponse = serde_json::from_value(body).unwrap();
        TestDevice {
            key,
            recovery,
            secret,
            id: r.device_id,
            clinic_id: r.clinic_id,
            audit_public_key: r.audit_public_key,
        }
    }

    /// Challenge, sign, log in; the raw response.
    pub async fn try_login(&self, server: &TestServer, user: &str, password: &str) -> (u16, Value) {
        self.try_login_with(server, user, password, None).await
    }

    /// [`TestDevice::try_login`], presenting an MFA grant from an earlier login.
    pub async fn try_login_with(
        &self,
        server: &TestServer,
        user: &str,
        password: &str,
        mfa_grant: Option<&str>,
    ) -> (u16, Value) {
        let resp = self.login_response(server, user, password, mfa_grant).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The raw HTTP response of a login (to read its headers).
    pub async fn login_response(
        &self,
        server: &TestServer,
        user: &str,
        password: &str,
        mfa_grant: Option<&str>,
    ) -> reqwest::Response {
        self.proven_login(server, user, password, mfa_grant, ProofKey::Device)
            .await
    }

    /// A login whose device proof is signed with `proof` (the device or the recovery key).
    pub async fn proven_login(
        &self,
        server: &TestServer,
        user: &str,
        password: &str,
        mfa_grant: Option<&str>,
        proof: ProofKey,
    ) -> reqwest::Response {
        let (status, body) = server
            .post("/v1/auth/challenge", None, json!({ "device_id": self.id }))
            .await;
        assert_eq!(status, 200, "{body}");
        let nonce = serde_json::from_value::<ChallengeResponse>(body)
            .unwrap()
            .nonce;
        let signer = match proof {
            ProofKey::Device => &self.key,
            ProofKey::Recovery => &self.recovery,
        };
        let signature = signer
            .sign(&login_proof_bytes(&nonce, self.id, user))
            .to_bytes();
        server
            .client()
            .post(format!("{}/v1/auth/login", server.url))
            .json(&json!({
                "username": user,
                "password": password,
                "device_id": self.id,
                "nonce": nonce,
                "device_signature": to_hex(&signature),
                "proof_key": proof,
                "mfa_grant": mfa_grant,
                "app_version": HARNESS_APP_VERSION,
            }))
            .send()
            .await
            .unwrap()
    }

    /// Password and device proof, then the second factor: TOTP, set up on first use.
    pub async fn login(&self, server: &TestServer, user: &str, password: &str) -> LoginResponse {
        let (status, body) = self.try_login(server, user, password).await;
        assert_eq!(status, 200, "{body}");
        self.second_factor(server, user, body).await
    }

    /// A recovery login: the proof signed with the recovery key, then TOTP.
    pub async fn recovery_login(
        &self,
        server: &TestServer,
        user: &str,
        password: &str,
    ) -> LoginResponse {
        let resp = self
            .proven_login(server, user, password, None, ProofKey::Recovery)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        self.second_factor(server, user, body).await
    }

    /// Asks for this device's escrowed secret with `token`, proving the recovery key
    /// (or `signer`, to test a wrong one) over a fresh nonce.
    pub async fn release_escrow(
        &self,
        server: &TestServer,
        token: &str,
        signer: Option<&SigningKey>,
    ) -> (u16, Value) {
        let (status, body) = server
            .post("/v1/auth/challenge", None, json!({ "device_id": self.id }))
            .await;
        if status != 200 {
            return (status, body);
        }
        let nonce = serde_json::from_value::<ChallengeResponse>(body)
            .unwrap()
            .nonce;
        let signature = signer
            .unwrap_or(&self.recovery)
            .sign(&escrow_proof_bytes(&nonce, self.id))
            .to_bytes();
        server
            .post(
                "/v1/devices/escrow/release",
                Some(token),
                json!({ "nonce": nonce, "recovery_signature": to_hex(&signature) }),
            )
            .await
    }

    /// The second-factor step of a login whose first answer was `body`.
    async fn second_factor(&self, server: &TestServer, user: &str, body: Value) -> LoginResponse {
        match serde_json::from_value::<LoginStep>(body).unwrap() {
            LoginStep::SignedIn(login) => login,
            LoginStep::SecondFactor(t) => {
                let code = server.totp_code(self.clinic_id, user);
                let (status, body) = server
                    .post(
                        "/v1/auth/mfa/totp",
                        None,
                        json!({ "ticket": t.ticket, "code": code }),
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
                serde_json::from_value(body).unwrap()
            }
            LoginStep::SetUpSecondFactor(t) => {
                self.set_up_totp(server, user, t.ticket.expose()).await
            }
            LoginStep::ChooseNewPassword(_) => {
                panic!("{user} has a first password: use first_login")
            }
        }
    }

    /// A first sign-in with a password someone else chose: the server asks for the user's
    /// own (`new_password`) before the second factor, which is then set up.
    pub async fn first_login(
        &self,
        server: &TestServer,
        user: &str,
        first_password: &str,
        new_password: &str,
    ) -> LoginResponse {
        let (status, body) = self.try_login(server, user, first_password).await;
        assert_eq!(status, 200, "{body}");
        let LoginStep::ChooseNewPassword(t) = serde_json::from_value::<LoginStep>(body).unwrap()
        else {
            panic!("{user} was not asked to choose a password");
        };
        let (status, body) = server
            .post(
                "/v1/auth/password/first",
                None,
                json!({ "ticket": t.ticket, "new_password": new_password }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let LoginStep::SetUpSecondFactor(t) = serde_json::from_value::<LoginStep>(body).unwrap()
        else {
            panic!("a new user's next step is setting up a second factor");
        };
        self.set_up_totp(server, user, t.ticket.expose()).await
    }

    /// Sets up TOTP with a setup ticket, as the user's authenticator app would.
    pub async fn set_up_totp(
        &self,
        server: &TestServer,
        user: &str,
        ticket: &str,
    ) -> LoginResponse {
        let (status, body) = server
            .post("/v1/auth/mfa/setup/totp", None, json!({ "ticket": ticket }))
            .await;
        assert_eq!(status, 200, "{body}");
        let setup: TotpSetup = serde_json::from_value(body).unwrap();
        let key = (self.clinic_id, user.to_owned());
        server
            .authenticator
            .lock()
            .unwrap()
            .insert(key.clone(), (setup.secret_base32.expose().to_owned(), 0));
        let code = server.totp_code(self.clinic_id, user);
        let (status, body) = server
            .post(
                "/v1/auth/mfa/setup/totp/confirm",
                None,
                json!({ "ticket": ticket, "code": code }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let enrolled: MfaEnrolled = serde_json::from_value(body).unwrap();
        server.recovery_codes.lock().unwrap().insert(
            key,
            enrolled
                .recovery_codes
                .iter()
                .map(|c| c.expose().to_owned())
                .collect(),
        );
        enrolled.session
    }
}

/// A session of every role in the seeded clinic `report`, on `device`, in [`Role::ALL`]
/// order. The seed has no billing user: its admin adds one, who then sets their password.
/// The events the server recorded itself for `route` (a template): each one's patient id
/// and field names, in chain order.
pub async fn route_events(server: &TestServer, route: &str) -> Vec<(String, Vec<String>)> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT e.event_json FROM audit_events e JOIN devices d ON d.id = e.device_id
         WHERE d.kind = 'server' ORDER BY e.device_seq",
    )
    .fetch_all(&server.owner_pool().await)
    .await
    .unwrap();
    rows.iter()
        .map(|json| serde_json::from_str::<Value>(json).unwrap())
        .filter(|e| e["route"] == route)
        .map(|e| {
            (
                e["patient_id"].as_str().unwrap().to_owned(),
                serde_json::from_value(e["fields"].clone()).unwrap(),
            )
        })
        .collect()
}

pub async fn every_role(
    server: &TestServer,
    report: &SeedReport,
    device: &TestDevice,
) -> Vec<(clinicdesk_protocol::policy::Role, String)> {
    use clinicdesk_protocol::policy::Role;
    let admin = device
        .login(server, "admin", password_of(report, "admin"))
        .await;
    let (status, _) = server
        .post(
            "/v1/users",
            Some(admin.session_token.expose()),
            json!({ "username": "billing", "display_name": "Bo Billing (synthetic)",
                    "role": "billing", "password": "violet-canoe-marble-47" }),
        )
        .await;
    assert_eq!(status, 201);
    let mut sessions = Vec::new();
    for role in Role::ALL {
        let login = match role {
            Role::Billing => {
                device
                    .first_login(
                        server,
                        "billing",
                        "violet-canoe-marble-47",
                        "saffron-glacier-tundra-19",
                    )
                    .await
            }
            _ => {
                let user = match role {
                    Role::FrontDesk => "frontdesk",
                    Role::Clinician => "clinician",
                    _ => "admin",
                };
                device.login(server, user, password_of(report, user)).await
            }
        };
        assert_eq!(login.user.role, role);
        sessions.push((role, login.session_token.expose().to_owned()));
    }
    sessions
}

/// A body a POST route with ids would accept, so that what answers a probe is the route's
/// authorization and lookup, not the body's shape.
pub fn acceptable_body(path: &str) -> Value {
    if path.ends_with("/role") {
        serde_json::json!({ "role": "front_desk" })
    } else if path.ends_with("/break-glass") {
        serde_json::json!({ "reason_code": "emergency", "reason_text": "probe" })
    } else if path.ends_with("/break-glass-reviewers") {
        // The default: an allowed call changes nothing.
        serde_json::json!({ "reviewers": 2 })
    } else if path.ends_with("/review") {
        serde_json::json!({ "note": "probe" })
    } else if path.ends_with("/care-team") {
        serde_json::json!({ "clinician_id": Uuid::now_v7() })
    } else if path.ends_with("/working-hours") {
        serde_json::json!({ "periods": [{ "weekday": "mon", "start": "09:00", "end": "12:00" }] })
    } else if path.ends_with("/offline-copy") {
        serde_json::json!({ "patients": 0, "days": 0 })
    } else if path.ends_with("/coverages") {
        serde_json::json!({ "fields": { "payer": "Probe", "member_id": "P-1" } })
    } else if path.starts_with("/v1/coverages/") {
        serde_json::json!({ "fields": { "group": "Probe" } })
    } else if path.starts_with("/v1/patients/") {
        // A record's change (PATCH, with `If-Match: "0"`).
        serde_json::json!({ "fields": { "phone": "555-0199" } })
    } else if path.starts_with("/v1/appointments/") {
        serde_json::json!({ "fields": { "reason": "Probe" } })
    } else if path.starts_with("/v1/practitioner-directory/") {
        serde_json::json!({ "user_id": null })
    } else {
        serde_json::json!({})
    }
}

/// An enrollment body for a new workstation key with its own escrow and recovery key.
pub fn enroll_body(code: &str, device_name: &str, key: &SigningKey) -> Value {
    json!({
        "enrollment_code": code,
        "device_name": device_name,
        "public_key": to_hex(key.verifying_key().as_bytes()),
        "device_secret": to_hex(&rand32()),
        "recovery_public_key": to_hex(SigningKey::from_bytes(&rand32()).verifying_key().as_bytes()),
    })
}

pub fn rand32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).unwrap();
    b
}

pub fn password_of<'a>(report: &'a SeedReport, username: &str) -> &'a str {
    &report
        .users
        .iter()
        .find(|u| u.username == username)
        .unwrap()
        .password
}

/// Runs one of the FHIR validator scripts in `server/tests/` under the fhir.resources
/// virtualenv's Python (`CLINICDESK_FHIR_PYTHON`) with `input` on its stdin.
pub fn fhir_validate(script: &str, input: &str) -> std::process::Output {
    use std::io::Write;
    let python = std::env::var("CLINICDESK_FHIR_PYTHON").expect(
        "CLINICDESK_FHIR_PYTHON is unset: run under `cargo xtask test`, which installs the validator",
    );
    let mut child = std::process::Command::new(python)
        .arg(format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR")))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `audit verify` as the operator runs it: every clinic of `store`, each behind its wall.
pub async fn verify_trail(
    store: &Store,
    key: &clinicdesk_server::audit::key::PublicKey,
    trusted: &[clinicdesk_protocol::merkle::SignedCheckpoint],
) -> Result<clinicdesk_server::audit::verify::Report, clinicdesk_server::audit::verify::VerifyError>
{
    let console = clinicdesk_server::scope::Console::operator();
    let keys = clinicdesk_protocol::rotation::ServerKeys::single(*key);
    clinicdesk_server::audit::verify::verify_all(&console, store, &keys, trusted).await
}

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything the server logs in this test binary from now on, at trace level (one
/// subscriber for the process: the canary test reads it for PHI, the contract fuzzer for the
/// cause of a server error).
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Captured(buffer.clone());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "clinicdesk_server=trace,axum=trace,tower=trace,sqlx=info,warn",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buffer
    })
    .clone()
}
