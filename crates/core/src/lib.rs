//! The xlpatch engine. For now: where plugins are found and how a run's plugins are chosen;
//! the patching engine (prompts, KV-reusing runs, metrics, sweeps) grows here.
//!
//! The engine is written against the kind traits of [`xlpatch_abi`] (`Backend`, `Extractor`,
//! `PatchStrategy`, `Metric`), never against a concrete plugin, so built-in plugins and users'
//! plugins are used the same way: loaded from a library by name.
#![deny(missing_docs)]

pub mod config;
mod errors;
pub mod latents;
pub mod model;
pub mod pairs;
pub mod patch;
pub mod plugins;
pub mod prefix;
pub mod prompt;
pub use xlpatch_concepts as concepts;
pub use xlpatch_results as results;
pub use xlpatch_rng as rng;
pub mod sweep;

pub use errors::{ConfigError, PromptError, ShapeError, TemplateProblem, TokenizerError};
pub use xlpatch_abi as abi;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A plugin could not be loaded or instantiated.
    #[error(transparent)]
    Plugin(#[from] xlpatch_abi::loader::LoadError),
    /// A plugin call failed.
    #[error(transparent)]
    Call(#[from] xlpatch_abi::PluginError),
    /// A model directory could not be read.
    #[error(transparent)]
    Model(#[from] xlpatch_model::ModelError),
    /// A tokenizer could not be loaded or used.
    #[error(
        "tokenizer{}",
        path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default()
    )]
    Tokenizer {
        /// The tokenizer file or model directory, when known.
        path: Option<std::path::PathBuf>,
        /// What went wrong.
        source: TokenizerError,
    },
    /// Sizes or shapes that do not fit together.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A prompt, a concept pair or a token set could not be built.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// A sweep configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file of the results directory could not be read or written.
    #[error(transparent)]
    Results(#[from] xlpatch_results::Error),
    /// A prompt set could not be replayed.
    #[error("{}{}: {problem}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    Replay {
        /// The prompt set.
        path: std::path::PathBuf,
        /// The line to blame, if one is.
        line: Option<usize>,
        /// What is wrong.
        problem: sweep::ReplayError,
    },
    /// The concept table refused a lookup.
    #[error(transparent)]
    Concepts(#[from] xlpatch_concepts::Error),
    /// A model computed NaN or an infinity: its weights (or activations) are broken, and a
    /// probability computed from them means nothing.
    #[error(
        "{checkpoint}: {what} is {value} for prompt {prompt}{}: the model's weights or \
         activations hold NaN or infinity, and no probability computed from them means \
         anything; export the checkpoint again from intact weights, or leave it out",
        layer.map(|l| format!(" at layer {l}")).unwrap_or_default()
    )]
    NonFinite {
        /// The checkpoint (its directory or name).
        checkpoint: String,
        /// The prompt: a sweep's item key, or the text.
        prompt: String,
        /// The start layer of the patched run, or the first block whose output is not finite.
        layer: Option<usize>,
        /// What is not finite (`P(next token)`, a metric column, the logits).
        what: String,
        /// The value found.
        value: f32,
    },
}
