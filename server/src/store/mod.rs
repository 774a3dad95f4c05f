//! The server's storage: SQLite under the data directory by default, PostgreSQL when the
//! operator gives a `postgres://` URL (several server instances on one database). One set
//! of queries serves both through sqlx's `Any` driver: placeholders are `$1`, `$2`, ...,
//! integers are 64-bit, flags are read with [`flag`]. The audit trail's statements are in
//! [`audit_log`] and [`audit_events`]; `crate::audit` decides what they write and when.
//! Every method that touches clinic data takes a [`ClinicScope`], which
//! only the auth layer can build, so no query runs without a clinic.
//!
//! Must not import `crate::http` or any domain module: it imports only `error`, `scope`,
//! `time` and itself, so it holds no rule about content (`cargo xtask tidy`,
//! `store-imports`). Nothing outside it writes SQL, and nothing gets its pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{Appointment, ClinicalSummary, Patient, UserInfo};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row, Transaction};
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use sql::Script;

pub mod at_rest;
pub mod audit_events;
pub mod audit_log;
pub mod audit_query;
pub mod audit_verify;
pub mod bookings;
pub mod break_glass;
pub mod capacity;
pub mod care_team;
pub mod clinics;
pub mod coverages;
pub mod devices;
pub mod directory;
pub mod enrollment;
pub mod field_keys;
pub mod import_jobs;
pub mod mfa;
pub mod offline_copies;
pub mod operators;
pub mod patients;
pub mod postgres_tls;
pub mod private_files;
pub mod provisionings;
pub mod records;
pub mod sessions;
pub mod sql;
pub mod synthetic;
pub mod throttle;
pub mod tx;
pub mod users;
pub mod working_hours;

pub use at_rest::{DatabaseKey, EmbeddedFile};
pub use audit_events::{Alert, EventRow, Evidence, Written};
pub use audit_log::NodeRows;
pub use clinics::NewClinic;
pub use devices::{DeviceRecord, Escrow};
pub use enrollment::RedeemedCode;
pub use patients::NewPatient;
pub use sessions::SessionRecord;
pub use sessions::SignIn;
pub use tx::{ClinicTx, WriteTx};
pub use users::Credentials;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The role the server works as on PostgreSQL (see migrations/postgres/0001_schema.sql).
const SET_APP_ROLE: &str = "SET ROLE clinicdesk_app";

/// Live sessions a user may hold at once (two workstations); a third revokes the oldest.
pub const MAX_SESSIONS_PER_USER: i64 = 2;

/// Where the server keeps its data.
#[derive(Clone)]
pub enum StoreLocation {
    /// `clinicdesk.sqlite3` in the data directory, encrypted under its key: no service to run.
    Embedded(EmbeddedFile),
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
            Self::Embedded(file) => f.debug_tuple("Embedded").field(&file.path).finish(),
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

/// The embedded store's file in a data directory.
pub const EMBEDDED_FILE: &str = "clinicdesk.sqlite3";

impl StoreLocation {
    /// The embedded store of a data directory, under its key.
    pub fn in_data_dir(data_dir: &Path, key: DatabaseKey) -> Self {
        Self::Embedded(EmbeddedFile {
            path: data_dir.join(EMBEDDED_FILE),
            key,
        })
    }

    /// A PostgreSQL database whose URL's role owns the schema (migrations run through it).
    pub fn postgres_as_owner(url: &str) -> Self {
        Self::Postgres {
            url: url.to_owned(),
            migration_url: None,
        }
    }

    /// PostgreSQL when `database_url` is given; `None` means the data directory's embedded
    /// store (whose key the caller brings).
    pub fn postgres(
        database_url: Option<&str>,
        migration_url: Option<&str>,
    ) -> Result<Option<Self>, UnsupportedDatabaseUrl> {
        let migration_url = migration_url.filter(|u| !u.is_empty());
        match database_url.filter(|u| !u.is_empty()) {
            None if migration_url.is_some() => Err(UnsupportedDatabaseUrl::Migration),
            None => Ok(None),
            Some(url) if !is_postgres(url) => Err(UnsupportedDatabaseUrl::NotPostgres),
            Some(_) if migration_url.is_some_and(|m| !is_postgres(m)) => {
                Err(UnsupportedDatabaseUrl::Migration)
            }
            Some(url) => Ok(Some(Self::Postgres {
                url: url.to_owned(),
                migration_url: migration_url.map(str::to_owned),
            })),
        }
    }
}

/// The database settings of one invocation (`--database-url`, `--migration-database-url`):
/// none means the data directory's embedded SQLite file. The URLs may carry passwords, so
/// they are never printed.
#[derive(Clone, Default)]
pub struct DatabaseUrls {
    url: Option<String>,
    migration_url: Option<String>,
}

impl std::fmt::Debug for DatabaseUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrls(..)")
    }
}

impl DatabaseUrls {
    pub fn new(url: Option<String>, migration_url: Option<String>) -> Self {
        Self { url, migration_url }
    }

    /// The PostgreSQL database these settings name, or `None` for the data directory's
    /// embedded store.
    pub fn postgres(&self) -> Result<Option<StoreLocation>, UnsupportedDatabaseUrl> {
        StoreLocation::postgres(self.url.as_deref(), self.migration_url.as_deref())
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
    /// The one place in the queue for a clinic's audit lock that background writes take
    /// turns for (see [`Store::begin_background_write`]).
    background: Arc<BackgroundLines>,
    /// Closes the pool when the last clone of the store goes.
    _closer: Arc<CloseOnDrop>,
}

/// Where background writes wait, one line per lock they wait for: on SQLite one for all
/// clinics (the write turn), on PostgreSQL one per clinic (its row). A line is kept once
/// made: one small entry per clinic this instance has taken uploads for.
#[derive(Debug, Default)]
struct BackgroundLines(
    std::sync::Mutex<std::collections::HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
);

impl BackgroundLines {
    fn of(&self, key: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(lines.entry(key).or_default())
    }
}

/// Closes the store's pool, and waits, when the last clone of the [`Store`] goes
/// ([`at_rest::close_and_wait`] says why). Nothing holds a connection by then (each is taken
/// by a method of the store, which borrows it), so the wait is only for the idle ones.
#[derive(Debug)]
struct CloseOnDrop(AnyPool);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        at_rest::close_and_wait(self.0.clone());
    }
}

impl Store {
    fn new(pool: AnyPool, backend: Backend) -> Self {
        Self {
            _closer: Arc::new(CloseOnDrop(pool.clone())),
            pool,
            backend,
            writer: Arc::default(),
            background: Arc::default(),
        }
    }
}

/// Whether a pooled connection may be handed out again: not if sqlx still counts it inside a
/// transaction (checked after the pool's ping, so a rollback queued when its transaction was
/// dropped has run). A write that failed for lack of space can leave it so: SQLite rolls the
/// transaction back itself, the driver's own `ROLLBACK` then fails and its count stays at one,
/// and the connection's next `BEGIN IMMEDIATE` would fail (`storage_full`'s test found it).
/// Such a connection is closed, and the pool opens a fresh one.
fn settled(conn: &mut sqlx::AnyConnection) -> bool {
    use sqlx::Connection;
    !conn.is_in_transaction()
}

/// A boolean expression's value: PostgreSQL answers a boolean, SQLite an integer.
pub(crate) fn flag(row: &AnyRow, index: usize) -> Result<bool, ServerError> {
    row.try_get::<bool, _>(index)
        .or_else(|_| row.try_get::<i64, _>(index).map(|v| v != 0))
        .map_err(|_| ServerError::Internal("stored flag malformed"))
}

/// A unique key clash on an insert, as `conflict` on `field`; any other error as it is.
pub(crate) fn conflict_if_unique(field: &'static str) -> impl Fn(sqlx::Error) -> ServerError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => ServerError::Conflict { field },
        _ => ServerError::from(e),
    }
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

    async fn open_sqlite(file: &EmbeddedFile) -> Result<Self, ServerError> {
        let private = |e: std::io::Error| {
            tracing::error!(error = %e, "the data directory cannot be made private");
            ServerError::Internal("data directory not private")
        };
        if at_rest::encrypt_plaintext(file).await? {
            tracing::info!("the embedded store was plaintext (an older version's): now encrypted");
        }
        private_files::private_database(&file.path).map_err(private)?;
        let url = at_rest::any_url(file)?;
        // Streaming reads (the verifier walks millions of rows) are slow by design; the
        // slow-statement warning would only alarm operators.
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        {
            let mut first = at_rest::sqlite_options(file)?.connect().await?;
            at_rest::check_keyed(&mut first).await?;
            first.close().await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .before_acquire(|conn, _| Box::pin(async move { Ok(settled(conn)) }))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    // SQLCipher decrypts a page each time it is read into the cache, so a
                    // cache of SQLite's default 2 MB made every write to a big clinic's
                    // indexes decrypt pages again: 16 MB per connection keeps their hot
                    // pages (import_patients_per_s, patient_search_p99_ms).
                    conn.execute("PRAGMA cache_size = -16384").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        SQLITE_MIGRATOR
            .run(&pool)
            .await
            .map_err(|_| ServerError::Internal("migration failed"))?;
        Ok(Self::new(pool, Backend::Sqlite))
    }

    async fn open_postgres(url: &str, migration_url: Option<&str>) -> Result<Self, ServerError> {
        let url = postgres_tls::verified(url)?;
        let migration_url = migration_url.map(postgres_tls::verified).transpose()?;
        let migration_url = migration_url.as_deref();
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
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
            .before_acquire(|conn, _| Box::pin(async move { Ok(settled(conn)) }))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SET_APP_ROLE).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Self::new(pool, Backend::Postgres);
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

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection, waiting for those in use to come back: what a process does
    /// before it exits, from an async context ([`at_rest::close_and_wait`] says why).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn insert_statement(a: i64) -> crate::store::sql::Statement {
        let mut st = crate::store::sql::Statement::new("INSERT INTO scratch (a) VALUES (");
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
        let key = DatabaseKey::from_bytes(zeroize::Zeroizing::new([1; 32]));
        let store = Store::open(&StoreLocation::in_data_dir(dir, key))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE scratch (a INTEGER PRIMARY KEY)")
            .execute(&store.pool)
            .await
            .unwrap();
        store
    }

    async fn stored(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT a FROM scratch ORDER BY a")
            .fetch_all(&store.pool)
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

    /// When the last clone of a store goes, every connection of it is closed before the drop
    /// returns (SQLite removes the WAL with the database's last connection), so no close is
    /// still under way on sqlx's worker threads when the process exits, where SQLCipher's exit
    /// handler can crash it (`at_rest::close_and_wait`).
    #[tokio::test]
    async fn dropping_the_last_store_closes_every_connection_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = scratch_store(dir.path()).await;
        // Several connections open at once, each having written or read.
        let writes = (0..4).map(|a| store.write_locked(Uuid::from_u128(1), insert(a)));
        for w in futures_util::future::join_all(writes).await {
            w.unwrap();
        }
        let reads = (0..4).map(|_| stored(&store));
        assert!(
            futures_util::future::join_all(reads)
                .await
                .iter()
                .all(|r| r.len() == 4)
        );
        // The connections those queries used go back to the pool in tasks of this runtime:
        // let them get there (the drop below blocks this runtime; see `close_and_wait`).
        for _ in 0..500 {
            if store.pool.num_idle() == store.pool.size() as usize {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let wal = dir.path().join("clinicdesk.sqlite3-wal");
        let other = store.clone();
        drop(store);
        assert!(wal.exists(), "a clone is left: the store is open");
        drop(other);
        assert!(
            !wal.exists(),
            "the last connection was closed before drop returned"
        );
    }

    /// However many background writes (audit uploads) wait for the write turn, a person's
    /// write waiting with them goes after at most one of them.
    #[tokio::test]
    async fn a_persons_write_waits_behind_one_background_write_not_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = scratch_store(dir.path()).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = Arc::clone(&store.writer).lock_owned().await;
        let write = |background: bool, a: i64| {
            let (store, order) = (store.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let mut tx = if background {
                    store.begin_background_write(Uuid::nil()).await.unwrap()
                } else {
                    store.begin_write().await.unwrap()
                };
                sqlx::query("INSERT INTO scratch (a) VALUES ($1)")
                    .bind(a)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                order
                    .lock()
                    .unwrap()
                    .push(if background { "upload" } else { "person" });
                tx.commit().await.unwrap();
            })
        };
        let mut tasks: Vec<_> = (0..10).map(|a| write(true, a)).collect();
        // This runtime has one thread: each task runs until it waits for a lock, in turn.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tasks.push(write(false, 100));
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 11);
        let person = order.iter().position(|w| *w == "person").unwrap();
        assert!(
            person <= 1,
            "the person's write came after {person} uploads"
        );
    }

    /// The guard itself, at the moment the test above can only hit by chance: a connection
    /// dropped while inside a transaction of its own is closed, not pooled again, so the
    /// write lock that transaction held is gone and no later user finds itself inside it.
    #[tokio::test]
    async fn a_connection_dropped_inside_its_own_transaction_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = scratch_store(dir.path()).await;
        let mut own = tx::OwnTransaction(Some(store.pool.acquire().await.unwrap()));
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
}
