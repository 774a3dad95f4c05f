//! The embedded store's encryption at rest: SQLCipher 4 (AES-256 pages, each with an
//! HMAC-SHA512) under a 256-bit raw key, the same cipher as the app's caches. The key is
//! given to every connection as the `key` parameter of its SQLite URI filename, which
//! SQLCipher applies inside `sqlite3_open_v2`, before sqlx sends its first pragma: sqlx's
//! `Any` driver carries a connection's settings only as a URL, and that URL has no pragmas.
//! A raw key (`x'..'`) skips SQLCipher's passphrase derivation, so a connection opens as fast
//! as a plain one. Where the key comes from (wrapped by the key-encryption key) is
//! `crate::secrets::store_key`'s business, not the store's.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, SqliteConnection};
use zeroize::Zeroizing;

use crate::error::ServerError;

/// The first 16 bytes of every plaintext SQLite database; an encrypted one begins with
/// random salt instead.
const PLAINTEXT_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The 256-bit key of an embedded store.
#[derive(Clone)]
pub struct DatabaseKey(Zeroizing<[u8; 32]>);

impl DatabaseKey {
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// SQLCipher's raw-key form, `x'<64 hex digits>'`.
    fn raw_form(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(67));
        s.push_str("x'");
        for b in self.0.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\'');
        s
    }
}

impl std::fmt::Debug for DatabaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseKey(..)")
    }
}

/// An embedded store: its file and the key it is encrypted under.
#[derive(Clone, Debug)]
pub struct EmbeddedFile {
    pub path: PathBuf,
    pub key: DatabaseKey,
}

/// Whether the file at `path` is a plaintext SQLite database (one an older version wrote).
/// A missing or empty file is not: SQLCipher encrypts it from its first page.
pub fn is_plaintext(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut header = [0u8; 16];
    match std::fs::File::open(path) {
        Ok(mut f) => match f.read_exact(&mut header) {
            Ok(()) => Ok(&header == PLAINTEXT_HEADER),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the file at `path` holds an encrypted database (it has pages and no plaintext
/// header): one whose key must already exist.
pub fn is_encrypted(path: &Path) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(len > 0 && !is_plaintext(path)?)
}

/// Every byte but ASCII letters, digits and `-._~/` as `%XX`: what a URI filename's path
/// may hold literally, for SQLite and for sqlx's URL alike.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SQLite URI filename that opens `file` under its key: `file:PATH?key=x'..'` (for a
/// connection opened with `SQLITE_OPEN_URI`).
pub fn uri_filename(file: &EmbeddedFile) -> Result<Zeroizing<String>, ServerError> {
    let absolute = std::path::absolute(&file.path)
        .map_err(|_| ServerError::Internal("database path unusable"))?;
    let path = absolute
        .to_str()
        .ok_or(ServerError::Internal("database path is not UTF-8"))?;
    let mut uri = Zeroizing::new(format!("file:{}?key=", percent_encode(path)));
    uri.push_str(&percent_encode(&file.key.raw_form()));
    Ok(uri)
}

/// The `sqlite://` URL of `file` for sqlx's `Any` driver, created if missing: the URI
/// filename, escaped once more because sqlx decodes the URL's path before handing it on.
pub fn any_url(file: &EmbeddedFile) -> Result<Zeroizing<String>, ServerError> {
    let uri = uri_filename(file)?;
    let mut url = Zeroizing::new(String::from("sqlite://"));
    url.push_str(&percent_encode(&uri));
    url.push_str("?mode=rwc");
    Ok(url)
}

/// sqlx's SQLite options for `file`, keyed: for connections of the SQLite driver itself.
pub fn sqlite_options(file: &EmbeddedFile) -> Result<SqliteConnectOptions, ServerError> {
    let url = any_url(file)?;
    url.parse()
        .map_err(|_| ServerError::Internal("database path unusable"))
}

/// Refuses a SQLite library without SQLCipher (it would ignore the key and write
/// plaintext), and a key that does not open the file.
pub async fn check_keyed(conn: &mut SqliteConnection) -> Result<(), ServerError> {
    let version: Option<String> = sqlx::query_scalar("PRAGMA cipher_version")
        .fetch_optional(&mut *conn)
        .await?;
    if version.is_none_or(|v| v.is_empty()) {
        return Err(ServerError::Internal(
            "this build's SQLite has no SQLCipher: the embedded store would not be encrypted",
        ));
    }
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut *conn)
        .await
        .map_err(|_| {
            ServerError::Internal(
                "the embedded database does not open with its key (wrong key directory?)",
            )
        })?;
    Ok(())
}

/// Encrypts a plaintext database that an older version wrote, in place and once: its
/// content is exported into a keyed copy beside it, which then replaces it. A kill before
/// the rename leaves the plaintext file as it was (the copy is made again next time); after
/// it, the encrypted one. Returns whether there was anything to encrypt. No other process
/// may have the file open meanwhile (the server and its commands take turns on a data
/// directory's first open after an upgrade).
pub async fn encrypt_plaintext(file: &EmbeddedFile) -> Result<bool, ServerError> {
    let io = |_| ServerError::Internal("cannot encrypt the embedded database");
    if !is_plaintext(&file.path).map_err(io)? {
        return Ok(false);
    }
    let mut copy_name = file.path.as_os_str().to_owned();
    copy_name.push(".encrypting");
    let copy = PathBuf::from(copy_name);
    match std::fs::remove_file(&copy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    // Open with the create flag: an attached database inherits it, and the copy is new.
    let mut plain = SqliteConnectOptions::new()
        .filename(&file.path)
        .create_if_missing(true)
        .disable_statement_logging()
        .connect()
        .await?;
    plain.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    let copy_str = copy
        .to_str()
        .ok_or(ServerError::Internal("database path is not UTF-8"))?;
    let attach = Zeroizing::new(format!(
        "ATTACH DATABASE '{}' AS encrypted KEY \"{}\"",
        copy_str.replace('\'', "''"),
        file.key.raw_form().as_str()
    ));
    plain.execute(sqlx::AssertSqlSafe(attach.as_str())).await?;
    sqlx::query_scalar::<_, Option<String>>("SELECT sqlcipher_export('encrypted')")
        .fetch_one(&mut plain)
        .await?;
    plain.execute("DETACH DATABASE encrypted").await?;
    plain.close().await?;
    std::fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&copy, &file.path).map_err(io)?;
    for suffix in ["-wal", "-shm"] {
        let mut name = file.path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    if let Some(dir) = file.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(true)
}

/// Copies the embedded store at `file`, as one moment of it, to a new database at `to`
/// under the same key, while the server goes on serving: SQLCipher's export reads the whole
/// store in one statement, so in one read transaction (WAL lets writers go on beside it).
/// `to` must not exist yet.
pub async fn snapshot(file: &EmbeddedFile, to: &Path) -> Result<(), ServerError> {
    let to_str = to
        .to_str()
        .ok_or(ServerError::Internal("backup path is not UTF-8"))?;
    if to.exists() {
        return Err(ServerError::Internal("snapshot target exists"));
    }
    // The create flag: an attached database inherits it, and the copy is new.
    let mut conn = sqlite_options(file)?
        .create_if_missing(true)
        .connect()
        .await?;
    check_keyed(&mut conn).await?;
    let attach = Zeroizing::new(format!(
        "ATTACH DATABASE '{}' AS snapshot KEY \"{}\"",
        to_str.replace('\'', "''"),
        file.key.raw_form().as_str()
    ));
    conn.execute(sqlx::AssertSqlSafe(attach.as_str())).await?;
    sqlx::query_scalar::<_, Option<String>>("SELECT sqlcipher_export('snapshot')")
        .fetch_one(&mut conn)
        .await?;
    conn.execute("DETACH DATABASE snapshot").await?;
    conn.close().await?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|_| ServerError::Internal("cannot sync the snapshot"))?;
    Ok(())
}

/// Closes `pool` and waits until every connection of it is closed (at most 3 s), on a
/// thread and runtime of its own, so it may be called anywhere, inside a runtime too (a
/// `Drop`). A connection still on its way back to the pool, in a task of a runtime this call
/// blocks, cannot arrive: it is waited for until the time is up, then left to close by
/// itself. Where an async context is at hand, `Store::close` (or `AnyPool::close`) is better.
///
/// Why: sqlx closes a dropped pool's SQLite connections later, on their worker threads, and
/// SQLCipher frees its private heap in an `atexit` handler, so a process that exits while
/// such a close is under way can crash in it (seen: about one exit in fifty, SIGSEGV in
/// `sqlite3FreeCodecArg`). A keyed pool must be closed this way before its process can end;
/// dropping it is not enough. (SQLCipher has no switch for that handler, and `unsafe`, which
/// `sqlite3_shutdown` would need, is forbidden here.)
pub fn close_and_wait(pool: sqlx::AnyPool) {
    if pool.is_closed() {
        return;
    }
    let closing = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), pool.close()).await;
        });
    });
    let _ = closing.join();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key(b: u8) -> DatabaseKey {
        DatabaseKey::from_bytes(Zeroizing::new([b; 32]))
    }

    /// Paths that need escaping (a space, `?`, `#`, `%`, `'`, non-ASCII) reach SQLite
    /// intact, the file is encrypted, and only its key opens it.
    #[tokio::test]
    async fn any_path_opens_keyed_and_only_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a b?c#d%e'f-é");
        std::fs::create_dir_all(&sub).unwrap();
        let file = EmbeddedFile {
            path: sub.join("db.sqlite3"),
            key: key(7),
        };
        let mut conn = sqlite_options(&file).unwrap().connect().await.unwrap();
        check_keyed(&mut conn).await.unwrap();
        conn.execute("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('CANARY-AT-REST')")
            .await
            .unwrap();
        conn.close().await.unwrap();

        let bytes = std::fs::read(&file.path).unwrap();
        assert!(bytes.len() >= 4096, "the file is where it was asked to be");
        assert!(!is_plaintext(&file.path).unwrap());
        assert!(is_encrypted(&file.path).unwrap());
        assert!(!bytes.windows(14).any(|w| w == b"CANARY-AT-REST"));

        let wrong = EmbeddedFile {
            key: key(8),
            ..file.clone()
        };
        let mut conn = sqlite_options(&wrong).unwrap().connect().await.unwrap();
        assert!(check_keyed(&mut conn).await.is_err());
        let mut conn = sqlite_options(&file).unwrap().connect().await.unwrap();
        let v: String = sqlx::query_scalar("SELECT v FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, "CANARY-AT-REST");
    }

    /// A file that cannot be opened: the error says so, and never carries the key that was
    /// in the URI (errors end up in the operator's terminal and in logs).
    #[tokio::test]
    async fn an_open_failure_never_shows_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = EmbeddedFile {
            path: dir.path().join("missing-dir").join("db.sqlite3"),
            key: key(0xAB),
        };
        let hex = "ab".repeat(32);
        let direct = sqlite_options(&file).unwrap().connect().await.unwrap_err();
        sqlx::any::install_default_drivers();
        let any = sqlx::AnyConnection::connect(&any_url(&file).unwrap())
            .await
            .unwrap_err();
        for err in [direct, any] {
            let shown = format!("{err} {err:?}").to_lowercase();
            assert!(shown.contains("unable to open"), "{shown}");
            assert!(!shown.contains(&hex), "the key is in: {shown}");
        }
    }
}
