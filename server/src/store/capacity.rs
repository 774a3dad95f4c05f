//! Running out of space. A write the database refuses for lack of space (SQLite's
//! `SQLITE_FULL`, PostgreSQL's `disk_full`, or the OS's `ENOSPC`) becomes
//! `ServerError::StorageFull` (`503 storage_full`): the request fails closed (a PHI read whose
//! audit event cannot be written is not answered) and the server stays up. Health checks
//! report it: on the embedded store while its filesystem has less than 1 MiB free (asked of
//! the data directory, so each server state answers for its own); on PostgreSQL, whose disk
//! is the database's, after a write failed for lack of space until a transaction commits
//! again or 30 seconds pass (a load balancer that took the instance out on a 503 sends it no
//! requests that could succeed). That memory is per process, as a deployment runs one server
//! per process; the embedded store's check does not use it, so test servers sharing a process
//! do not see each other's full disks. Nothing else changes
//! state, so the server recovers by itself when space returns: the next write succeeds.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Below this much free space on the embedded store's filesystem, health reports it full:
/// SQLite's next WAL growth or checkpoint is then likely to fail.
pub const FREE_FLOOR_BYTES: u64 = 1024 * 1024;

/// How long a failed write for lack of space keeps health reporting it.
pub const REMEMBERED: Duration = Duration::from_secs(30);

/// When a write last failed for lack of space (this process; a monotonic instant).
static LAST_FULL: Mutex<Option<Instant>> = Mutex::new(None);

/// SQLite's `SQLITE_FULL` (the extended code is the same number).
const SQLITE_FULL: &str = "13";
/// PostgreSQL's SQLSTATE `disk_full`.
const POSTGRES_DISK_FULL: &str = "53100";
/// Linux's `ENOSPC`.
const ENOSPC: i32 = 28;

/// Whether `e` is a write refused for lack of space.
pub fn is_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c == SQLITE_FULL || c == POSTGRES_DISK_FULL),
        sqlx::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(ENOSPC)
        }
        _ => false,
    }
}

/// Remembers that a write failed for lack of space, and logs it (once per failure: each is
/// a refused request the operator should know about).
pub fn note_full() {
    *LAST_FULL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    tracing::error!(
        "storage full: a write was refused for lack of space; requests fail until there is room"
    );
}

/// A transaction committed: there was room for it.
pub fn note_written() {
    let mut last = LAST_FULL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some() {
        *last = None;
    }
}

/// Whether a write failed for lack of space within [`REMEMBERED`], with no commit since.
pub fn recently_full() -> bool {
    LAST_FULL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_some_and(|at| at.elapsed() < REMEMBERED)
}

/// Free bytes (for an unprivileged writer) on the filesystem holding `dir`, if it can be asked.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
