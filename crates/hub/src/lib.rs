//! Checkpoint series on the Hugging Face hub.
//!
//! A study names its series as `hf://ORG/NAME[@REVS][?OPTS]` ([`spec`]); the repository's refs
//! are listed, their names parsed into training steps ([`names`]) and thinned by a policy
//! ([`select`]); each selected revision's checkpoint files are downloaded into the cache that
//! Python's `huggingface_hub` uses (`models--org--name/{blobs,snapshots,refs}`), through the
//! `hf-hub` crate, so a user's existing cache is reused and a compute node without internet
//! can run from a cache filled beforehand ([`Hub`]).
//!
//! `hf-hub` 0.4's blocking client (ureq) does the revision lookups and the downloads (with
//! resumable `.part` files and the blob/snapshot/ref layout); it has no call for a
//! repository's refs or file tree, so those two are plain GETs with the same HTTP client.
//! The tree gives each file's size and, for LFS files, its sha256, against which every
//! download is checked.

mod client;
pub mod names;
pub mod select;
pub mod spec;

use std::path::PathBuf;

pub use client::{Checkpoint, Hub, HubOptions, TreeEntry};
pub use names::{RefStep, Scheme, parse_ref};
pub use select::{HubRef, RefKind, Selected, Selection, select};
pub use spec::{Policy, RefKinds, SeriesSpec};

/// What can go wrong with the hub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A spec that does not parse.
    #[error("{spec}: {why}")]
    Spec {
        /// The spec as written.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// An HTTP request that failed.
    #[error("{url}: {what}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        what: String,
    },
    /// A revision that lacks a file a checkpoint needs.
    #[error("{repo}@{revision}: {file} is missing{found}")]
    MissingFile {
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
        /// The file.
        file: String,
        /// What the revision has instead, if anything useful.
        found: String,
    },
    /// A download that failed.
    #[error("{repo}@{revision}: cannot download {file}: {what}")]
    Download {
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
        /// The file.
        file: String,
        /// Why.
        what: String,
    },
    /// A download whose size or hash did not match the repository's tree, every try.
    #[error(
        "{repo}@{revision}: {file} does not match the repository ({what}) after {tries} tries; refused"
    )]
    Corrupt {
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
        /// The file.
        file: String,
        /// Expected against found.
        what: String,
        /// How many downloads were tried.
        tries: usize,
    },
    /// Offline, and the cache lacks something.
    #[error(
        "offline: {what} is not in the cache {cache}; fetch it first with `xlpatch series fetch` on a machine with internet"
    )]
    NotCached {
        /// What is missing.
        what: String,
        /// The cache directory.
        cache: PathBuf,
    },
    /// A file system error.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A response that is not what the hub sends.
    #[error("{url}: unexpected response: {what}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        what: String,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.into();
    move |source| HubError::Io { path, source }
}
