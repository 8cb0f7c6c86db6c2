//! Patched runs of a target prompt for every start layer (docs/method.md, "Patching"), computed two ways: the
//! naive way (the whole prompt through every layer for each start layer, as the reference
//! pipeline does) and incrementally (docs/method.md, "Incremental patching"), which must agree to float tolerance (the
//! property test in `tests/patch.rs`).
//!
//! **Why the incremental path is exact.** Patching position `p` in layers `j..L-1` leaves
//! every block input below layer `j + 1` and every position before `p` in every layer as in
//! the unpatched run (attention is causal). So one unpatched run of the target, keeping every
//! block's output and KV cache ([`Baseline`]), serves every start layer: for start layer `j`
//! take the unpatched output of block `j` at positions `p..T`, patch its row `p`, and run only
//! those `T - p` positions through blocks `j+1..L` with the cached keys and values of positions
//! `< p` as `past`, patching row `p` after each block. All start layers of one target run as
//! one batch (start layer `j` joins the batch at block `j + 1`, so block `l` runs `l` rows).
//! The head is applied only to the last position. Generation continues from the patched cache
//! of each start layer (blocks `0..=j` keep the unpatched cache).
//!
//! Two scopes: [`Scope::FromLayer`] patches blocks `j..L`, [`Scope::SingleLayer`]
//! only block `j` (the "HeteroPatch" variant of Dumas et al., at the last prompt token).

mod baseline;
mod generate;
mod incremental;
mod naive;
mod spec;

pub use baseline::Baseline;
pub(crate) use generate::stops_from;
pub use generate::{GENERATION_BATCH, answer_stops, generate_grouped, generate_many};
pub use incremental::{Batching, incremental, patched, patched_many};
pub use naive::naive;
pub use spec::{Generation, LayerResults, Patch, Patched, Scope};
