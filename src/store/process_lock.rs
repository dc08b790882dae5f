//! SQLite runs workers in one process only: a second process on the same file would run the
//! same jobs without apalis' cross-process guarantees. The lock is an OS file lock next to the
//! database, released when the process exits (even by kill -9).

use std::fs::File;
use std::path::{Path, PathBuf};

/// Why this process may not run workers on the database.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("MINIPAY_DATABASE_URL: cannot create {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "MINIPAY_DATABASE_URL: another minipay process already runs workers on {0}. \
         SQLite supports one worker process; run `minipay all` once, or use PostgreSQL \
         to scale out (see README, \"Scaling out\")"
    )]
    Taken(String),
    #[error("locking {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the worker lock of the SQLite database file at `path`, held while the returned file
/// lives.
pub fn lock_for_workers(path: &Path) -> Result<File, LockError> {
    let path = path.display().to_string();
    let lock_path = PathBuf::from(format!("{path}.lock"));
    let shown = lock_path.display().to_string();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| LockError::Create {
            path: shown.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Taken(path)),
        Err(std::fs::TryLockError::Error(source)) => Err(LockError::Lock {
            path: shown,
            source,
        }),
    }
}
