//! What can go wrong with a series.

use std::path::PathBuf;

use xlpatch_hub::HubError;

/// What can go wrong with a series.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeriesError {
    /// The hub.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// An export.
    #[error("cannot export {checkpoint}")]
    Export {
        /// The checkpoint.
        checkpoint: String,
        /// Why.
        source: xlpatch_export::ExportError,
    },
    /// The engine.
    #[error(transparent)]
    Core(#[from] xlpatch_core::Error),
    /// A results directory.
    #[error(transparent)]
    Results(#[from] xlpatch_results::Error),
    /// The disk budget cannot hold one checkpoint.
    #[error(
        "--disk-budget {budget} bytes cannot hold checkpoint {checkpoint}: it needs about {need} bytes on disk at once (download {download} + export {export}); raise the budget to at least {need} or free space"
    )]
    Budget {
        /// The budget.
        budget: u64,
        /// The largest checkpoint.
        checkpoint: String,
        /// What it needs.
        need: u64,
        /// Its download.
        download: u64,
        /// Its export (estimated).
        export: u64,
    },
    /// A file system error.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Something that does not fit together.
    #[error("{0}")]
    Inconsistent(String),
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SeriesError {
    let path = path.into();
    move |source| SeriesError::Io { path, source }
}
