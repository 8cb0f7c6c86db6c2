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

mod diff;
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
    CONFIG_FILE, ModelEntry, PROMPTS_FILE, RUN_FILE, RUN_FORMAT_VERSION, RunFile, ShardRecord,
    Study, TIMINGS_FILE, Timing, store_or_check,
};
pub use store::{
    CSV_FILE, Dropped, JSONL_FILE, LOCK_FILE, ResultsWriter, read_rows, read_rows_noting_dropped,
};

/// Errors reading or writing a run's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of a JSON or JSONL file is not what it should be.
    #[error("{}: line {line}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A result row does not fit [`Row`].
    #[error(
        "{}: line {line}: a row of unit {unit:?}{}",
        path.display(),
        if *null {
            " holds null where a number belongs (a NaN or an infinity that an older xlpatch \
             wrote as null: delete the unit's lines and resume the sweep to compute it again)"
        } else {
            ""
        }
    )]
    Row {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The row's unit.
        unit: String,
        /// Whether the row holds a null where a number belongs.
        null: bool,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A row to write holds NaN or an infinity (JSON has no such number: it would be
    /// written as null and the results directory could not be read back).
    #[error(
        "unit {unit}: column {column} is {value}; a row with a non-finite value is not written"
    )]
    NonFinite {
        /// The unit.
        unit: String,
        /// The column.
        column: String,
        /// The value.
        value: f32,
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
        "{}: belongs to another sweep ({differences}); use another --out, or the config that \
         wrote it",
        path.display()
    )]
    OtherSweep {
        /// The file.
        path: PathBuf,
        /// What differs, `key: stored → new`.
        differences: String,
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
        "{}: its {file} differs from {}'s ({differences}): not a shard of the same sweep",
        dir.display(),
        first.display()
    )]
    NotOneSweep {
        /// The input.
        dir: PathBuf,
        /// The first input.
        first: PathBuf,
        /// The file that differs.
        file: String,
        /// What differs, `key: first's → this input's`.
        differences: String,
    },
    /// One directory given twice to `merge`, or two holding the same shard.
    #[error(
        "{} and {}: {what}; give each shard once",
        first.display(),
        dir.display()
    )]
    DuplicateShard {
        /// The first input holding it.
        first: PathBuf,
        /// The other.
        dir: PathBuf,
        /// `both hold shard k/n`, or `the same directory`.
        what: String,
    },
    /// Shards of a sweep missing from `merge`'s inputs.
    #[error(
        "shard {} of {count} is missing (given: {}); merge every shard of the sweep",
        missing.join(", "),
        given.join(", ")
    )]
    MissingShards {
        /// The shards not given, `k/n`.
        missing: Vec<String>,
        /// How many shards the sweep has.
        count: usize,
        /// The shards given, `k/n`.
        given: Vec<String>,
    },
    /// Inputs that disagree on how the sweep was split.
    #[error(
        "{} is {}, but {} is {}: shards of one sweep are split alike",
        first.display(),
        first_shard,
        dir.display(),
        shard
    )]
    OtherSplit {
        /// The first input.
        first: PathBuf,
        /// Its shard, or `a whole sweep`.
        first_shard: String,
        /// The input that differs.
        dir: PathBuf,
        /// Its shard.
        shard: String,
    },
    /// Units of the sweep's plan that no input holds.
    #[error("{missing} of the sweep's {total} units are in no input (first: {first}){hint}")]
    IncompleteMerge {
        /// How many units are missing.
        missing: usize,
        /// Units in the plan.
        total: usize,
        /// The first missing unit.
        first: String,
        /// What to do.
        hint: String,
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
