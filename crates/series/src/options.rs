//! How a series sweep runs.

use std::path::PathBuf;

use xlpatch_export::Dtype;

/// How a series sweep runs.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// Exports and per-checkpoint runs go here.
    pub work: PathBuf,
    /// Keep downloads and exports.
    pub keep: bool,
    /// The most bytes on disk at once (downloads plus exports), if bounded.
    pub disk_budget: Option<u64>,
    /// How exports store weights; none: the checkpoint's own precision where that is f16
    /// (computed in f32), else f32.
    pub dtype: Option<Dtype>,
    /// A tokenizer for revisions without `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
}
