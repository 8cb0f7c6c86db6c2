//! The files of an xlpatch run as typed data, and the only code that reads or writes them:
//!
//! - `results.jsonl` and `results.csv`: one [`Row`] per (checkpoint, setting, target pair,
//!   concept pair, start layer), appended a unit at a time, resumable ([`ResultsWriter`],
//!   [`read_rows`]) and mergeable ([`merge`]);
//! - `run.json` ([`RunFile`]): the checkpoints a sweep ran on, and what a reader needs of its
//!   config;
//! - `prompts.jsonl` ([`PromptRecord`]): every prompt with its token ids;
//! - `timings.jsonl` ([`Timing`]): per-unit wall times.
//!
//! The engine (`xlpatch-core`) writes through this crate and the report (`xlpatch-report`)
//! reads through it; neither knows the other. Formats are kept backward compatible: a
//! results directory written by an earlier version resumes, merges and reports.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

mod kinds;
mod merge;
mod prompts;
mod row;
mod run;
mod store;

pub use kinds::{PromptKind, Role, Setting, Variant};
pub use merge::merge;
pub use prompts::{PromptRecord, prompts_text, read_prompts};
pub use row::Row;
pub use run::{
    CONFIG_FILE, ModelEntry, PROMPTS_FILE, RUN_FILE, RUN_FORMAT_VERSION, RunFile, Study,
    TIMINGS_FILE, Timing, store_or_check,
};
pub use store::{
    CSV_FILE, Dropped, JSONL_FILE, LOCK_FILE, ResultsWriter, read_rows, read_rows_noting_dropped,
};

/// Errors reading or writing a run's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of a JSON or JSONL file is not what it should be.
    #[error("{}: line {line}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A result row does not fit [`Row`].
    #[error("{}: a row of unit {unit:?}: {source}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// The row's unit.
        unit: String,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A line of `results.jsonl` has no `unit`.
    #[error("{}: line {line}: a row without its unit", path.display())]
    NoUnit {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
    },
    /// Another writer holds the directory.
    #[error("{}: another sweep is writing here; wait for it or use another --out", dir.display())]
    Locked {
        /// The results directory.
        dir: PathBuf,
    },
    /// A unit was appended twice, or its rows disagree on their unit.
    #[error("unit {unit} is already written or its rows disagree on their unit")]
    UnitConflict {
        /// The unit.
        unit: String,
    },
    /// A file of the results directory holds another sweep's config, models or prompts.
    #[error(
        "{}: belongs to another sweep (config, models or prompts differ); use another --out",
        path.display()
    )]
    OtherSweep {
        /// The file.
        path: PathBuf,
    },
    /// A file has a format version this crate does not read.
    #[error("{}: format_version {found} is not supported (this xlpatch reads {supported})", path.display())]
    FormatVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version read.
        supported: u32,
    },
    /// A prompt record's role and setting do not fit together.
    #[error(
        "{}: line {line}: role {role:?} with setting {setting:?}: expected a target, or a source \
         with its setting",
        path.display()
    )]
    PromptRole {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The record's role.
        role: Role,
        /// The record's setting.
        setting: Option<Setting>,
    },
    /// `merge` was given no input.
    #[error("nothing to merge")]
    NothingToMerge,
    /// `merge` would overwrite results.
    #[error("{}: already exists; merge into a new directory", path.display())]
    MergeTargetExists {
        /// The existing results file.
        path: PathBuf,
    },
    /// A merge input belongs to another sweep than the first input.
    #[error(
        "{}: its config, run description or prompt set differs from {}",
        dir.display(),
        first.display()
    )]
    NotOneSweep {
        /// The input.
        dir: PathBuf,
        /// The first input.
        first: PathBuf,
    },
    /// A unit found in two merge inputs has different rows.
    #[error("{}: unit {unit} differs from another input's", dir.display())]
    UnitDiffers {
        /// The input.
        dir: PathBuf,
        /// The unit.
        unit: String,
    },
}

/// An [`Error::Io`] about `path`.
pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
