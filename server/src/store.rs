//! The server's storage: SQLite under the data directory by default, PostgreSQL when the
//! operator gives a `postgres://` URL (several server instances on one database). One set
//! of queries serves both through sqlx's `Any` driver: placeholders are `$1`, `$2`, ...,
//! integers are 64-bit, flags are read with [`flag`]. The audit trail's tables are written
//! by `crate::audit`. Every method that touches clinic data takes a [`ClinicScope`], which
//! only the auth layer can build, so no query runs without a clinic.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{Appointment, ClinicalSummary, Patient, UserInfo};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row, Transaction};
use uuid::Uuid;

use crate::auth::ClinicScope;
use crate::error::ServerError;
use crate::sql::Script;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The role the server works as on PostgreSQL (see migrations/postgres/0001_schema.sql).
const SET_APP_ROLE: &str = "SET ROLE clinicdesk_app";

/// Live sessions a user may hold at once (two workstations); a third revokes the oldest.
pub const MAX_SESSIONS_PER_USER: i64 = 2;

/// Where the server keeps its data.
#[derive(Clone)]
pub enum StoreLocation {
    /// `clinicdesk.sqlite3` in the data directory: no service to run.
    Embedded(PathBuf),
    /// A PostgreSQL database (the URLs may carry passwords, so they are never printed).
    Postgres {
        /// What the server works through: best a login role that is only a member of
        /// `clinicdesk_app`, so no session can step back to the tables' owner.
        url: String,
        /// The schema owner's URL, for migrations; without it they run through `url`,
        /// which must then be the owner's.
        migration_url: Option<String>,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded(path) => f.debug_tuple("Embedded").field(path).finish(),
            Self::Postgres { .. } => f.write_str("Postgres(..)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnsupportedDatabaseUrl {
    #[error(
        "DATABASE_URL must be a postgres:// or postgresql:// URL (leave it unset for the embedded SQLite store)"
    )]
    NotPostgres,
    #[error(
        "DATABASE_MIGRATION_URL must be a postgres:// or postgresql:// URL, beside DATABASE_URL"
    )]
    Migration,
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl StoreLocation {
    /// The embedded store of a data directory.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::Embedded(data_dir.join("clinicdesk.sqlite3"))
    }

    /// A PostgreSQL database whose URL's role owns the schema (migrations run through it).
    pub fn postgres_as_owner(url: &str) -> Self {
        Self::Postgres {
            url: url.to_owned(),
            migration_url: None,
        }
    }

    /// PostgreSQL when `database_url` is given, else the data directory's SQLite file.
    pub fn choose(
        database_url: Option<&str>,
        migration_url: Option<&str>,
        data_dir: &Path,
    ) -> Result<Self, UnsupportedDatabaseUrl> {
        let migration_url = migration_url.filter(|u| !u.is_empty());
        match database_url.filter(|u| !u.is_empty()) {
            None if migration_url.is_some() => Err(UnsupportedDatabaseUrl::Migration),
            None => Ok(Self::in_data_dir(data_dir)),
            Some(url) if !is_postgres(url) => Err(UnsupportedDatabaseUrl::NotPostgres),
            Some(_) if migration_url.is_some_and(|m| !is_postgres(m)) => {
                Err(UnsupportedDatabaseUrl::Migration)
            }
            Some(url) => Ok(Self::Postgres {
                url: url.to_owned(),
                migration_url: migration_url.map(str::to_owned),
            }),
        }
    }
}

/// Which database a store runs on, for the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The database a connection of the store talks to.
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// On SQLite, writers of the busy paths take turns here (see [`Store::begin_write`]).
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction from [`Store::begin_write`]; derefs to its connection like a
/// `Transaction` does. Dropped uncommitted, it rolls back.
pub struct WriteTx {
    // Declared first, so it is dropped (rolled back) before the turn is given up.
    tx: Transaction<'static, Any>,
    backend: Backend,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Makes this transaction the only writer of the clinic's audit chains and log until it
    /// ends. On SQLite it already is (it began `IMMEDIATE`); on PostgreSQL this takes the
    /// clinic row's lock ([`crate::audit::log::lock_clinic`]).
    pub async fn lock_clinic(&mut self, clinic: Uuid) -> Result<(), ServerError> {
        match self.backend {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => crate::audit::log::lock_clinic(&mut self.tx, clinic).await,
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// A pooled SQLite connection that may be inside a transaction sqlx does not know of (one a
/// script began with its own `BEGIN`). Unless released once that transaction has ended,
/// dropping it (an error, a cancelled request) closes the connection instead of returning
/// it to the pool: SQLite then rolls the transaction back, and no later user of the pool
/// finds itself inside it.
struct OwnTransaction(Option<PoolConnection<Any>>);

impl OwnTransaction {
    /// Back to the pool: the transaction has ended.
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for OwnTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

/// A boolean expression's value: PostgreSQL answers a boolean, SQLite an integer.
pub(crate) fn flag(row: &AnyRow, index: usize) -> Result<bool, ServerError> {
    row.try_get::<bool, _>(index)
        .or_else(|_| row.try_get::<i64, _>(index).map(|v| v != 0))
        .map_err(|_| ServerError::Internal("stored flag malformed"))
}

/// A device as the server knows it.
#[derive(Debug, Clone)]
/// What a workstation leaves in escrow at enrollment.
pub struct Escrow {
    /// Its device secret sealed under the server's escrow key ([`crate::seal::SealKey`]).
    pub sealed_secret: String,
    /// Its recovery key's public half, lowercase hex.
    pub recovery_public_key: String,
}

pub struct DeviceRecord {
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub public_key: [u8; 32],
    pub revoked: bool,
}

/// A user's login record. The password hash never leaves the auth module.
#[derive(Clone)]
pub struct Credentials {
    pub info: UserInfo,
    pub password_hash: String,
    pub active: bool,
    /// The password was chosen by someone else: it works once, to choose one's own.
    pub must_change_password: bool,
    /// When a first password stops working (`None`: never).
    pub password_expires_at_ms: Option<i64>,
}

/// A live session looked up by token hash.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: UserInfo,
    pub device_id: Uuid,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub revoked: bool,
    pub device_revoked: bool,
    pub idle_timeout_secs: u64,
}

/// A synthetic patient as seeded.
pub struct NewPatient {
    pub id: Uuid,
    pub name: String,
    pub birth_date: String,
    /// The clinic's medical record number, unique within the clinic.
    pub mrn: String,
    pub phone: String,
    pub allergies: Vec<String>,
    pub problems: Vec<String>,
    pub medications: Vec<String>,
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, ServerError> {
    Uuid::from_str(s).map_err(|_| ServerError::Internal("stored id is not a uuid"))
}

pub(crate) fn parse_role(s: &str) -> Result<Role, ServerError> {
    Role::parse(s).ok_or(ServerError::Internal("stored role unknown"))
}

impl Store {
    /// Opens the store (creating an embedded one if needed) and brings its schema up to date.
    pub async fn open(location: &StoreLocation) -> Result<Self, ServerError> {
        sqlx::any::install_default_drivers();
        match location {
            StoreLocation::Embedded(file) => Self::open_sqlite(file).await,
            StoreLocation::Postgres { url, migration_url } => {
                Self::open_postgres(url, migration_url.as_deref()).await
            }
        }
    }

    async fn open_sqlite(file: &Path) -> Result<Self, ServerError> {
        let url = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .to_url_lossy();
        // Streaming reads (the verifier walks millions of rows) are slow by design; the
        // slow-statement warning would only alarm operators.
        let options = AnyConnectOptions::from_url(&url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        SQLITE_MIGRATOR
            .run(&pool)
            .await
            .map_err(|_| ServerError::Internal("migration failed"))?;
        Ok(Self {
            pool,
            backend: Backend::Sqlite,
            writer: Arc::default(),
        })
    }

    async fn open_postgres(url: &str, migration_url: Option<&str>) -> Result<Self, ServerError> {
        let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        // Migrations run as the schema owner, on a connection of their own.
        let owner_options = match migration_url {
            Some(m) => AnyConnectOptions::from_str(m)?.disable_statement_logging(),
            None => options.clone(),
        };
        let mut owner = AnyConnection::connect_with(&owner_options).await?;
        POSTGRES_MIGRATOR.run(&mut owner).await.map_err(|_| {
            ServerError::Internal(if migration_url.is_some() {
                "migration failed"
            } else {
                "migration failed: if DATABASE_URL's role is not the schema owner, give the owner's URL as DATABASE_MIGRATION_URL"
            })
        })?;
        owner.close().await?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SET_APP_ROLE).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Self {
            pool,
            backend: Backend::Postgres,
            writer: Arc::default(),
        };
        if store.owner_reachable().await? {
            tracing::warn!(
                "the server's database role can act as the schema owner: a session could RESET ROLE \
                 past the audit trail's insert-only grants and row-level security. Give DATABASE_URL \
                 a login role that is only a member of clinicdesk_app, and the owner's URL as \
                 DATABASE_MIGRATION_URL (see the README)"
            );
        }
        Ok(store)
    }

    /// Whether the role the server logs in as could act as the owner of the audit tables
    /// (it is the owner, a member of it, or a superuser) by leaving `clinicdesk_app` with
    /// `RESET ROLE`. Always false on SQLite, which has no roles (its triggers guard the trail).
    pub async fn owner_reachable(&self) -> Result<bool, ServerError> {
        if self.backend != Backend::Postgres {
            return Ok(false);
        }
        let reachable: Option<bool> = sqlx::query_scalar(
            "SELECT pg_has_role(session_user, tableowner, 'USAGE') FROM pg_tables
             WHERE schemaname = current_schema() AND tablename = 'audit_events'",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(reachable.unwrap_or(true))
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction for one of the busy write paths (audit uploads, the server's audit
    /// events, provisioning). SQLite lets one writer at a time, and a writer that finds the
    /// file locked sleeps in growing steps (up to 100 ms) before it looks again, so under
    /// load most of the time went to sleeping; here they queue in this process instead,
    /// first come first served. PostgreSQL needs no turn (row locks order writers there).
    ///
    /// On SQLite the transaction begins `IMMEDIATE`: it holds the file's write lock from
    /// its first statement, so other processes' writers (a `seed` beside the server) wait
    /// for it in the busy handler, and nothing it reads can go stale before it writes.
    pub async fn begin_write(&self) -> Result<WriteTx, ServerError> {
        let (turn, tx) = match self.backend {
            Backend::Sqlite => (
                Some(Arc::clone(&self.writer).lock_owned().await),
                self.pool.begin_with("BEGIN IMMEDIATE").await?,
            ),
            Backend::Postgres => (None, self.pool.begin().await?),
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
            _turn: turn,
        })
    }

    /// Runs `script` as one transaction that holds the clinic's audit lock, for a write
    /// that needs nothing read first (a server event written from a known tip). On SQLite,
    /// in the write turn and in one round through the driver: `BEGIN IMMEDIATE`, the
    /// statements and `COMMIT` as one text, where a transaction begun and committed by
    /// `Transaction` costs two rounds more. On PostgreSQL, in a transaction that first
    /// takes the clinic row's lock.
    pub(crate) async fn write_locked(
        &self,
        clinic: Uuid,
        script: Script,
    ) -> Result<(), ServerError> {
        match self.backend {
            Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                tx.lock_clinic(clinic).await?;
                script.execute(&mut tx).await?;
                tx.commit().await?;
            }
            Backend::Sqlite => {
                let _turn = self.writer.lock().await;
                let mut own = OwnTransaction(Some(self.pool.acquire().await?));
                let Some(conn) = own.0.as_mut() else {
                    return Err(ServerError::Internal("connection missing"));
                };
                if let Err(e) = script.in_transaction("BEGIN IMMEDIATE").execute(conn).await {
                    // A statement failed and the transaction is still open: end it here, or
                    // (if even that fails) let the guard close the connection.
                    if sqlx::query("ROLLBACK").execute(&mut **conn).await.is_ok() {
                        own.release();
                    }
                    return Err(e.into());
                }
                own.release();
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction in which row-level security (on PostgreSQL) shows only the scope's
    /// clinic. Every read or write of clinical rows goes through one.
    pub async fn clinic_tx(
        &self,
        scope: &ClinicScope,
    ) -> Result<Transaction<'static, Any>, ServerError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('clinicdesk.clinic_id', $1, true)")
                .bind(scope.clinic_id().to_string())
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    // --- clinics, users, enrollment (provisioning; not tenant-scoped by a session) ---

    pub async fn create_clinic(
        &self,
        id: Uuid,
        name: &str,
        idle_timeout_secs: u64,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO clinics (id, name, idle_timeout_secs, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(i64::try_from(idle_timeout_secs).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn clinic_name(&self, clinic_id: Uuid) -> Result<Option<String>, ServerError> {
        let row = sqlx::query("SELECT name FROM clinics WHERE id = $1")
            .bind(clinic_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    pub async fn upsert_user(
        &self,
        clinic_id: Uuid,
        username: &str,
        display_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<Uuid, ServerError> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (id, clinic_id, username, display_name, role, password_hash)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (clinic_id, username) DO UPDATE SET
               display_name = excluded.display_name, role = excluded.role,
               password_hash = excluded.password_hash",
        )
        .bind(id.to_string())
        .bind(clinic_id.to_string())
        .bind(username)
        .bind(display_name)
        .bind(role.as_str())
        .bind(password_hash)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM users WHERE clinic_id = $1 AND username = $2")
            .bind(clinic_id.to_string())
            .bind(username)
            .fetch_one(&self.pool)
            .await?;
        parse_uuid(&row.get::<String, _>(0))
    }

    /// Stores a code's hash; `issued_by` is the admin who asked for it (none from the
    /// operator's console).
    pub async fn insert_enrollment_code(
        &self,
        clinic_id: Uuid,
        code_hash: &str,
        expires_at_ms: i64,
        issued_by: Option<Uuid>,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO enrollment_codes (code_hash, clinic_id, expires_at_ms, issued_by)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(code_hash)
        .bind(clinic_id.to_string())
        .bind(expires_at_ms)
        .bind(issued_by.map(|u| u.to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the code used and registers the device in the caller's transaction; `None` if
    /// the code is unknown, used or expired. Answers the clinic and who issued the code
    /// (`None`: the operator's console).
    #[allow(clippy::too_many_arguments)]
    pub async fn enroll_device(
        tx: &mut AnyConnection,
        code_hash: &str,
        device_id: Uuid,
        name: &str,
        public_key_hex: &str,
        escrow: &Escrow,
        now_ms: i64,
    ) -> Result<Option<(Uuid, Option<Uuid>)>, ServerError> {
        let claimed = sqlx::query(
            "UPDATE enrollment_codes SET used_at_ms = $1
             WHERE code_hash = $2 AND used_at_ms IS NULL AND expires_at_ms > $3
             RETURNING clinic_id, issued_by",
        )
        .bind(now_ms)
        .bind(code_hash)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = claimed else {
            return Ok(None);
        };
        let clinic_id = parse_uuid(&row.get::<String, _>(0))?;
        let issued_by: Option<String> = row.get(1);
        let issuer = issued_by.as_deref().map(parse_uuid).transpose()?;
        let inserted = sqlx::query(
            "INSERT INTO devices (id, clinic_id, name, public_key, enrolled_at_ms, enrolled_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(device_id.to_string())
        .bind(clinic_id.to_string())
        .bind(name)
        .bind(public_key_hex)
        .bind(now_ms)
        .bind(issued_by)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ServerError::Conflict {
                    field: "public_key",
                });
            }
            Err(e) => return Err(e.into()),
        }
        let escrowed = sqlx::query(
            "INSERT INTO device_escrow (device_id, clinic_id, sealed_secret, recovery_public_key)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(device_id.to_string())
        .bind(clinic_id.to_string())
        .bind(&escrow.sealed_secret)
        .bind(&escrow.recovery_public_key)
        .execute(&mut *tx)
        .await;
        match escrowed {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ServerError::Conflict {
                    field: "recovery_public_key",
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Some((clinic_id, issuer)))
    }

    /// The public recovery key of a workstation (before any session: login proofs).
    pub async fn recovery_key(&self, device_id: Uuid) -> Result<Option<[u8; 32]>, ServerError> {
        let hex: Option<String> = sqlx::query_scalar(
            "SELECT recovery_public_key FROM device_escrow WHERE device_id = $1",
        )
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        hex.map(|h| {
            clinicdesk_protocol::audit::from_hex(&h)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(ServerError::Internal("stored recovery key malformed"))
        })
        .transpose()
    }

    /// A workstation's sealed device secret, if the clinic holds one for it.
    pub async fn sealed_device_secret(
        &self,
        scope: &ClinicScope,
        device_id: Uuid,
    ) -> Result<Option<String>, ServerError> {
        Ok(sqlx::query_scalar(
            "SELECT sealed_secret FROM device_escrow WHERE device_id = $1 AND clinic_id = $2",
        )
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A user's role, for recording what they did.
    pub async fn user_role(&self, user_id: Uuid) -> Result<Option<Role>, ServerError> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        role.as_deref().map(parse_role).transpose()
    }

    pub async fn device(&self, device_id: Uuid) -> Result<Option<DeviceRecord>, ServerError> {
        let row = sqlx::query(
            "SELECT clinic_id, public_key, revoked_at_ms IS NOT NULL FROM devices
             WHERE id = $1 AND kind = 'workstation'",
        )
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key_hex: String = row.get(1);
        let public_key = clinicdesk_protocol::audit::from_hex(&key_hex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(ServerError::Internal("stored device key malformed"))?;
        Ok(Some(DeviceRecord {
            id: device_id,
            clinic_id: parse_uuid(&row.get::<String, _>(0))?,
            public_key,
            revoked: flag(&row, 2)?,
        }))
    }

    pub async fn insert_nonce(
        &self,
        nonce: &str,
        device_id: Uuid,
        expires_at_ms: i64,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO login_nonces (nonce, device_id, expires_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(nonce)
        .bind(device_id.to_string())
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Consumes a nonce issued to this device; true if it existed and had not expired.
    pub async fn take_nonce(
        &self,
        nonce: &str,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<bool, ServerError> {
        let row = sqlx::query(
            "DELETE FROM login_nonces WHERE nonce = $1 AND device_id = $2 RETURNING expires_at_ms",
        )
        .bind(nonce)
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) > now_ms))
    }

    pub async fn credentials(
        &self,
        clinic_id: Uuid,
        username: &str,
    ) -> Result<Option<Credentials>, ServerError> {
        let row = sqlx::query(
            "SELECT id, display_name, role, password_hash, active, must_change_password,
                    password_expires_at_ms
             FROM users WHERE clinic_id = $1 AND username = $2",
        )
        .bind(clinic_id.to_string())
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credentials {
            info: UserInfo {
                user_id: parse_uuid(&row.get::<String, _>(0))?,
                username: username.to_owned(),
                display_name: row.get(1),
                role: parse_role(&row.get::<String, _>(2))?,
                clinic_id,
            },
            password_hash: row.get(3),
            active: flag(&row, 4)?,
            must_change_password: flag(&row, 5)?,
            password_expires_at_ms: row.get(6),
        }))
    }

    /// The clinic's lock policy: (idle timeout, maximum time offline), in seconds.
    pub async fn lock_policy(&self, clinic_id: Uuid) -> Result<(u64, u64), ServerError> {
        let row =
            sqlx::query("SELECT idle_timeout_secs, max_offline_secs FROM clinics WHERE id = $1")
                .bind(clinic_id.to_string())
                .fetch_one(&self.pool)
                .await?;
        let secs = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
        Ok((secs(0), secs(1)))
    }

    /// Revokes a device of the scope's clinic and every session opened from it. Returns
    /// false when the clinic has no such device (another clinic's device included).
    pub async fn revoke_device(
        &self,
        scope: &ClinicScope,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<bool, ServerError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE devices SET revoked_at_ms = coalesce(revoked_at_ms, $1)
             WHERE id = $2 AND clinic_id = $3 AND kind = 'workstation'",
        )
        .bind(now_ms)
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1 WHERE device_id = $2 AND clinic_id = $3
             AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(&mut *tx)
        .await?;
        // Crypto-shredding on the server's side too: nobody can recover the device secret
        // of a revoked workstation, so its caches and outbox stay closed for good.
        sqlx::query("DELETE FROM device_escrow WHERE device_id = $1 AND clinic_id = $2")
            .bind(device_id.to_string())
            .bind(scope.clinic_id().to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(found)
    }

    // --- sessions ---

    pub async fn insert_session(
        &self,
        token_hash: &str,
        user: &UserInfo,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, clinic_id, device_id, created_at_ms, last_seen_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user.user_id.to_string())
        .bind(user.clinic_id.to_string())
        .bind(device_id.to_string())
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        // At most MAX_SESSIONS_PER_USER live sessions: the oldest go. Sessions opened in the
        // same millisecond are ordered by insertion (SQLite's rowid, PostgreSQL's seq).
        let insertion = match self.backend {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "seq",
        };
        // The only text spliced in is one of the two column names above.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sessions SET revoked_at_ms = $1
             WHERE user_id = $2 AND revoked_at_ms IS NULL AND token_hash NOT IN (
                 SELECT token_hash FROM sessions WHERE user_id = $2 AND revoked_at_ms IS NULL
                 ORDER BY created_at_ms DESC, {insertion} DESC LIMIT $3)"
        )))
        .bind(now_ms)
        .bind(user.user_id.to_string())
        .bind(MAX_SESSIONS_PER_USER)
        .execute(&self.pool)
        .await?;
        sqlx::query("UPDATE devices SET last_seen_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(device_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, ServerError> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, s.clinic_id, s.device_id,
                    s.created_at_ms, s.last_seen_at_ms, s.revoked_at_ms IS NOT NULL OR u.active = 0,
                    d.revoked_at_ms IS NOT NULL, c.idle_timeout_secs
             FROM sessions s
             JOIN users u ON u.id = s.user_id AND u.clinic_id = s.clinic_id
             JOIN devices d ON d.id = s.device_id AND d.clinic_id = s.clinic_id
             JOIN clinics c ON c.id = s.clinic_id
             WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            user: UserInfo {
                user_id: parse_uuid(&row.get::<String, _>(0))?,
                username: row.get(1),
                display_name: row.get(2),
                role: parse_role(&row.get::<String, _>(3))?,
                clinic_id: parse_uuid(&row.get::<String, _>(4))?,
            },
            device_id: parse_uuid(&row.get::<String, _>(5))?,
            created_at_ms: row.get(6),
            last_seen_at_ms: row.get(7),
            revoked: flag(&row, 8)?,
            device_revoked: flag(&row, 9)?,
            idle_timeout_secs: u64::try_from(row.get::<i64, _>(10)).unwrap_or(0),
        }))
    }

    pub async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> Result<(), ServerError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1 WHERE token_hash = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- clinic data: always through a ClinicScope ---

    pub async fn insert_patient(
        &self,
        scope: &ClinicScope,
        p: &NewPatient,
    ) -> Result<(), ServerError> {
        let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let mut tx = self.clinic_tx(scope).await?;
        sqlx::query(
            "INSERT INTO patients (id, clinic_id, name, birth_date, mrn, phone, allergies, problems,
                 medications)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(p.id.to_string())
        .bind(scope.clinic_id().to_string())
        .bind(&p.name)
        .bind(&p.birth_date)
        .bind(&p.mrn)
        .bind(&p.phone)
        .bind(list(&p.allergies))
        .bind(list(&p.problems))
        .bind(list(&p.medications))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_appointment(
        &self,
        scope: &ClinicScope,
        patient_id: Uuid,
        starts_at_ms: i64,
        reason: &str,
    ) -> Result<(), ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        sqlx::query(
            "INSERT INTO appointments (id, clinic_id, patient_id, starts_at_ms, reason)
             SELECT $1, $2, id, $3, $4 FROM patients WHERE id = $5 AND clinic_id = $6",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(scope.clinic_id().to_string())
        .bind(starts_at_ms)
        .bind(reason)
        .bind(patient_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appointments of the scope's clinic in `[from_ms, to_ms)`, earliest first.
    pub async fn appointments(
        &self,
        scope: &ClinicScope,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(Appointment, i64)>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let rows = sqlx::query(
            "SELECT a.id, a.patient_id, a.starts_at_ms, p.name, a.reason
             FROM appointments a JOIN patients p ON p.id = a.patient_id AND p.clinic_id = a.clinic_id
             WHERE a.clinic_id = $1 AND a.starts_at_ms >= $2 AND a.starts_at_ms < $3
             ORDER BY a.starts_at_ms, a.id",
        )
        .bind(scope.clinic_id().to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|row| {
                let starts_at_ms: i64 = row.get(2);
                Ok((
                    Appointment {
                        id: parse_uuid(&row.get::<String, _>(0))?,
                        patient_id: parse_uuid(&row.get::<String, _>(1))?,
                        starts_at: String::new(),
                        patient_name: Phi::new(row.get(3)),
                        reason: Phi::new(row.get(4)),
                    },
                    starts_at_ms,
                ))
            })
            .collect()
    }

    /// A patient of the scope's clinic; another clinic's patient is `None`, exactly like
    /// one that does not exist.
    pub async fn patient(
        &self,
        scope: &ClinicScope,
        patient_id: Uuid,
        with_clinical: bool,
    ) -> Result<Option<Patient>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let row = sqlx::query(
            "SELECT name, birth_date, phone, allergies, problems, medications, mrn
             FROM patients WHERE id = $1 AND clinic_id = $2",
        )
        .bind(patient_id.to_string())
        .bind(scope.clinic_id().to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(None) };
        let list = |i: usize| -> Result<Phi<Vec<String>>, ServerError> {
            serde_json::from_str(&row.get::<String, _>(i))
                .map(Phi::new)
                .map_err(|_| ServerError::Internal("stored list malformed"))
        };
        let clinical = if with_clinical {
            Some(ClinicalSummary {
                allergies: list(3)?,
                problems: list(4)?,
                medications: list(5)?,
            })
        } else {
            None
        };
        Ok(Some(Patient {
            id: patient_id,
            name: Phi::new(row.get(0)),
            birth_date: Phi::new(row.get(1)),
            mrn: Phi::new(row.get(6)),
            phone: Phi::new(row.get(2)),
            clinical,
            clinical_access: Default::default(),
            break_glass: None,
        }))
    }

    /// The ids of the scope's patients, in id order (no content is read).
    pub async fn patient_ids(&self, scope: &ClinicScope) -> Result<Vec<Uuid>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 ORDER BY id")
                .bind(scope.clinic_id().to_string())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        ids.iter().map(|s| parse_uuid(s)).collect()
    }

    /// Whether `user_id` is a user of the scope's clinic.
    /// Whether the patient is one of the clinic's (no content is read).
    pub async fn is_clinic_patient(
        &self,
        scope: &ClinicScope,
        patient_id: Uuid,
    ) -> Result<bool, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let row = sqlx::query("SELECT 1 FROM patients WHERE id = $1 AND clinic_id = $2")
            .bind(patient_id.to_string())
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.is_some())
    }

    pub async fn is_clinic_user(
        &self,
        scope: &ClinicScope,
        user_id: Uuid,
    ) -> Result<bool, ServerError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND clinic_id = $2")
            .bind(user_id.to_string())
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Connection;

    use super::*;

    fn patient(name: &str) -> NewPatient {
        NewPatient {
            id: Uuid::now_v7(),
            name: name.into(),
            birth_date: "1970-01-01".into(),
            mrn: format!("MRN-{name}"),
            phone: "555-0100".into(),
            allergies: vec![],
            problems: vec![],
            medications: vec![],
        }
    }

    fn insert_statement(a: i64) -> crate::sql::Statement {
        let mut st = crate::sql::Statement::new("INSERT INTO scratch (a) VALUES (");
        st.bind(a).push(")");
        st
    }

    fn insert(a: i64) -> Script {
        let mut script = Script::default();
        script.push(insert_statement(a));
        script
    }

    /// Inserts 2, then 1 again: the second statement fails on the key (1 is stored first).
    fn failing() -> Script {
        let mut script = insert(2);
        script.push(insert_statement(1));
        script
    }

    async fn scratch_store(dir: &std::path::Path) -> Store {
        let store = Store::open(&StoreLocation::Embedded(dir.join("t.db")))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE scratch (a INTEGER PRIMARY KEY)")
            .execute(store.pool())
            .await
            .unwrap();
        store
    }

    async fn stored(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT a FROM scratch ORDER BY a")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    /// A transaction that a script begins itself (`write_locked` on SQLite) is all or
    /// nothing, and neither a failed statement nor a request dropped at any point leaves a
    /// pooled connection inside it: every later write still gets the write lock at once.
    #[tokio::test]
    async fn a_scripts_own_transaction_is_whole_and_never_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = scratch_store(dir.path()).await;
        let clinic = Uuid::from_u128(1);
        store.write_locked(clinic, insert(1)).await.unwrap();
        // The second statement fails on the key: the first is rolled back with it.
        assert!(store.write_locked(clinic, failing()).await.is_err());
        assert_eq!(stored(&store).await, [1]);

        // Failing scripts dropped after ever longer waits: some before they start, some in
        // their rollback, some after. A connection left inside its transaction would hold
        // the write lock, and the writes below would wait out the busy timeout and fail.
        for wait_us in (0..300).map(|i| i * 3) {
            let _ = tokio::time::timeout(
                std::time::Duration::from_micros(wait_us),
                store.write_locked(clinic, failing()),
            )
            .await;
        }
        for a in 10..26 {
            store.write_locked(clinic, insert(a)).await.unwrap();
        }
        let mut expected = vec![1];
        expected.extend(10..26);
        assert_eq!(stored(&store).await, expected);
    }

    /// The guard itself, at the moment the test above can only hit by chance: a connection
    /// dropped while inside a transaction of its own is closed, not pooled again, so the
    /// write lock that transaction held is gone and no later user finds itself inside it.
    #[tokio::test]
    async fn a_connection_dropped_inside_its_own_transaction_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = scratch_store(dir.path()).await;
        let mut own = OwnTransaction(Some(store.pool().acquire().await.unwrap()));
        let conn = own.0.as_mut().unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut **conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO scratch (a) VALUES (7)")
            .execute(&mut **conn)
            .await
            .unwrap();
        drop(own);
        // Pooled again, it would still hold the write lock (these would fail with "database
        // is locked" after the busy timeout) or be handed out inside its transaction ("cannot
        // start a transaction within a transaction").
        for a in 10..20 {
            store
                .write_locked(Uuid::from_u128(1), insert(a))
                .await
                .unwrap();
        }
        assert_eq!(stored(&store).await, (10..20).collect::<Vec<_>>());
    }

    /// The second wall: on PostgreSQL a query that forgets its clinic filter still sees only
    /// the clinic its scope named, and cannot write another clinic's row. Needs the
    /// PostgreSQL leg of `cargo xtask test` (SQLite has no row-level security; there the
    /// scoped methods' own filters are the only wall, which the authorization matrix tests).
    #[tokio::test]
    async fn row_level_security_confines_an_unfiltered_query_to_the_scopes_clinic() {
        let Ok(admin) = std::env::var("CLINICDESK_TEST_POSTGRES_URL") else {
            eprintln!("no CLINICDESK_TEST_POSTGRES_URL: this test runs on the PostgreSQL leg");
            return;
        };
        let name = format!("clinicdesk_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let (server, _) = admin.rsplit_once('/').unwrap();
        let store = Store::open(&StoreLocation::postgres_as_owner(&format!(
            "{server}/{name}"
        )))
        .await
        .unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        let (a, b) = (Uuid::from_u128(0xA), Uuid::from_u128(0xB));
        for clinic in [a, b] {
            store.create_clinic(clinic, "Clinic", 900, 0).await.unwrap();
            let scope = ClinicScope::provisioning(clinic);
            for i in 0..3 {
                store
                    .insert_patient(&scope, &patient(&format!("Synthetic {i}")))
                    .await
                    .unwrap();
            }
        }

        let mut tx = store
            .clinic_tx(&ClinicScope::provisioning(a))
            .await
            .unwrap();
        let seen: Vec<String> = sqlx::query_scalar("SELECT clinic_id FROM patients")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(seen, vec![a.to_string(); 3], "only clinic A's rows");
        let changed = sqlx::query("UPDATE patients SET phone = 'x' WHERE clinic_id = $1")
            .bind(b.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            changed.rows_affected(),
            0,
            "B's rows are not there to change"
        );
        let smuggled = sqlx::query(
            "INSERT INTO patients (id, clinic_id, name, birth_date, phone, allergies, problems, medications)
             VALUES ($1, $2, 'x', 'x', 'x', '[]', '[]', '[]')",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(b.to_string())
        .execute(&mut *tx)
        .await;
        assert!(
            smuggled
                .unwrap_err()
                .to_string()
                .contains("row-level security"),
            "a row for another clinic is refused"
        );
        drop(tx);

        // Outside any scope the role sees no clinical row at all.
        let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM patients")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(unscoped, 0);
        // While the database owner sees all six: the rows are there, the wall hides them.
        let mut owner = sqlx::PgConnection::connect(&format!("{server}/{name}"))
            .await
            .unwrap();
        let all: i64 = sqlx::query_scalar("SELECT count(*) FROM patients")
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert_eq!(all, 6);
    }
}
