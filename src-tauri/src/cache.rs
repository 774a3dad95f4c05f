//! The offline cache: one SQLCipher 4 database (AES-256, per-page HMAC, WAL) holding the
//! records this device fetched and the audit outbox. Its 256-bit key is random, lives in
//! the OS keychain and is handed in as `Zeroizing` bytes; it is never written anywhere
//! else. Closing the connection (dropping [`Cache`]) makes SQLCipher wipe its key copy.

use std::path::Path;

use clinicdesk_protocol::wire::{AppointmentList, Patient};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache key does not open this cache")]
    WrongKey,
    #[error("cache database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cache record malformed")]
    Malformed,
}

const SCHEMA_VERSION: i32 = 1;

const MIGRATION_1: &str = "
CREATE TABLE appointments (
    day TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
-- Signed audit events not yet acknowledged by the server, in device order.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_json TEXT NOT NULL
);
-- The last event this device signed: the chain continues from here.
CREATE TABLE chain_tip (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
";

pub struct Cache {
    conn: Connection,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache(<open>)")
    }
}

impl Cache {
    /// Opens or creates the cache at `path` with `key`. A wrong key is [`CacheError::WrongKey`].
    pub fn open(path: &Path, key: &Zeroizing<[u8; 32]>) -> Result<Self, CacheError> {
        let conn = Connection::open(path)?;
        let pragma = Zeroizing::new(format!(
            "PRAGMA key = \"x'{}'\";",
            clinicdesk_protocol::audit::to_hex(key.as_slice())
        ));
        conn.execute_batch(&pragma)?;
        // The first read decrypts page 1: with the wrong key SQLCipher reports "not a database".
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                return Err(CacheError::WrongKey);
            }
            Err(e) => return Err(e.into()),
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")?;
        let mut cache = Self { conn };
        cache.migrate()?;
        Ok(cache)
    }

    fn migrate(&mut self) -> Result<(), CacheError> {
        let version: i32 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < 1 {
            let tx = self.conn.transaction()?;
            tx.execute_batch(MIGRATION_1)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Runs `f` in one transaction; the outbox append and the local write commit together.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn cached_appointments(&self, day: &str) -> Result<Option<AppointmentList>, CacheError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT json FROM appointments WHERE day = ?1", [day], |r| {
                r.get(0)
            })
            .optional()?;
        json.map(|j| serde_json::from_str(&j).map_err(|_| CacheError::Malformed))
            .transpose()
    }

    /// The most recently fetched schedule, whatever its day (for offline use).
    pub fn latest_appointments(&self) -> Result<Option<AppointmentList>, CacheError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM appointments ORDER BY fetched_at_ms DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| serde_json::from_str(&j).map_err(|_| CacheError::Malformed))
            .transpose()
    }

    pub fn cached_patient(&self, id: Uuid) -> Result<Option<Patient>, CacheError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM patients WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| serde_json::from_str(&j).map_err(|_| CacheError::Malformed))
            .transpose()
    }
}

pub fn put_appointments(
    tx: &Transaction<'_>,
    list: &AppointmentList,
    now_ms: i64,
) -> Result<(), CacheError> {
    let json = serde_json::to_string(list).map_err(|_| CacheError::Malformed)?;
    tx.execute(
        "INSERT INTO appointments (day, json, fetched_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (day) DO UPDATE SET json = excluded.json, fetched_at_ms = excluded.fetched_at_ms",
        params![list.date, json, now_ms],
    )?;
    Ok(())
}

pub fn put_patient(tx: &Transaction<'_>, patient: &Patient, now_ms: i64) -> Result<(), CacheError> {
    let json = serde_json::to_string(patient).map_err(|_| CacheError::Malformed)?;
    tx.execute(
        "INSERT INTO patients (id, json, fetched_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET json = excluded.json, fetched_at_ms = excluded.fetched_at_ms",
        params![patient.id.to_string(), json, now_ms],
    )?;
    Ok(())
}
