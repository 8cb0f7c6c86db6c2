//! A checkpoint series from the hub through download, export and sweep, pipelined and within
//! a disk budget, resumable after a kill at any point.
//!
//! **Pipeline.** A producer thread downloads checkpoint k+1 into the hub cache, checks it,
//! exports it into the work directory and deletes the download, while the caller's thread
//! sweeps checkpoint k with the engine's public sweep ([`xlpatch_core::sweep::run`]) into a
//! results directory of its own (`work/runs/<checkpoint>`). When k's rows are durable, they
//! are appended unit by unit to the series' results directory and k's export and run are
//! deleted (unless `keep`). At most two exports and one download are on disk at once; a
//! budget too small for that runs one checkpoint at a time, and one too small for a single
//! checkpoint is refused before anything is downloaded.
//!
//! **Why one run per checkpoint.** The engine records the whole model list of a sweep in
//! `config.toml` and `run.json` and refuses a results directory whose list differs, and it
//! reads every manifest before it starts; a series whose checkpoints do not exist yet cannot
//! be one engine sweep. Each checkpoint is one engine sweep of one model instead, and the
//! series' directory gets the config (with its `hf://` specs), the prompt set (equal in every
//! run: checked), a `run.json` in the engine's format listing the checkpoints done, and
//! `series.json`, the series' record (revisions, commits, steps, tokens, weight hashes,
//! duplicates).
//!
//! **Resume.** Downloads resume from hf-hub's `.part` files and skip files already checked
//! in the cache; an export is written to `<name>.partial` and renamed when complete; an
//! engine run resumes by itself; appending skips units already in the series' results; the
//! state file marks a checkpoint done only after its rows are appended.

mod budget;
mod error;
mod options;
mod pipeline;
mod plan;
#[cfg(test)]
mod tests;

pub use budget::{Needs, needs};
pub use error::SeriesError;
pub use options::SeriesOptions;
pub use pipeline::{SeriesOutcome, sweep};
pub use plan::{Plan, Planned, duplicates, fetch, format_plan, plan};
