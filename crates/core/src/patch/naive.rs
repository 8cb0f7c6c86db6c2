//! The naive computation, the reference: the whole prompt through every block for each
//! start layer. Never removed and never given a shared prefix, so that the incremental path
//! (and the prefixes) are checked against it.

use xlpatch_abi::{PatchSite, PatchStrategy};

use super::generate::greedy_batch;
use super::spec::{Dims, Generation, LayerResults, Patch, apply, check, dims};
use crate::Error;
use crate::model::{Model, softmax};

/// The naive computation: for every start layer, the whole prompt through every block with
/// the patch written by a hook, then generation from that run's cache.
pub fn naive(
    model: &mut Model,
    ids: &[u32],
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    generation: &Generation<'_>,
) -> Result<LayerResults, Error> {
    let t = ids.len();
    check(model, t, patch)?;
    let Dims {
        layers: n_layers,
        d,
        ..
    } = dims(model);
    let vocab = model.info().vocab as usize;
    let site = [PatchSite {
        batch: 0,
        position: patch.position,
    }];
    let mut probs = Vec::with_capacity(n_layers * vocab);
    let mut generations = Vec::with_capacity(n_layers);
    for j in 0..n_layers {
        let (hidden, cache) = model.run_prompt(ids, &mut |layer, out| {
            if patch.scope.patches(j, layer) {
                let latent = &patch.latent[layer * d..(layer + 1) * d];
                apply(strategy, layer, out, [1, t, d], &site, latent)?;
            }
            Ok(())
        })?;
        let logits = model.logits(&hidden[(t - 1) * d..])?;
        probs.extend(softmax(&logits));
        let mut row = greedy_batch(model, cache, &[t], logits, generation)?;
        generations.push(row.pop().unwrap_or_default());
    }
    Ok(LayerResults {
        vocab,
        probs,
        generations,
    })
}
