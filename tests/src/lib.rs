//! Harness for ClinicDesk's cross-crate tests: the real server binary on a loopback port
//! with its own data directory, the synthetic clinic it seeds, and read-only access to
//! its database for asserting what the server stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub mod authenticator;

use clinicdesk_app::AppError;
use clinicdesk_app::core::Core;
use clinicdesk_protocol::app::AppStatus;
use clinicdesk_protocol::audit::{SignedAuditEvent, from_hex};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use uuid::Uuid;

/// `target/debug` (or the profile dir) of this workspace, found from the test binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/it-<hash> → target/debug
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeededUser {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Seed {
    pub clinic_id: Uuid,
    pub enrollment_code: String,
    pub users: Vec<SeededUser>,
}

impl Seed {
    pub fn password(&self, username: &str) -> &str {
        &self
            .users
            .iter()
            .find(|u| u.username == username)
            .unwrap()
            .password
    }
}

/// Where a [`ServerProcess`] keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// The embedded SQLite store in its data directory (the default).
    Embedded,
    /// A PostgreSQL database of its own: the server logs in as `server`, a member of the
    /// application role; migrations and the test's own reads use `owner`.
    Postgres { server: String, owner: String },
}

impl Database {
    /// A new empty database on the cluster whose superuser URL is `admin_url`, set up as
    /// the README asks of a deployment (the server's login only a member of
    /// `clinicdesk_app`), as the server suite's harness does.
    pub fn fresh_postgres(admin_url: &str) -> Database {
        use sqlx::Connection;
        let name = format!(
            "clinicdesk_x{}_{}",
            std::process::id(),
            Uuid::new_v4().simple()
        );
        let login = "clinicdesk_test_server";
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                // Roles are cluster-wide: made once, whoever comes first.
                for role in [
                    "CREATE ROLE clinicdesk_app NOLOGIN".to_owned(),
                    format!("CREATE ROLE {login} LOGIN IN ROLE clinicdesk_app"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DO $$ BEGIN {role}; EXCEPTION WHEN duplicate_object OR unique_violation \
                         THEN NULL; END $$"
                    )))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                }
                conn.close().await.unwrap();
            });
        let mut owner = url::Url::parse(admin_url).unwrap();
        owner.set_path(&name);
        let mut server = owner.clone();
        server.set_username(login).unwrap();
        server.set_password(None).unwrap();
        Database::Postgres {
            server: server.into(),
            owner: owner.into(),
        }
    }

    /// A command of the server binary with this database's settings in its environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(server_binary());
        match self {
            Database::Embedded => cmd
                .env_remove("DATABASE_URL")
                .env_remove("DATABASE_MIGRATION_URL"),
            Database::Postgres { server, owner } => cmd
                .env("DATABASE_URL", server)
                .env("DATABASE_MIGRATION_URL", owner),
        };
        cmd
    }
}

/// The real `clinicdesk-server` process, killed on drop.
pub struct ServerProcess {
    pub url: String,
    pub database: Database,
    pub data_dir: tempfile::TempDir,
    /// The key-encryption keys, apart from the data directory as a deployment keeps them.
    pub key_dir: tempfile::TempDir,
    pub seed: Seed,
    /// The seeded users' authenticator app (TOTP secrets they set up).
    pub authenticator: authenticator::Authenticator,
    child: Child,
}

fn server_binary() -> PathBuf {
    let server = bin_dir().join("clinicdesk-server");
    assert!(
        server.exists(),
        "{} is missing: run `cargo xtask test`, which builds it first",
        server.display()
    );
    server
}

/// Starts `serve` on `listen` and returns the child and its `https://` URL.
fn serve(database: &Database, data_dir: &Path, key_dir: &Path, listen: &str) -> (Child, String) {
    let mut child = database
        .command()
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .arg("--key-dir")
        .arg(key_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected server output: {first}"))
        .to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    (child, url)
}

/// `seed --json` into fresh directories: the demo clinic, its users' passwords.
fn seeded(database: &Database) -> (tempfile::TempDir, tempfile::TempDir, Seed) {
    let data_dir = tempfile::tempdir().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let out = database
        .command()
        .args(["seed", "--json", "--data-dir"])
        .arg(data_dir.path())
        .arg("--key-dir")
        .arg(key_dir.path())
        .output()
        .unwrap();
    // Its stderr is the server's error chain (synthetic data only): say why.
    assert!(
        out.status.success(),
        "seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seed = serde_json::from_slice(&out.stdout).unwrap();
    (data_dir, key_dir, seed)
}

impl ServerProcess {
    pub fn start() -> ServerProcess {
        Self::start_on(Database::Embedded)
    }

    /// A server whose data is in `database`, seeded.
    pub fn start_on(database: Database) -> ServerProcess {
        let (data_dir, key_dir, seed) = seeded(&database);
        let (child, url) = serve(&database, data_dir.path(), key_dir.path(), "127.0.0.1:0");
        ServerProcess {
            url,
            database,
            data_dir,
            key_dir,
            seed,
            authenticator: Default::default(),
            child,
        }
    }

    /// Signs `username` in on `core` as a person would: password, then the second factor
    /// (set up with their authenticator on the first sign-in).
    pub async fn sign_in(
        &self,
        core: &Core,
        username: &str,
        password: &str,
    ) -> Result<AppStatus, AppError> {
        let status = core.sign_in(username, password).await?;
        authenticator::pass_second_factor(core, &self.authenticator, username, status).await
    }

    /// Unlocks `username`'s locked session on `core`; online and past its grant, the
    /// second factor is asked again.
    pub async fn unlock(
        &self,
        core: &Core,
        username: &str,
        password: &str,
    ) -> Result<AppStatus, AppError> {
        let status = core.unlock(password).await?;
        authenticator::pass_second_factor(core, &self.authenticator, username, status).await
    }

    /// Stops the server: the app sees it as unreachable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same address and data.
    pub fn restart(&mut self) {
        self.stop();
        let listen = self.url.trim_start_matches("https://").to_owned();
        let (child, url) = serve(
            &self.database,
            self.data_dir.path(),
            self.key_dir.path(),
            &listen,
        );
        assert_eq!(url, self.url);
        self.child = child;
    }

    /// Stops this server and starts another on its address, with data and a CA of its own:
    /// what a workstation meets when its connection is intercepted. The impostor's
    /// directories are returned (keep them while it runs); [`ServerProcess::restart`] brings
    /// the real server back.
    pub fn replace_with_impostor(&mut self) -> (tempfile::TempDir, tempfile::TempDir) {
        self.stop();
        let (data_dir, key_dir, _) = seeded(&Database::Embedded);
        let listen = self.url.trim_start_matches("https://").to_owned();
        let (child, url) = serve(
            &Database::Embedded,
            data_dir.path(),
            key_dir.path(),
            &listen,
        );
        assert_eq!(url, self.url);
        self.child = child;
        (data_dir, key_dir)
    }

    /// `clinicdesk-server revoke-device`, as the clinic's operator runs it.
    pub fn revoke_device(&self, device_id: Uuid) {
        let out = self
            .database
            .command()
            .args([
                "revoke-device",
                "--device",
                &device_id.to_string(),
                "--data-dir",
            ])
            .arg(self.data_dir.path())
            .arg("--key-dir")
            .arg(self.key_dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "revoke-device failed");
    }

    /// `clinicdesk-server audit verify`: every hash, signature, chain, the Merkle log and
    /// each checkpoint recomputed by the operator's tool. Returns its report line.
    pub fn audit_verify(&self) -> String {
        String::from_utf8_lossy(&self.operator(&["audit", "verify"])).into_owned()
    }

    /// An operator's command on this server's data (`--data-dir` and `--key-dir` added),
    /// which must succeed; returns its standard output.
    pub fn operator(&self, args: &[&str]) -> Vec<u8> {
        let out = self
            .database
            .command()
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--key-dir")
            .arg(self.key_dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `clinicdesk-server audit verify-export --keys KEYS FILE`, offline: whether it passes,
    /// and what it said.
    pub fn verify_export(keys: &Path, file: &Path) -> (bool, String) {
        let out = Command::new(server_binary())
            .args(["audit", "verify-export", "--keys"])
            .arg(keys)
            .arg(file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said)
    }

    /// The test's own pool on this server's database, as an operator with SQL access has
    /// it: the SQLite file under its key, or PostgreSQL as the schema owner (no row-level
    /// security). For the checks that must read either.
    pub async fn pool(&self) -> sqlx::AnyPool {
        let url = match &self.database {
            Database::Embedded => clinicdesk_server::store::at_rest::any_url(&self.sqlite_file())
                .unwrap()
                .to_string(),
            Database::Postgres { owner, .. } => owner.clone(),
        };
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap()
    }

    /// The embedded store's file and key.
    fn sqlite_file(&self) -> clinicdesk_server::store::at_rest::EmbeddedFile {
        let location = clinicdesk_server::state::embedded_location(
            self.data_dir.path(),
            &clinicdesk_server::secrets::kek::KeyFileProvider::new(self.key_dir.path()),
        )
        .unwrap();
        let clinicdesk_server::store::StoreLocation::Embedded(file) = location else {
            unreachable!("embedded_location is the embedded store")
        };
        file
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.path().join("tls/ca.pem")
    }

    /// A read-only connection to the server's SQLite database, opened with its key (the
    /// file is encrypted at rest).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            clinicdesk_server::store::at_rest::uri_filename(&self.sqlite_file())
                .unwrap()
                .as_str(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap()
    }

    pub fn user_id(&self, username: &str) -> Uuid {
        self.db()
            .query_row(
                "SELECT id FROM users WHERE username = ?1 AND clinic_id = ?2",
                [username, &self.seed.clinic_id.to_string()],
                |r| r.get::<_, String>(0),
            )
            .map(|s| Uuid::parse_str(&s).unwrap())
            .unwrap()
    }

    /// Device ids and public keys the server has enrolled.
    pub fn devices(&self) -> Vec<(Uuid, VerifyingKey)> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT id, public_key FROM devices WHERE kind = 'workstation'")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|row| {
                let (id, key) = row.unwrap();
                let key: [u8; 32] = from_hex(&key).unwrap().try_into().unwrap();
                (
                    Uuid::parse_str(&id).unwrap(),
                    VerifyingKey::from_bytes(&key).unwrap(),
                )
            })
            .collect()
    }

    /// Every stored event workstations recorded, with its signature, in device order.
    pub fn audit_events(&self) -> Vec<SignedAuditEvent> {
        self.events_of_kind("workstation")
    }

    /// Every stored event the server recorded itself (PHI responses), in chain order.
    pub fn server_events(&self) -> Vec<SignedAuditEvent> {
        self.events_of_kind("server")
    }

    fn events_of_kind(&self, kind: &str) -> Vec<SignedAuditEvent> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT e.event_json, e.signature FROM audit_events e
                 JOIN devices d ON d.id = e.device_id WHERE d.kind = ?1
                 ORDER BY e.device_id, e.device_seq",
            )
            .unwrap();
        stmt.query_map([kind], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap()
        .map(|row| {
            let (json, signature) = row.unwrap();
            SignedAuditEvent {
                event: serde_json::from_str(&json).unwrap(),
                signature,
            }
        })
        .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Database::Postgres { owner, .. } = &self.database {
            drop_database(owner);
        }
    }
}

/// Drops the database `owner_url` names (a cluster kept between runs by hand would fill
/// up with them otherwise), from a thread of its own: a drop may run inside a runtime.
fn drop_database(owner_url: &str) {
    use sqlx::Connection;
    let Ok(mut admin) = url::Url::parse(owner_url) else {
        return;
    };
    let name = admin.path().trim_start_matches('/').to_owned();
    admin.set_path("postgres");
    let dropping = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin.as_str()).await {
                // A name of [`Database::fresh_postgres`]'s making: letters, digits, `_`.
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
                let _ = conn.close().await;
            }
        });
    });
    let _ = dropping.join();
}

/// Checks an event's Ed25519 signature over its canonical bytes, independently of the
/// server's own check.
pub fn signature_valid(key: &VerifyingKey, signed: &SignedAuditEvent) -> bool {
    let Some(bytes) = from_hex(&signed.signature) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes) else {
        return false;
    };
    key.verify_strict(
        &signed.event.canonical_bytes(),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

/// Whether any of the files holds `needle` as plain bytes.
pub fn files_contain(paths: &[PathBuf], needle: &str) -> Option<PathBuf> {
    paths
        .iter()
        .find(|p| {
            std::fs::read(p)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .cloned()
}

/// Checks every device chain the server holds, independently of the server: sequence
/// numbers run 1..=n without a gap or a repeat, each event links to the hash of the one
/// before, each signature verifies with the enrolled key, and no event id appears twice.
/// Returns the number of events per device.
pub fn verify_chains(server: &ServerProcess) -> std::collections::HashMap<Uuid, u64> {
    let keys: std::collections::HashMap<Uuid, VerifyingKey> =
        server.devices().into_iter().collect();
    let mut counts = std::collections::HashMap::new();
    let mut tips: std::collections::HashMap<Uuid, clinicdesk_protocol::audit::Hash32> =
        std::collections::HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for signed in server.audit_events() {
        let e = &signed.event;
        assert!(ids.insert(e.id), "event stored twice");
        let n = counts.entry(e.device_id).or_insert(0u64);
        *n += 1;
        assert_eq!(e.device_seq, *n, "gap or repeat in a device chain");
        let prev = tips
            .get(&e.device_id)
            .copied()
            .unwrap_or(clinicdesk_protocol::audit::Hash32::GENESIS);
        assert_eq!(e.prev_hash, prev, "broken link in a device chain");
        assert!(
            signature_valid(&keys[&e.device_id], &signed),
            "bad signature in a device chain"
        );
        tips.insert(e.device_id, e.hash());
    }
    // The server's own chain (PHI responses) is checked by `audit verify` with its key.
    let report = server.audit_verify();
    let total = counts.values().sum::<u64>() + server.server_events().len() as u64;
    assert!(
        report.contains(&format!(" {total} event(s)")),
        "the log does not hold every stored event: {report}"
    );
    counts
}

/// The app core's configuration for a test: its own data directory and keychain service,
/// enrolling with `server`; `idle` lowers the clinic's idle lock.
pub fn app_config(
    server: &ServerProcess,
    data_dir: &Path,
    idle: Option<std::time::Duration>,
) -> clinicdesk_app::config::Config {
    clinicdesk_app::config::Config {
        data_dir: data_dir.to_path_buf(),
        server_url: server.url.clone(),
        enrollment_ca: Some(server.ca_path()),
        idle_override: idle,
        keychain_service: format!("ClinicDesk-test-{}", Uuid::new_v4()),
        upload_interval: std::time::Duration::from_millis(200),
    }
}

/// A core on the system clock with its own data directory, enrolled with `server` as
/// workstation `name`.
pub async fn enrolled_core(
    server: &ServerProcess,
    data_dir: &Path,
    name: &str,
) -> std::sync::Arc<Core> {
    let core = std::sync::Arc::new(
        Core::new(
            app_config(server, data_dir, None),
            clinicdesk_app::os::clock::system(),
        )
        .unwrap(),
    );
    core.enroll(&server.seed.enrollment_code, name)
        .await
        .unwrap();
    core
}

/// The code the UI would receive for an app error.
pub fn code_of(e: clinicdesk_app::AppError) -> clinicdesk_protocol::ErrorCode {
    e.to_api().code
}

/// The `outbox-torture` process (the app core without a webview, for the kill tests) on
/// `data_dir` with `keychain_service`, talking to `server`; its stdout is piped.
pub fn torture(
    server: &ServerProcess,
    data_dir: &Path,
    keychain_service: &str,
) -> std::process::Command {
    let mut cmd = Command::new(bin_dir().join("outbox-torture"));
    cmd.env("CLINICDESK_DATA_DIR", data_dir)
        .env("CLINICDESK_SERVER_URL", &server.url)
        .env("CLINICDESK_SERVER_CA", server.ca_path())
        .env("CLINICDESK_KEYCHAIN_SERVICE", keychain_service)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped());
    cmd
}

/// A random duration in `0..max_ms` milliseconds.
pub fn random_ms(max_ms: u64) -> std::time::Duration {
    let r = Uuid::new_v4().as_u128() as u64;
    std::time::Duration::from_millis(r % max_ms)
}

/// A tmpfs of its own for a test's files (`cargo xtask test` and CI run as root on these
/// machines, which may mount one), unmounted when dropped.
pub struct SmallDisk {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(mib: u64) -> SmallDisk {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs failed (this test needs root, as `cargo xtask test` and \
             CI run): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir,
            _parent: parent,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a ballast file until the filesystem refuses more; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("ballast");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
