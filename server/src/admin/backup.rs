//! `clinicdesk-server backup` and `restore`: the embedded store and the data directory's
//! key files in one encrypted file, taken while the server serves, and put back whole.
//!
//! A backup holds a consistent snapshot of the database (`store::at_rest::snapshot`) and
//! every other file of the data directory (the wrapped database key, the MFA seal, escrow
//! and audit keys, the TLS CA), each sealed in 1 MiB frames (XChaCha20-Poly1305) under a
//! fresh backup key that is stored in the file only wrapped by the key-encryption key. So the
//! file opens only beside the key directory, which the README says to keep apart from the
//! backups. Each frame is bound to the file's header and to its place, a manifest names
//! every file with its length and SHA-256, and an end frame closes it: a flipped bit, a
//! swapped, dropped or repeated frame, or a cut-off file is refused before anything is
//! written to the data directory.
//!
//! Restore writes into a new directory beside the target and only then swaps it in; the data
//! directory it replaces (only with `--force`) is kept beside it, renamed. The caller runs
//! `audit verify` on what it restored.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use clinicdesk_protocol::audit::{from_hex, to_hex};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::secrets::aead;
use crate::secrets::field_cipher;
use crate::secrets::kek::{KekError, KekVersion, KeyProvider};
use crate::store::EMBEDDED_FILE;
use crate::store::at_rest::{self, EmbeddedFile};
use crate::store::private_files;

/// The first line of every backup file.
const MAGIC: &[u8] = b"CLINICDESK-BACKUP 1\n";
/// Plaintext bytes per frame.
const FRAME: usize = 1 << 20;
/// What a sealed frame may weigh: a frame, its nonce and tag.
const MAX_SEALED: usize = FRAME + 64;
/// The header line's limit (it holds ids, a time and a wrapped key).
const MAX_HEADER: usize = 4096;
/// The end frame's content.
const END: &[u8] = b"end";
/// The name the database snapshot has inside a backup.
const DATABASE: &str = "database";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Provider(#[from] KekError),
    #[error(transparent)]
    Server(#[from] crate::error::ServerError),
    #[error("{0} is not a ClinicDesk backup")]
    NotABackup(PathBuf),
    #[error(
        "the backup does not open: it was changed or cut off after it was written, or the \
         key-encryption keys given are not the ones it was made under"
    )]
    Damaged,
    #[error(
        "{0} already holds a database: stop the server and run again with --force to replace \
         it (the directory it replaces is kept beside it)"
    )]
    LiveData(PathBuf),
    #[error("{0} holds no embedded database to back up")]
    NoDatabase(PathBuf),
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> BackupError {
    let what = format!("{what} {}", path.display());
    move |e| BackupError::Io(format!("{what}: {e}"))
}

/// The clear first line after the magic: what unwraps the backup key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Header {
    backup_id: Uuid,
    created_at_ms: i64,
    kek_version: u32,
    /// The backup key, wrapped by the key-encryption key (hex).
    wrapped_key: String,
}

/// The first sealed frame: the files that follow, in order.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    /// `database`, or a path inside the data directory (`/`-separated).
    name: String,
    size: u64,
    /// Hex.
    sha256: String,
}

/// What a backup or restore handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub backup_id: Uuid,
    pub created_at_ms: i64,
    /// The data directory's files besides the database.
    pub files: u64,
    pub database_bytes: u64,
    /// Where the replaced data directory was kept (restore with `--force` only).
    pub kept_as: Option<PathBuf>,
}

fn wrap_context(backup_id: Uuid) -> Vec<u8> {
    [b"clinicdesk-backup-v1\0".as_slice(), backup_id.as_bytes()].concat()
}

fn frame_aad(header: &[u8], index: u64) -> Vec<u8> {
    [header, &index.to_be_bytes()].concat()
}

/// Every file of the data directory but the database (and its WAL), by name.
fn data_dir_files(
    dir: &Path,
    under: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let named = format!("{under}{name}");
        if entry.file_type()?.is_dir() {
            data_dir_files(&path, &format!("{named}/"), out)?;
        } else if !name.starts_with(EMBEDDED_FILE) {
            out.push((named, path));
        }
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io("reading", path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; FRAME];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            return Ok((size, to_hex(&hash.finalize())));
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
}

/// Writes frames: each sealed, bound to the header and its place.
struct Frames<W: Write> {
    out: W,
    cipher: XChaCha20Poly1305,
    header: Vec<u8>,
    next: u64,
}

impl<W: Write> Frames<W> {
    fn put(&mut self, plain: &[u8]) -> Result<(), BackupError> {
        let sealed = aead::seal(&self.cipher, &frame_aad(&self.header, self.next), plain)
            .ok_or(BackupError::Io("the OS random source failed".into()))?;
        self.next += 1;
        let len = u32::try_from(sealed.len()).map_err(|_| BackupError::Damaged)?;
        self.out
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.out.write_all(&sealed))
            .map_err(|e| BackupError::Io(format!("writing the backup: {e}")))
    }
}

/// Reads frames as [`Frames`] wrote them.
struct Unframes<R: Read> {
    input: R,
    cipher: XChaCha20Poly1305,
    header: Vec<u8>,
    next: u64,
}

impl<R: Read> Unframes<R> {
    fn take(&mut self) -> Result<Vec<u8>, BackupError> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| BackupError::Damaged)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_SEALED {
            return Err(BackupError::Damaged);
        }
        let mut sealed = vec![0u8; len];
        self.input
            .read_exact(&mut sealed)
            .map_err(|_| BackupError::Damaged)?;
        let plain = aead::open(&self.cipher, &frame_aad(&self.header, self.next), &sealed)
            .ok_or(BackupError::Damaged)?;
        self.next += 1;
        Ok(plain)
    }
}

/// Backs up the embedded store `db` of `data_dir` and the directory's other files to `to`,
/// while the server serves. The file appears under its name only once it is whole.
pub async fn backup(
    db: &EmbeddedFile,
    data_dir: &Path,
    keys: &dyn KeyProvider,
    to: &Path,
    now_ms: i64,
) -> Result<Report, BackupError> {
    if !db.path.exists() {
        return Err(BackupError::NoDatabase(data_dir.to_owned()));
    }
    // Work files beside the backup, removed however this ends.
    let work = Leftovers(vec![
        sibling(to, &format!("snapshot-{}", Uuid::now_v7()))?,
        sibling(to, &format!("partial-{}", Uuid::now_v7()))?,
    ]);
    let (snapshot, partial) = (&work.0[0], &work.0[1]);
    at_rest::snapshot(db, snapshot).await?;

    let mut files = Vec::new();
    data_dir_files(data_dir, "", &mut files).map_err(io("listing", data_dir))?;
    let mut entries = Vec::with_capacity(files.len() + 1);
    let mut sources = Vec::with_capacity(files.len() + 1);
    for (name, path) in std::iter::once((DATABASE.to_owned(), snapshot.to_owned())).chain(files) {
        let (size, sha256) = sha256_of(&path)?;
        entries.push(Entry { name, size, sha256 });
        sources.push(path);
    }

    let key = field_cipher::new_key()?;
    let backup_id = Uuid::now_v7();
    let kek = keys.current()?;
    let header = Header {
        backup_id,
        created_at_ms: now_ms,
        kek_version: kek.0,
        wrapped_key: to_hex(&keys.wrap(kek, &key, &wrap_context(backup_id))?),
    };
    let mut line = serde_json::to_vec(&header).map_err(|_| BackupError::Damaged)?;
    line.push(b'\n');

    let file = std::fs::File::create(partial).map_err(io("writing", partial))?;
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC)
        .and_then(|()| out.write_all(&line))
        .map_err(io("writing", partial))?;
    let mut frames = Frames {
        out,
        cipher: XChaCha20Poly1305::new(key.as_ref().into()),
        header: line,
        next: 0,
    };
    let manifest = Manifest {
        entries: entries.clone(),
    };
    frames.put(&serde_json::to_vec(&manifest).map_err(|_| BackupError::Damaged)?)?;
    let mut buf = Zeroizing::new(vec![0u8; FRAME]);
    for path in &sources {
        let mut input = std::fs::File::open(path).map_err(io("reading", path))?;
        loop {
            let n = read_full(&mut input, &mut buf).map_err(io("reading", path))?;
            if n == 0 {
                break;
            }
            frames.put(&buf[..n])?;
        }
    }
    frames.put(END)?;
    let file = frames
        .out
        .into_inner()
        .map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
    file.sync_all().map_err(io("syncing", partial))?;
    drop(file);
    private_files::narrow_file(partial).map_err(io("narrowing", partial))?;
    std::fs::rename(partial, to).map_err(io("naming the backup", to))?;
    sync_parent(to)?;
    Ok(Report {
        backup_id,
        created_at_ms: now_ms,
        files: entries.len() as u64 - 1,
        database_bytes: entries[0].size,
        kept_as: None,
    })
}

/// Files removed when dropped (those that are still there).
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A directory removed when dropped, unless taken out first.
struct Unfinished(Option<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Reads until `buf` is full or the input ends: how many bytes.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn sync_parent(path: &Path) -> Result<(), BackupError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", dir))?;
    }
    Ok(())
}

/// A name inside the data directory, as a manifest may name one: relative, no `..`.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, BackupError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    ok.then(|| dir.join(name)).ok_or(BackupError::Damaged)
}

/// Restores the backup `from` as the data directory `data_dir`. A directory that holds a
/// database is replaced only when `force` is set, and then kept beside it, renamed. Nothing
/// is written to `data_dir` unless the whole backup opened and every file matched its
/// manifest.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    keys: &dyn KeyProvider,
    force: bool,
    now_ms: i64,
) -> Result<Report, BackupError> {
    let live = data_dir.join(EMBEDDED_FILE).exists();
    if live && !force {
        return Err(BackupError::LiveData(data_dir.to_owned()));
    }
    let file = std::fs::File::open(from).map_err(io("reading", from))?;
    let mut input = BufReader::new(file);
    let mut magic = [0u8; MAGIC.len()];
    if input.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(BackupError::NotABackup(from.to_owned()));
    }
    let mut line = Vec::new();
    for byte in (&mut input).bytes() {
        let byte = byte.map_err(|_| BackupError::Damaged)?;
        line.push(byte);
        if byte == b'\n' {
            break;
        }
        if line.len() > MAX_HEADER {
            return Err(BackupError::Damaged);
        }
    }
    let header: Header = serde_json::from_slice(&line).map_err(|_| BackupError::Damaged)?;
    let wrapped = from_hex(&header.wrapped_key).ok_or(BackupError::Damaged)?;
    let key = keys
        .unwrap(
            KekVersion(header.kek_version),
            &wrapped,
            &wrap_context(header.backup_id),
        )
        .map_err(|_| BackupError::Damaged)?;
    let mut frames = Unframes {
        input,
        cipher: XChaCha20Poly1305::new(key.as_ref().into()),
        header: line,
        next: 0,
    };
    let manifest: Manifest =
        serde_json::from_slice(&frames.take()?).map_err(|_| BackupError::Damaged)?;
    if manifest.entries.first().map(|e| e.name.as_str()) != Some(DATABASE) {
        return Err(BackupError::Damaged);
    }

    let staging = sibling(data_dir, "restoring")?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("clearing", &staging))?;
    }
    private_files::private_dir(&staging).map_err(io("making", &staging))?;
    // A refused restore leaves nothing beside the data directory: what it wrote there may
    // include key files.
    let mut unfinished = Unfinished(Some(staging.clone()));
    let mut files = 0u64;
    for entry in &manifest.entries {
        let target = if entry.name == DATABASE {
            staging.join(EMBEDDED_FILE)
        } else {
            files += 1;
            inside(&staging, &entry.name)?
        };
        if let Some(dir) = target.parent() {
            private_files::private_dir(dir).map_err(io("making", dir))?;
        }
        let mut out = std::fs::File::create(&target).map_err(io("writing", &target))?;
        private_files::narrow_file(&target).map_err(io("narrowing", &target))?;
        let (mut left, mut hash) = (entry.size, Sha256::new());
        while left > 0 {
            let chunk = Zeroizing::new(frames.take()?);
            if chunk.is_empty() || chunk.len() as u64 > left {
                return Err(BackupError::Damaged);
            }
            hash.update(&chunk[..]);
            out.write_all(&chunk).map_err(io("writing", &target))?;
            left -= chunk.len() as u64;
        }
        if to_hex(&hash.finalize()) != entry.sha256 {
            return Err(BackupError::Damaged);
        }
        out.sync_all().map_err(io("syncing", &target))?;
    }
    if frames.take()? != END {
        return Err(BackupError::Damaged);
    }
    let mut rest = [0u8; 1];
    if frames
        .input
        .read(&mut rest)
        .map_err(|_| BackupError::Damaged)?
        != 0
    {
        return Err(BackupError::Damaged);
    }

    let kept_as = if data_dir.exists() {
        let kept = sibling(data_dir, &format!("before-restore-{now_ms}"))?;
        if live
            || std::fs::read_dir(data_dir)
                .map_err(io("reading", data_dir))?
                .next()
                .is_some()
        {
            std::fs::rename(data_dir, &kept).map_err(io("setting aside", data_dir))?;
            Some(kept)
        } else {
            std::fs::remove_dir(data_dir).map_err(io("replacing", data_dir))?;
            None
        }
    } else {
        None
    };
    std::fs::rename(&staging, data_dir).map_err(io("restoring into", data_dir))?;
    unfinished.0 = None;
    sync_parent(data_dir)?;
    Ok(Report {
        backup_id: header.backup_id,
        created_at_ms: header.created_at_ms,
        files,
        database_bytes: manifest.entries[0].size,
        kept_as,
    })
}

/// `PATH.<suffix>`, beside `path`.
fn sibling(path: &Path, suffix: &str) -> Result<PathBuf, BackupError> {
    let name = path
        .file_name()
        .ok_or_else(|| BackupError::Io(format!("{} names no file", path.display())))?;
    let mut sibling = name.to_owned();
    sibling.push(format!(".{suffix}"));
    Ok(path.with_file_name(sibling))
}
