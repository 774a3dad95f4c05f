//! Opening SQLCipher 4 databases (AES-256, per-page HMAC) in WAL mode with a raw 256-bit
//! key, and running their schema migrations. The key is passed as `Zeroizing` bytes and
//! the `PRAGMA key` text that carries it is zeroized too; closing the connection makes
//! SQLCipher wipe its own copy. SQLCipher's memory security is on: what it allocates (keys,
//! decrypted pages) is locked in memory and wiped when freed, so a swap file or a later
//! allocation does not hold cached PHI.

use std::path::Path;

use rusqlite::Connection;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("key does not open this database")]
    WrongKey,
    /// The disk has no room for the write (SQLite's `SQLITE_FULL`): nothing was written.
    #[error("disk full")]
    Full,
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
    #[error("stored record malformed")]
    Malformed,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => DbError::Full,
            _ => DbError::Sqlite(e),
        }
    }
}

/// Page cache per open database, in KiB.
pub const CACHE_KIB: u32 = 32 * 1024;

/// Opens or creates the encrypted database at `path` and brings its schema to the last
/// of `migrations` (each entry is one schema version, applied in one transaction).
pub fn open_encrypted(
    path: &Path,
    key: &Zeroizing<[u8; 32]>,
    migrations: &[&str],
) -> Result<Connection, DbError> {
    let mut conn = Connection::open(path)?;
    // Process-wide, and it must come before the key.
    conn.execute_batch("PRAGMA cipher_memory_security = ON;")?;
    let pragma = Zeroizing::new(format!(
        "PRAGMA key = \"x'{}'\";",
        Zeroizing::new(clinicdesk_protocol::audit::to_hex(key.as_slice())).as_str()
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
            return Err(DbError::WrongKey);
        }
        Err(e) => return Err(e.into()),
    }
    // SQLCipher decrypts a page each time it enters the page cache: the default 2 MiB
    // cache made an indexed cache workload 4x slower than plain SQLite, 32 MiB brings it
    // to about 1.1x (`cargo xtask bench`, sqlcipher_overhead_ratio).
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{CACHE_KIB};"
    ))?;
    migrate(&mut conn, migrations)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), DbError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(version).map_err(|_| DbError::Malformed)?;
    for (i, sql) in (1i64..).zip(migrations.iter()).skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i)?;
        tx.commit()?;
    }
    Ok(())
}

/// Removes a database file and its `-wal` and `-shm` companions; missing files are fine.
pub fn remove_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real SQLCipher file, opened as the app opens its caches: memory security is on,
    /// and the wrong key still does not open it.
    #[test]
    fn caches_open_with_memory_security_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let key = Zeroizing::new([7u8; 32]);
        let conn = open_encrypted(&path, &key, &["CREATE TABLE t (x INTEGER);"]).unwrap();
        let on: String = conn
            .query_row("PRAGMA cipher_memory_security", [], |r| r.get(0))
            .unwrap();
        assert_eq!(on, "1");
        drop(conn);
        let wrong = Zeroizing::new([8u8; 32]);
        assert!(matches!(
            open_encrypted(&path, &wrong, &[]),
            Err(DbError::WrongKey)
        ));
    }
}
