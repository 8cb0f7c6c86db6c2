//! Shared prompt prefixes (docs/method.md, "Shared prefixes"): prompts with the same demonstrations
//! begin with the same tokens, and with causal attention those positions have the same keys, values
//! and block outputs in every such prompt. A [`PrefixCache`] runs each distinct prefix once per
//! checkpoint; [`crate::patch::Baseline::run_from`] and [`crate::latents::residuals_from`] continue
//! from it and compute only the rest of each prompt.

use std::collections::HashMap;
use std::rc::Rc;

use crate::model::{LayerKv, Model};
use crate::{Error, ShapeError};

/// One prefix run through the whole model.
#[derive(Debug, Clone)]
pub struct PrefixRun {
    pub(crate) ids: Vec<u32>,
    /// Block caches, `[1, kv, P, hd]` each.
    pub(crate) cache: Vec<LayerKv>,
    /// Block outputs, `[L][P * d]`.
    pub(crate) outputs: Vec<Vec<f32>>,
}

impl PrefixRun {
    /// Runs `ids` through every block, keeping caches and outputs.
    pub fn run(model: &mut Model, ids: &[u32]) -> Result<PrefixRun, Error> {
        if ids.is_empty() {
            return Err(ShapeError::EmptyPrompt.into());
        }
        let mut outputs = Vec::with_capacity(model.info().n_layers as usize);
        let (_, cache) = model.run_prompt(ids, &mut |_, out| {
            outputs.push(out.to_vec());
            Ok(())
        })?;
        Ok(PrefixRun {
            ids: ids.to_vec(),
            cache,
            outputs,
        })
    }

    /// The prefix's tokens.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Every block's cache, `[1, kv, P, hd]` each.
    pub fn cache(&self) -> &[LayerKv] {
        &self.cache
    }

    /// Every block's output, `[P * d]` each.
    pub fn outputs(&self) -> &[Vec<f32>] {
        &self.outputs
    }

    /// Its length in tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it has no token (never: [`PrefixRun::run`] refuses an empty prefix).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks that `ids` continues this prefix by at least one token.
    pub(crate) fn check_continues(&self, ids: &[u32]) -> Result<(), Error> {
        if ids.len() <= self.ids.len() || !ids.starts_with(&self.ids) {
            return Err(ShapeError::NotAContinuation {
                len: ids.len(),
                prefix: self.ids.len(),
            }
            .into());
        }
        Ok(())
    }
}

/// One row of a [`Continuation`]: the prefix run it continues (if any), its tokens, and the
/// last token to compute.
pub(crate) type Continued<'a> = (Option<&'a PrefixRun>, &'a [u32], usize);

/// A batch of prompts that continue their prefix runs, each computed up to a last token, in
/// one call per block. Every row is left-aligned to the batch's last column with padding only
/// at its start, so that the distance between any two of its tokens is the true one
/// (sliding-window attention counts columns): the batch computes the last `t` tokens of every
/// row (`t` the longest rest after a prefix); what precedes them comes from the row's prefix
/// cache, and whatever of `t` a shorter row does not need covers the end of its prefix again.
/// A masked key gets exactly zero weight, so each row equals its own run to float tolerance.
pub(crate) struct Continuation<'a, 'r> {
    rows: &'r [Continued<'a>],
    /// Tokens computed per row: the batch's columns after the past.
    pub(crate) t: usize,
    /// Per row, how many cached prefix tokens precede its computed ones.
    pub(crate) keep: Vec<usize>,
    /// Past columns: the largest `keep`.
    pub(crate) past_len: usize,
}

impl<'a, 'r> Continuation<'a, 'r> {
    /// Checks every row and lays out the batch.
    pub(crate) fn plan(rows: &'r [Continued<'a>]) -> Result<Self, Error> {
        for (prefix, ids, end) in rows {
            let p = prefix.map_or(0, |r| r.len());
            if let Some(prefix) = prefix {
                prefix.check_continues(ids)?;
            }
            if *end < p || *end >= ids.len() {
                return Err(ShapeError::NotAfterPrefix {
                    position: *end,
                    prefix: p,
                    len: ids.len(),
                }
                .into());
            }
        }
        let t = rows
            .iter()
            .map(|(r, _, end)| end + 1 - r.map_or(0, |r| r.len()))
            .max()
            .unwrap_or(0);
        let keep: Vec<usize> = rows
            .iter()
            .map(|(_, _, end)| (end + 1).saturating_sub(t))
            .collect();
        let past_len = keep.iter().copied().max().unwrap_or(0);
        Ok(Continuation {
            rows,
            t,
            keep,
            past_len,
        })
    }

    /// Tokens row `r` computes.
    pub(crate) fn len(&self, r: usize) -> usize {
        self.rows[r].2 + 1 - self.keep[r]
    }

    /// Padding columns before row `r`'s computed tokens.
    pub(crate) fn pad(&self, r: usize) -> usize {
        self.t - self.len(r)
    }

    /// Runs every block over the batch; `hook(layer, out)` sees each block's output
    /// `[rows, t, d]`. Returns each block's cache `[rows, kv, past_len + t, hd]`.
    pub(crate) fn run(
        &self,
        model: &mut Model,
        hook: &mut crate::model::LayerHook<'_>,
    ) -> Result<Vec<LayerKv>, Error> {
        let info = model.info();
        let n_layers = info.n_layers as usize;
        let (kv, hd) = (info.n_kv_heads as usize, info.head_dim as usize);
        let (rows, t, past_len) = (self.rows.len(), self.t, self.past_len);
        let total = past_len + t;
        let (mut ids, mut positions, mut mask) = (
            Vec::with_capacity(rows * t),
            Vec::with_capacity(rows * t),
            Vec::with_capacity(rows * total),
        );
        for (r, (_, row, end)) in self.rows.iter().enumerate() {
            let (from, len, pad, keep) = (self.keep[r], self.len(r), self.pad(r), self.keep[r]);
            ids.extend(std::iter::repeat_n(0i64, pad));
            ids.extend(row[from..=*end].iter().map(|&i| i64::from(i)));
            positions.extend(std::iter::repeat_n(0i64, pad));
            positions.extend(from as i64..=*end as i64);
            mask.extend(std::iter::repeat_n(0i64, past_len - keep));
            mask.extend(std::iter::repeat_n(1i64, keep));
            mask.extend(std::iter::repeat_n(0i64, pad));
            mask.extend(std::iter::repeat_n(1i64, len));
        }
        // Each row's cached keys and values, right-aligned in the past columns.
        let past: Vec<LayerKv> = (0..n_layers)
            .map(|layer| {
                let mut key = vec![0f32; rows * kv * past_len * hd];
                let mut value = vec![0f32; rows * kv * past_len * hd];
                for (r, ((prefix, _, _), &keep)) in self.rows.iter().zip(&self.keep).enumerate() {
                    let Some(prefix) = prefix else { continue };
                    let (cache, p) = (&prefix.cache[layer], prefix.len());
                    for h in 0..kv {
                        let src = h * p * hd;
                        let dst = ((r * kv + h) * past_len + past_len - keep) * hd;
                        key[dst..dst + keep * hd].copy_from_slice(&cache.key[src..src + keep * hd]);
                        value[dst..dst + keep * hd]
                            .copy_from_slice(&cache.value[src..src + keep * hd]);
                    }
                }
                LayerKv { key, value }
            })
            .collect();
        let mut hidden = model.embed(&ids, rows)?;
        model.run_layers(
            0..n_layers,
            &mut hidden,
            rows,
            &positions,
            &mask,
            &past,
            past_len,
            hook,
        )
    }

    /// Row `r`'s own cache from a block's batch cache `[rows, kv, past_len + t, hd]`: its
    /// prefix tokens, then its computed ones, `[1, kv, keep + len, hd]`.
    pub(crate) fn row_cache(&self, present: &LayerKv, r: usize, kv: usize, hd: usize) -> LayerKv {
        let total = self.past_len + self.t;
        let (keep, pad) = (self.keep[r], self.pad(r));
        let cut = |x: &[f32]| {
            let mut out = Vec::with_capacity(kv * (keep + self.len(r)) * hd);
            for h in 0..kv {
                let head = &x[(r * kv + h) * total * hd..(r * kv + h + 1) * total * hd];
                out.extend_from_slice(&head[(self.past_len - keep) * hd..self.past_len * hd]);
                out.extend_from_slice(&head[(self.past_len + pad) * hd..]);
            }
            out
        };
        LayerKv {
            key: cut(&present.key),
            value: cut(&present.value),
        }
    }
}

/// The prefixes run on one checkpoint, by their tokens. Prefixes of fewer than
/// [`PrefixCache::MIN_LEN`] tokens are not worth a cache entry and are not shared.
#[derive(Debug, Default)]
pub struct PrefixCache {
    runs: HashMap<Vec<u32>, Rc<PrefixRun>>,
    hits: usize,
}

impl PrefixCache {
    /// The shortest prefix worth sharing.
    pub const MIN_LEN: usize = 2;

    /// An empty cache (one per checkpoint: entries belong to the model that ran them).
    pub fn new() -> PrefixCache {
        PrefixCache::default()
    }

    /// The run of `ids[..len]`, computed on first use; `None` when `len` is below
    /// [`PrefixCache::MIN_LEN`].
    pub fn get(
        &mut self,
        model: &mut Model,
        ids: &[u32],
        len: usize,
    ) -> Result<Option<Rc<PrefixRun>>, Error> {
        if len < Self::MIN_LEN || len > ids.len() {
            return Ok(None);
        }
        let key = &ids[..len];
        if let Some(run) = self.runs.get(key) {
            self.hits += 1;
            return Ok(Some(run.clone()));
        }
        let run = Rc::new(PrefixRun::run(model, key)?);
        self.runs.insert(key.to_vec(), run.clone());
        Ok(Some(run))
    }

    /// Distinct prefixes run.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no prefix has been run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// How many lookups found their prefix already run.
    pub fn hits(&self) -> usize {
        self.hits
    }
}
