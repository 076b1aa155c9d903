//! Persistence of learned session tables in `state_dir`: one JSON file per
//! pool, written atomically (temporary file, fsync, rename, fsync of the
//! directory) periodically and on shutdown, restored on start. Entries keep their remaining idle time,
//! less the time limpet was down. A corrupt or foreign file is reported and
//! set aside (renamed `*.corrupt-<unix ms>`), never a crash.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Learned, Table};
use crate::clock::{to_ms, unix_ms};

const FORMAT: &str = "limpet-learned-sessions-v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    pool: String,
    saved_at_ms: u64,
    entries: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    key: u64,
    server: String,
    remaining_ms: u64,
    /// A request-learned id (absent in files of older versions: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    probation: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a learned-session file of pool {pool:?} ({reason}); set aside as {}", path.display(), aside.display())]
    Corrupt {
        path: PathBuf,
        pool: String,
        reason: String,
        aside: PathBuf,
    },
}

/// The state file of a pool. Pool names are plain tokens (validated), so
/// they are safe in a file name.
pub fn path_for(dir: &Path, pool: &str) -> PathBuf {
    dir.join(format!("learned-{pool}.json"))
}

/// Writes the table atomically. Returns the number of entries written.
pub fn save(dir: &Path, pool: &str, table: &Table) -> Result<usize, PersistError> {
    let path = path_for(dir, pool);
    let werr = |source| PersistError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(werr)?;
    let entries: Vec<Record> = table
        .entries()
        .into_iter()
        .map(|e| Record {
            key: e.key,
            server: e.server.to_string(),
            remaining_ms: to_ms(e.remaining),
            probation: e.probation,
        })
        .collect();
    let n = entries.len();
    let file = StateFile {
        format: FORMAT.to_owned(),
        pool: pool.to_owned(),
        saved_at_ms: unix_ms(),
        entries,
    };
    // A temporary file that is not persisted is removed when dropped.
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("learned-{pool}.json.tmp-"))
            // As `File::create` would (less the umask), not tempfile's 0600.
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)?;
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        serde_json::to_writer(&mut out, &file).map_err(std::io::Error::other)?;
        out.flush()?;
        drop(out);
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        // The rename itself survives a crash once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(werr)?;
    Ok(n)
}

/// Restores a pool's table from its file, if there is one. Returns the
/// number of entries restored.
pub fn load(dir: &Path, pool: &str, table: &Table) -> Result<usize, PersistError> {
    let path = path_for(dir, pool);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(PersistError::Read { path, source }),
    };
    let parsed: Result<StateFile, String> = serde_json::from_slice::<StateFile>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            if f.format != FORMAT {
                Err(format!("unknown format {:?}", f.format))
            } else if f.pool != pool {
                Err(format!("it belongs to pool {:?}", f.pool))
            } else {
                Ok(f)
            }
        });
    let file = match parsed {
        Ok(f) => f,
        Err(reason) => {
            let aside = path.with_extension(format!("json.corrupt-{}", unix_ms()));
            let _ = std::fs::rename(&path, &aside);
            return Err(PersistError::Corrupt {
                path,
                pool: pool.to_owned(),
                reason,
                aside,
            });
        }
    };
    let down = Duration::from_millis(unix_ms().saturating_sub(file.saved_at_ms));
    let mut n = 0;
    for r in file.entries {
        let remaining = Duration::from_millis(r.remaining_ms).min(table.idle);
        if let Some(left) = remaining.checked_sub(down).filter(|d| !d.is_zero()) {
            table.restore(Learned {
                key: r.key,
                server: Arc::from(r.server.as_str()),
                remaining: left,
                probation: r.probation,
            });
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("limpet-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_saved_table_is_restored_with_its_entries() {
        let d = dir("roundtrip");
        let t = Table::new(100, Duration::from_secs(3600));
        t.insert_number(1, t.number("node1"));
        t.insert_number(2, t.number("node2"));
        assert_eq!(save(&d, "app", &t).ok(), Some(2));
        let files: Vec<_> = std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files, ["learned-app.json"], "no temporary file is left");
        let restored = Table::new(100, Duration::from_secs(3600));
        assert_eq!(load(&d, "app", &restored).ok(), Some(2));
        assert_eq!(
            restored.get(2).map(|e| e.to_string()),
            Some("node2".to_owned())
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_set_aside() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).ok();
        std::fs::write(path_for(&d, "app"), b"{ not json").ok();
        let t = Table::new(100, Duration::from_secs(3600));
        assert!(matches!(
            load(&d, "app", &t),
            Err(PersistError::Corrupt { .. })
        ));
        assert!(!path_for(&d, "app").exists());
        // The next start finds nothing and starts empty.
        assert_eq!(load(&d, "app", &t).ok(), Some(0));

        let other = Table::new(100, Duration::from_secs(3600));
        other.insert_number(7, other.number("n"));
        save(&d, "other", &other).ok();
        std::fs::rename(path_for(&d, "other"), path_for(&d, "app")).ok();
        assert!(matches!(
            load(&d, "app", &t),
            Err(PersistError::Corrupt { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
