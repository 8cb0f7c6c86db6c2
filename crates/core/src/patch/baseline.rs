//! The unpatched run of a prompt, kept whole: every block's output and KV cache, from which
//! every patch of the prompt starts.

use super::generate::greedy_batch;
use super::spec::{Dims, Generation, Patched, dims};
use crate::model::{LayerKv, Model, softmax};
use crate::prefix::{Continuation, Continued, PrefixRun};
use crate::{Error, ShapeError};

/// One unpatched run of a prompt: every block's output and KV cache, and the logits at the
/// last position. Shared by every patch of the prompt.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub(super) ids: Vec<u32>,
    pub(super) d: usize,
    /// Block outputs, `[L][T * d]`.
    pub(super) outputs: Vec<Vec<f32>>,
    /// Block caches, `[1, kv, T, hd]` each.
    pub(super) cache: Vec<LayerKv>,
    pub(super) logits: Vec<f32>,
}

impl Baseline {
    /// Runs `ids` (one unpadded prompt) through the whole model, keeping everything.
    pub fn run(model: &mut Model, ids: &[u32]) -> Result<Baseline, Error> {
        let Dims {
            layers: n_layers,
            d,
            ..
        } = dims(model);
        // A prompt run whole is its own prefix run, plus the logits after it.
        let PrefixRun {
            ids,
            cache,
            outputs,
        } = PrefixRun::run(model, ids)?;
        let t = ids.len();
        let logits = model.logits(&outputs[n_layers - 1][(t - 1) * d..t * d])?;
        Ok(Baseline {
            ids,
            d,
            outputs,
            cache,
            logits,
        })
    }

    /// [`Baseline::run`] continuing from a shared prefix run: only the tokens after it are
    /// computed (docs/method.md, "Shared prefixes"). Equal to [`Baseline::run`] of `ids` to float tolerance.
    pub fn run_from(model: &mut Model, prefix: &PrefixRun, ids: &[u32]) -> Result<Baseline, Error> {
        let mut one = Baseline::run_many(model, &[(Some(prefix), ids)])?;
        Ok(one.pop().expect("one prompt, one baseline"))
    }

    /// Unpatched runs of several prompts, each continuing its prefix run if it has one, in
    /// batches of up to [`crate::latents::BATCH`] rows laid out as a [`Continuation`] (one
    /// backend call per block for a whole batch), and one head for the last rows of all.
    /// Equal to [`Baseline::run`] of each prompt to float tolerance.
    pub fn run_many(
        model: &mut Model,
        prompts: &[(Option<&PrefixRun>, &[u32])],
    ) -> Result<Vec<Baseline>, Error> {
        Baseline::run_groups(model, &[prompts])
    }

    /// [`Baseline::run_many`] with the block calls split by group: the prompts of one group
    /// share block calls, those of different groups never do, and one head serves the last
    /// rows of every group (a sweep keeps each target's blocks to itself, where larger
    /// left-padded block calls do not pay on the CPU, and streams the unembedding once for
    /// all its targets). Returns the baselines of all groups in order.
    pub fn run_groups(
        model: &mut Model,
        groups: &[&[(Option<&PrefixRun>, &[u32])]],
    ) -> Result<Vec<Baseline>, Error> {
        let Dims {
            layers: n_layers,
            d,
            kv_heads: kv,
            head_dim: hd,
            ..
        } = dims(model);
        let vocab = model.info().vocab as usize;
        let mut out = Vec::new();
        let mut last: Vec<f32> = Vec::new();
        for chunk in groups.iter().flat_map(|g| g.chunks(crate::latents::BATCH)) {
            if chunk.iter().any(|(_, ids)| ids.is_empty()) {
                return Err(ShapeError::EmptyPrompt.into());
            }
            let rows: Vec<Continued<'_>> = chunk
                .iter()
                .map(|&(prefix, ids)| (prefix, ids, ids.len() - 1))
                .collect();
            let batch = Continuation::plan(&rows)?;
            let t = batch.t;
            // Every block's output `[rows, t, d]`.
            let mut outs: Vec<Vec<f32>> = Vec::with_capacity(n_layers);
            let presents = batch.run(model, &mut |_, h| {
                outs.push(h.to_vec());
                Ok(())
            })?;
            last.extend(
                (0..rows.len())
                    .flat_map(|r| &outs[n_layers - 1][(r * t + t - 1) * d..(r * t + t) * d]),
            );
            for (r, &(prefix, ids, _)) in rows.iter().enumerate() {
                let (keep, pad) = (batch.keep[r], batch.pad(r));
                let outputs = outs
                    .iter()
                    .enumerate()
                    .map(|(l, h)| {
                        let mut all = Vec::with_capacity(ids.len() * d);
                        if let Some(prefix) = prefix {
                            all.extend_from_slice(&prefix.outputs[l][..keep * d]);
                        }
                        all.extend_from_slice(&h[(r * t + pad) * d..(r + 1) * t * d]);
                        all
                    })
                    .collect();
                out.push(Baseline {
                    ids: ids.to_vec(),
                    d,
                    outputs,
                    cache: presents
                        .iter()
                        .map(|p| batch.row_cache(p, r, kv, hd))
                        .collect(),
                    logits: Vec::new(),
                });
            }
        }
        let logits = model.logits(&last)?;
        for (base, row) in out.iter_mut().zip(logits.chunks_exact(vocab)) {
            base.logits = row.to_vec();
        }
        Ok(out)
    }

    /// The prompt.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The unpatched next-token logits after the prompt.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The first block whose output holds NaN or an infinity, if one does: where a broken
    /// model first breaks.
    pub fn first_non_finite_block(&self) -> Option<usize> {
        self.outputs
            .iter()
            .position(|o| o.iter().any(|x| !x.is_finite()))
    }

    /// The unpatched next-token probabilities after the prompt.
    pub fn probs(&self) -> Vec<f32> {
        softmax(&self.logits)
    }

    /// The output of every block at `position`, `[L, d]`: the latent this prompt yields.
    pub fn residuals_at(&self, position: usize) -> Result<Vec<f32>, Error> {
        if position >= self.ids.len() {
            return Err(ShapeError::Outside {
                position,
                len: self.ids.len(),
            }
            .into());
        }
        let d = self.d;
        Ok(self
            .outputs
            .iter()
            .flat_map(|o| &o[position * d..(position + 1) * d])
            .copied()
            .collect())
    }

    /// Unpatched greedy generation, continuing from the cache.
    pub fn generate(
        &self,
        model: &mut Model,
        generation: &Generation<'_>,
    ) -> Result<Vec<u32>, Error> {
        let gens = greedy_batch(
            model,
            self.cache.clone(),
            &[self.ids.len()],
            self.logits.clone(),
            generation,
        )?;
        Ok(gens.into_iter().next().unwrap_or_default())
    }

    /// The unpatched run as a one-row [`Patched`], to generate together with patched rows.
    pub fn unpatched(&self) -> Patched {
        Patched {
            vocab: self.logits.len(),
            len: self.ids.len(),
            probs: softmax(&self.logits),
            logits: self.logits.clone(),
            caches: self.cache.clone(),
        }
    }
}
