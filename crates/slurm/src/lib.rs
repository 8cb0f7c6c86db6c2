//! A sweep as Slurm work.
//!
//! A *study* is one sweep config run as a job array on a cluster whose nodes share a
//! filesystem. [`plan`] divides it into *tasks*, one per checkpoint and shard, so that a task
//! loads one checkpoint once: each task runs `xlpatch sweep --shard k/s` on a config that names
//! only its checkpoint (everything else as in the study's config, every path absolute), into
//! its own results directory. The study directory holds the job table (`study.json`, and
//! `tasks.tsv` for the array scripts), the per-checkpoint configs, the sbatch scripts (one
//! array per `MaxArraySize` indices, each after the one before so that at most `%M` tasks
//! run at once, and a merge job that depends on all of them), the logs,
//! the tasks' results and finally the merged results.
//!
//! **Status comes from the results on disk**, never from Slurm accounting (which many clusters
//! disable): a task is done when its results directory holds all its units. The results
//! writer keeps every unit whole (a killed task loses at most the unit in flight), so a
//! preempted, cancelled or timed-out task resumes when its index is submitted again, and
//! [`submit`] with the missing indices is the resubmission.
//!
//! [`merge`] joins the tasks' results in the order a single-process sweep writes them
//! (checkpoints by step, then the prompt set's targets), after checking that every task ran
//! the study's config on the checkpoint the job table names (same content hash) with the same
//! prompt set.
#![deny(missing_docs)]

mod merge;
mod plan;
mod scheduler;
mod script;

pub use merge::merge;
pub use plan::{Checkpoint, Runtime, SlurmConfig, Study, Task, TaskStatus, plan};
pub use scheduler::{Slurm, Submission, array_spec, parse_job_id, parse_max_array_size, submit};

use std::path::PathBuf;

/// Errors of planning, submitting, checking and merging a study.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sweep config, the cluster config or the options do not make a study.
    #[error("{0}")]
    Config(String),
    /// The engine refused something (a config, a model directory, a results directory).
    #[error(transparent)]
    Core(#[from] xlpatch_core::Error),
    /// A results directory could not be read or written.
    #[error(transparent)]
    Results(#[from] xlpatch_results::Error),
    /// A checkpoint's manifest could not be read.
    #[error(transparent)]
    Model(#[from] xlpatch_model::ModelError),
    /// A file of the study could not be read or written.
    #[error("{}: {what}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
    /// A Slurm command could not be run or failed.
    #[error("{command}: {what}")]
    Slurm {
        /// The command line.
        command: String,
        /// What went wrong, with the command's output.
        what: String,
    },
    /// Tasks are not complete (a merge needs all of them).
    #[error(
        "{} of {total} tasks are incomplete ({}); run `xlpatch slurm resubmit --study {}`",
        missing.len(),
        missing.iter().map(|(i, name)| format!("{i}: {name}")).collect::<Vec<_>>().join(", "),
        study.display()
    )]
    Incomplete {
        /// The study directory.
        study: PathBuf,
        /// How many tasks the study has.
        total: usize,
        /// Index and description of each incomplete task.
        missing: Vec<(usize, String)>,
    },
    /// A task's results do not belong to the study.
    #[error("{}: {what}", path.display())]
    Mismatch {
        /// The task's results directory.
        path: PathBuf,
        /// What differs.
        what: String,
    },
}

/// `map_err` for I/O on `path`.
fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}
