//! One serving process per SQLite database: SQLite has no way to tell a second Palabre about the
//! first one's writes (its caches, stream positions and room writers live in memory), so `serve`
//! holds an exclusive lock on a file beside the database for as long as it runs. The operating
//! system releases it when the process ends, however it ends (`kill -9` included).

use std::{fs::File, path::PathBuf};

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ProcessLock {
    _file: File,
}

/// The SQLite file of a `sqlite://` URL (`None` for an in-memory database or another driver).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Takes the lock of the SQLite database at `url`, or explains who holds it.
pub fn lock_sqlite(url: &str) -> anyhow::Result<Option<ProcessLock>> {
    let Some(db) = sqlite_file(url) else {
        return Ok(None);
    };
    let mut name = db.clone().into_os_string();
    name.push(".palabre-lock");
    let path = PathBuf::from(name);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(ProcessLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Palabre process is already serving the SQLite database {} (it holds {}). \
             SQLite serves one process only: stop the other one, or run several nodes on \
             PostgreSQL (docs/high-availability.md)",
            db.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
}
