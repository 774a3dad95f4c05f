//! The data directory holds PHI (the embedded database, its WAL) and keys: only the
//! server's own account may read it. The directory is 0700 and every file in it 0600,
//! whatever the umask, and a directory or database left readable by an older version is
//! narrowed when the server opens it. (SQLite creates its `-wal` and `-shm` files with the
//! database file's mode.)

use std::io;
use std::path::Path;

/// Creates `dir` (and its missing parents) readable by the owner only, and narrows an
/// existing one to that.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Narrows an existing file to its owner (0600); a missing one is fine.
pub fn narrow_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// The embedded database's file: created empty and 0600 if missing (so SQLite opens it,
/// and makes its WAL and shared-memory files, with that mode), narrowed if it exists, with
/// any WAL and shared-memory files beside it.
pub fn private_database(file: &Path) -> io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    drop(options.open(file)?);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        narrow_file(Path::new(&name))?;
    }
    Ok(())
}
