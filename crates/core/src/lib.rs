//! The xlpatch engine. For now: where plugins are found and how a run's plugins are chosen;
//! the patching engine (prompts, KV-reusing runs, metrics, sweeps) grows here.
//!
//! The engine is written against the kind traits of [`xlpatch_abi`] (`Backend`, `Extractor`,
//! `PatchStrategy`, `Metric`), never against a concrete plugin, so built-in plugins and users'
//! plugins are used the same way: loaded from a library by name.
#![deny(missing_docs)]

pub mod plugins;

pub use xlpatch_abi as abi;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A plugin could not be loaded or instantiated.
    #[error(transparent)]
    Plugin(#[from] xlpatch_abi::loader::LoadError),
}
