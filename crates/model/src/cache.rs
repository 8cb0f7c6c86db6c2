//! A cache of verified file hashes, so that opening a large export (1.7 GB for Gemma-3-270M)
//! does not read every byte again on every sweep: one small JSON file under the user's cache
//! directory (`$XDG_CACHE_HOME/xlpatch/hashes.json`, else `~/.cache/xlpatch/hashes.json`)
//! mapping a file's absolute path to its size, modification time and sha256.
//!
//! A hash is reused only while the file's path, size and modification time are those it was
//! computed for; a file changed since is hashed again. A hash is not stored for a file
//! modified in the last seconds before it was read (a write in the same timestamp tick
//! would leave size and time as they were: git's "racily clean" entries). The cache is
//! outside the model directory, so read-only and committed model directories work the same;
//! when it cannot be read or written, every file is hashed, as without it. Entries of files
//! that no longer exist are dropped when the cache is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The cache file's format version.
const VERSION: u32 = 1;

/// A file modified less than this before it was hashed is not cached (timestamps are coarse).
const RACY: Duration = Duration::from_secs(2);

/// One verified file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    size: u64,
    mtime_s: u64,
    mtime_ns: u32,
    sha256: String,
}

/// What the file system says of a file: its size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    size: u64,
    mtime: SystemTime,
}

impl Stat {
    /// The stat of `path`, or none when it cannot be read.
    pub(crate) fn of(path: &Path) -> Option<Stat> {
        let md = std::fs::metadata(path).ok()?;
        Some(Stat {
            size: md.len(),
            mtime: md.modified().ok()?,
        })
    }

    fn since_epoch(self) -> Option<Duration> {
        self.mtime.duration_since(SystemTime::UNIX_EPOCH).ok()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    files: BTreeMap<PathBuf, Entry>,
}

/// The cache as loaded from its file (empty if there is none or it is unreadable).
#[derive(Debug)]
pub(crate) struct HashCache {
    path: Option<PathBuf>,
    files: BTreeMap<PathBuf, Entry>,
    changed: bool,
}

/// The user's cache file, if a cache directory is known.
pub(crate) fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .or_else(|| std::env::var_os("LOCALAPPDATA").map(PathBuf::from))?;
    Some(base.join("xlpatch").join("hashes.json"))
}

impl HashCache {
    /// The cache in `path` (none: a cache that remembers nothing).
    pub(crate) fn open(path: Option<PathBuf>) -> HashCache {
        let files = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
            .filter(|f| f.version == VERSION)
            .map(|f| f.files)
            .unwrap_or_default();
        HashCache {
            path,
            files,
            changed: false,
        }
    }

    /// The cached sha256 of the file at absolute path `path`, if its stat is still `stat`.
    pub(crate) fn get(&self, path: &Path, stat: Stat) -> Option<&str> {
        let e = self.files.get(path)?;
        let t = stat.since_epoch()?;
        (e.size == stat.size && e.mtime_s == t.as_secs() && e.mtime_ns == t.subsec_nanos())
            .then_some(e.sha256.as_str())
    }

    /// Records `sha256` for the file at `path`, whose stat was `stat` before it was hashed,
    /// starting at `hashed_at`; a file modified too shortly before is not recorded.
    pub(crate) fn put(&mut self, path: PathBuf, stat: Stat, hashed_at: SystemTime, sha256: String) {
        let Some(t) = stat.since_epoch() else {
            return;
        };
        if stat.mtime + RACY > hashed_at {
            self.changed |= self.files.remove(&path).is_some();
            return;
        }
        let entry = Entry {
            size: stat.size,
            mtime_s: t.as_secs(),
            mtime_ns: t.subsec_nanos(),
            sha256,
        };
        if self.files.get(&path) != Some(&entry) {
            self.files.insert(path, entry);
            self.changed = true;
        }
    }

    /// Writes the cache back if it changed (through a temporary file and a rename, so that
    /// two processes never leave a torn file; the last one wins). Failing is not an error:
    /// files are then hashed again next time.
    pub(crate) fn save(mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        if !self.changed {
            return;
        }
        self.files.retain(|p, _| p.exists());
        let Some(dir) = path.parent() else {
            return;
        };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let file = File {
            version: VERSION,
            files: self.files,
        };
        let Ok(text) = serde_json::to_vec(&file) else {
            return;
        };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".hashes.{}.{n}.tmp", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
