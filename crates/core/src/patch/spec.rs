//! What a patch is and what patched runs give: the scope of a start layer, the patch, when
//! generation stops, the per-start-layer results, and writing a latent with the strategy.

use xlpatch_abi::{PatchSite, PatchStrategy, TensorMut, TensorRef};

use crate::model::{LayerKv, Model};
use crate::{Error, ShapeError};

/// Which blocks a start layer patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Blocks `j..L`: every block from the start layer on.
    FromLayer,
    /// Block `j` only.
    SingleLayer,
}

impl Scope {
    /// Whether start layer `start` patches the output of block `layer`.
    pub fn patches(self, start: usize, layer: usize) -> bool {
        match self {
            Scope::FromLayer => layer >= start,
            Scope::SingleLayer => layer == start,
        }
    }
}

/// A patch: where, with what, in which blocks.
#[derive(Debug, Clone, Copy)]
pub struct Patch<'a> {
    /// The token position patched.
    pub position: usize,
    /// The latent per block, `[L, d]`.
    pub latent: &'a [f32],
    /// Which blocks each start layer patches.
    pub scope: Scope,
}

/// When greedy generation stops.
pub struct Generation<'a> {
    /// At most this many tokens (0: no generation).
    pub max_new: usize,
    /// Stops after a token for which this is true (that token included).
    pub stop: &'a dyn Fn(u32) -> bool,
}

impl std::fmt::Debug for Generation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("max_new", &self.max_new)
            .finish_non_exhaustive()
    }
}

impl Generation<'_> {
    /// No generation.
    pub const NONE: Generation<'static> = Generation {
        max_new: 0,
        stop: &|_| true,
    };
}

/// The results of one target for every start layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerResults {
    /// The vocabulary size.
    pub vocab: usize,
    /// Next-token probabilities at the last position, `[L, vocab]` (row `j`: start layer `j`).
    pub probs: Vec<f32>,
    /// Greedily generated tokens per start layer.
    pub generations: Vec<Vec<u32>>,
}

impl LayerResults {
    /// The number of start layers.
    pub fn n_layers(&self) -> usize {
        self.probs.len() / self.vocab.max(1)
    }

    /// The distribution of start layer `j`.
    pub fn probs_at(&self, j: usize) -> &[f32] {
        &self.probs[j * self.vocab..(j + 1) * self.vocab]
    }
}

/// The sizes of a model the patch code works with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    /// Decoder blocks.
    pub(super) layers: usize,
    /// The residual stream's width.
    pub(super) d: usize,
    /// Key/value heads.
    pub(super) kv_heads: usize,
    /// Each head's width.
    pub(super) head_dim: usize,
}

/// The [`Dims`] of `model`.
pub(super) fn dims(model: &Model) -> Dims {
    let info = model.info();
    Dims {
        layers: info.n_layers as usize,
        d: info.d_model as usize,
        kv_heads: info.n_kv_heads as usize,
        head_dim: info.head_dim as usize,
    }
}

/// Writes `source` rows into `hidden` (`[batch, seq, d]`) at `sites` with the strategy.
pub(super) fn apply(
    strategy: &dyn PatchStrategy,
    layer: usize,
    hidden: &mut [f32],
    shape: [usize; 3],
    sites: &[PatchSite],
    source: &[f32],
) -> Result<(), Error> {
    let source_shape = [sites.len(), shape[2]];
    strategy.apply(
        layer as u32,
        TensorMut::new(hidden, &shape)?,
        sites,
        TensorRef::new(source, &source_shape)?,
    )?;
    Ok(())
}

/// Checks that `patch` fits a `t`-token prompt of `model`.
pub(super) fn check(model: &Model, t: usize, patch: &Patch<'_>) -> Result<(), Error> {
    let Dims {
        layers: n_layers,
        d,
        ..
    } = dims(model);
    if patch.position >= t || patch.latent.len() != n_layers * d {
        return Err(ShapeError::Patch {
            position: patch.position,
            len: t,
            latent: patch.latent.len(),
            layers: n_layers,
            d,
        }
        .into());
    }
    Ok(())
}

/// Patched runs of one prompt for every start layer, before generation: the distributions,
/// and (when kept) the logits and caches generation continues from.
#[derive(Debug, Clone)]
pub struct Patched {
    pub(super) vocab: usize,
    /// The prompt's length.
    pub(super) len: usize,
    pub(super) probs: Vec<f32>,
    /// `[rows, vocab]`.
    pub(super) logits: Vec<f32>,
    /// Per block, `[rows, kv, len, hd]`; empty when not kept.
    pub(super) caches: Vec<LayerKv>,
}

impl Patched {
    /// The distributions, `[rows, vocab]`.
    pub fn probs(&self) -> &[f32] {
        &self.probs
    }

    /// The number of rows (start layers).
    pub fn rows(&self) -> usize {
        self.logits.len() / self.vocab.max(1)
    }

    /// With generations, the results of every row.
    pub fn into_results(self, generations: Vec<Vec<u32>>) -> LayerResults {
        LayerResults {
            vocab: self.vocab,
            probs: self.probs,
            generations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_patch_the_right_blocks() {
        assert!(Scope::FromLayer.patches(2, 2) && Scope::FromLayer.patches(2, 5));
        assert!(!Scope::FromLayer.patches(2, 1));
        assert!(Scope::SingleLayer.patches(2, 2) && !Scope::SingleLayer.patches(2, 3));
    }
}
