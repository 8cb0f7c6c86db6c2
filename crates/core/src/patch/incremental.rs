//! The incremental computation: every start layer from one unpatched run, rerunning only the
//! positions from the patched one through the blocks above the start layer.

use xlpatch_abi::{PatchSite, PatchStrategy};

use super::baseline::Baseline;
use super::generate::generate_many;
use super::spec::{Dims, Generation, LayerResults, Patch, Patched, apply, check, dims};
use crate::Error;
use crate::model::{LayerKv, Model, softmax};

/// How the incremental path groups start layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batching {
    /// All start layers of the target in one batch per block.
    #[default]
    Layers,
    /// One start layer at a time.
    None,
}

/// The first `p` positions of a `[rows, kv, T, hd]` cache, repeated `repeat` times per row:
/// `[rows * repeat, kv, p, hd]`.
fn truncate(
    kv: &LayerKv,
    rows: usize,
    heads: usize,
    p: usize,
    hd: usize,
    repeat: usize,
) -> LayerKv {
    let cut = |x: &[f32]| {
        let t = x.len() / (rows * heads * hd);
        let mut out = Vec::with_capacity(rows * repeat * heads * p * hd);
        for row in x.chunks_exact(heads * t * hd) {
            for _ in 0..repeat {
                for head in row.chunks_exact(t * hd) {
                    out.extend_from_slice(&head[..p * hd]);
                }
            }
        }
        out
    };
    LayerKv {
        key: cut(&kv.key),
        value: cut(&kv.value),
    }
}

/// The incremental computation of [`naive`](super::naive) from an unpatched run of the same prompt.
pub fn incremental(
    model: &mut Model,
    base: &Baseline,
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    generation: &Generation<'_>,
    batching: Batching,
) -> Result<LayerResults, Error> {
    let keep = generation.max_new > 0;
    let run = patched(model, base, patch, strategy, batching, keep)?;
    let generations = match batching {
        Batching::Layers => generate_many(model, &[&run], generation)?
            .pop()
            .unwrap_or_default(),
        Batching::None => {
            // One start layer at a time, as a one-row run each.
            let Dims {
                kv_heads: heads,
                head_dim: hd,
                ..
            } = dims(model);
            let row = heads * run.len * hd;
            let mut gens = vec![Vec::new(); run.rows()];
            if keep {
                for (j, g) in gens.iter_mut().enumerate() {
                    let one = Patched {
                        vocab: run.vocab,
                        len: run.len,
                        probs: Vec::new(),
                        logits: run.logits[j * run.vocab..(j + 1) * run.vocab].to_vec(),
                        caches: run
                            .caches
                            .iter()
                            .map(|kv| LayerKv {
                                key: kv.key[j * row..(j + 1) * row].to_vec(),
                                value: kv.value[j * row..(j + 1) * row].to_vec(),
                            })
                            .collect(),
                    };
                    *g = generate_many(model, &[&one], generation)?
                        .remove(0)
                        .remove(0);
                }
            }
            gens
        }
    };
    Ok(run.into_results(generations))
}

/// The patched runs of every start layer from an unpatched run of the same prompt
/// (docs/method.md, "Incremental patching"), keeping the caches for [`generate_many`] when `keep_caches`.
pub fn patched(
    model: &mut Model,
    base: &Baseline,
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    batching: Batching,
    keep_caches: bool,
) -> Result<Patched, Error> {
    let mut one = patched_many(model, &[(base, patch)], strategy, batching, keep_caches)?;
    Ok(one.pop().expect("one run, one result"))
}

/// [`patched`] for several (unpatched run, patch) pairs: each runs its own blocks, and one
/// `head` call serves the last rows of them all (on a large vocabulary, reading the
/// unembedding is most of a head call).
pub fn patched_many(
    model: &mut Model,
    runs: &[(&Baseline, &Patch<'_>)],
    strategy: &dyn PatchStrategy,
    batching: Batching,
    keep_caches: bool,
) -> Result<Vec<Patched>, Error> {
    let vocab = model.info().vocab as usize;
    let mut parts = Vec::with_capacity(runs.len());
    for (base, patch) in runs {
        parts.push(patched_blocks(
            model,
            base,
            patch,
            strategy,
            batching,
            keep_caches,
        )?);
    }
    let last: Vec<f32> = parts.iter().flat_map(|(l, _)| l).copied().collect();
    let logits = model.logits(&last)?;
    let mut rows = logits.chunks_exact(vocab);
    Ok(runs
        .iter()
        .zip(parts)
        .map(|((base, _), (_, caches))| {
            let logits: Vec<f32> = rows
                .by_ref()
                .take(base.outputs.len())
                .flatten()
                .copied()
                .collect();
            Patched {
                vocab,
                len: base.ids.len(),
                probs: logits.chunks_exact(vocab).flat_map(softmax).collect(),
                logits,
                caches,
            }
        })
        .collect())
}

/// The blocks of [`patched`]: the last rows `[L, d]` after block L-1 (row `j`: start layer
/// `j`) and, when `keep_caches`, every block's caches `[L, kv, T, hd]`.
fn patched_blocks(
    model: &mut Model,
    base: &Baseline,
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    batching: Batching,
    keep_caches: bool,
) -> Result<(Vec<f32>, Vec<LayerKv>), Error> {
    let t = base.ids.len();
    check(model, t, patch)?;
    let Dims {
        layers: n_layers,
        d,
        kv_heads: heads,
        head_dim: hd,
        ..
    } = dims(model);
    let p = patch.position;
    let s = t - p;
    let latent = |layer: usize| &patch.latent[layer * d..(layer + 1) * d];
    // Start layer j's hidden state after block j: the unpatched output at p..T, row p patched.
    let start_rows = |j: usize| -> Result<Vec<f32>, Error> {
        let mut h = base.outputs[j][p * d..].to_vec();
        if patch.scope.patches(j, j) {
            let site = [PatchSite {
                batch: 0,
                position: 0,
            }];
            apply(strategy, j, &mut h, [1, s, d], &site, latent(j))?;
        }
        Ok(h)
    };
    // Last rows after block L-1 and, per start layer, the patched caches of blocks j+1..L.
    let mut last = vec![0f32; n_layers * d];
    let mut patched: Vec<Vec<LayerKv>> = vec![Vec::new(); n_layers];
    match batching {
        Batching::None => {
            let mask = vec![1i64; t];
            let positions: Vec<i64> = (p as i64..t as i64).collect();
            for j in 0..n_layers {
                let mut h = start_rows(j)?;
                if j + 1 < n_layers {
                    let past: Vec<LayerKv> = (j + 1..n_layers)
                        .map(|l| truncate(&base.cache[l], 1, heads, p, hd, 1))
                        .collect();
                    let site = [PatchSite {
                        batch: 0,
                        position: 0,
                    }];
                    patched[j] = model.run_layers(
                        j + 1..n_layers,
                        &mut h,
                        1,
                        &positions,
                        &mask,
                        &past,
                        p,
                        &mut |layer, out| {
                            if patch.scope.patches(j, layer) {
                                apply(strategy, layer, out, [1, s, d], &site, latent(layer))?;
                            }
                            Ok(())
                        },
                    )?;
                }
                last[j * d..(j + 1) * d].copy_from_slice(&h[(s - 1) * d..]);
            }
        }
        Batching::Layers => {
            // Rows of the batch are start layers 0..l when block l runs.
            let mut h: Vec<f32> = Vec::with_capacity(n_layers * s * d);
            for l in 1..n_layers {
                h.extend(start_rows(l - 1)?);
                let rows = l;
                let past = truncate(&base.cache[l], 1, heads, p, hd, rows);
                let positions: Vec<i64> = (0..rows).flat_map(|_| p as i64..t as i64).collect();
                let sites: Vec<PatchSite> = (0..rows)
                    .filter(|&j| patch.scope.patches(j, l))
                    .map(|j| PatchSite {
                        batch: j,
                        position: 0,
                    })
                    .collect();
                let source: Vec<f32> = sites.iter().flat_map(|_| latent(l)).copied().collect();
                let mut present = model.run_layers(
                    l..l + 1,
                    &mut h,
                    rows,
                    &positions,
                    &vec![1i64; rows * t],
                    &[past],
                    p,
                    &mut |layer, out| {
                        if !sites.is_empty() {
                            apply(strategy, layer, out, [rows, s, d], &sites, &source)?;
                        }
                        Ok(())
                    },
                )?;
                let present = present.pop().expect("one block ran");
                let row = heads * t * hd;
                for (j, cache) in patched.iter_mut().enumerate().take(rows) {
                    cache.push(LayerKv {
                        key: present.key[j * row..(j + 1) * row].to_vec(),
                        value: present.value[j * row..(j + 1) * row].to_vec(),
                    });
                }
            }
            for (j, row) in h.chunks_exact(s * d).enumerate() {
                last[j * d..(j + 1) * d].copy_from_slice(&row[(s - 1) * d..]);
            }
            let h = start_rows(n_layers - 1)?;
            last[(n_layers - 1) * d..].copy_from_slice(&h[(s - 1) * d..]);
        }
    }
    // Per block, the caches of all start layers: unpatched up to block j, patched after.
    let caches: Vec<LayerKv> = if keep_caches {
        (0..n_layers)
            .map(|l| {
                let mut kv = LayerKv::default();
                for (j, own) in patched.iter().enumerate() {
                    let src = if l <= j {
                        &base.cache[l]
                    } else {
                        &own[l - j - 1]
                    };
                    kv.key.extend_from_slice(&src.key);
                    kv.value.extend_from_slice(&src.value);
                }
                kv
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok((last, caches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_first_positions_of_every_head_and_repeats_rows() {
        // [1, 2 heads, 3 positions, hd 2]: value = head * 100 + pos * 10 + i.
        let x: Vec<f32> = (0..2)
            .flat_map(|h| {
                (0..3).flat_map(move |p| (0..2).map(move |i| (h * 100 + p * 10 + i) as f32))
            })
            .collect();
        let kv = LayerKv {
            key: x.clone(),
            value: x,
        };
        let cut = truncate(&kv, 1, 2, 2, 2, 2);
        let one = [0., 1., 10., 11., 100., 101., 110., 111.];
        assert_eq!(cut.key, [one, one].concat());
        assert_eq!(cut.key, cut.value);
        assert!(truncate(&kv, 1, 2, 0, 2, 3).key.is_empty());
    }
}
