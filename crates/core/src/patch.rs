//! Patched runs of a target prompt for every start layer (DESIGN §1), computed two ways: the
//! naive way (the whole prompt through every layer for each start layer, as the reference
//! pipeline does) and incrementally (DESIGN §2), which must agree to float tolerance (the
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
//! Two scopes: [`Scope::FromLayer`] patches blocks `j..L` (DESIGN §1), [`Scope::SingleLayer`]
//! only block `j` (the "HeteroPatch" variant of Dumas et al., at the last prompt token).

use xlpatch_abi::{PatchSite, PatchStrategy, TensorMut, TensorRef};

use crate::Error;
use crate::model::{LayerKv, Model, argmax, softmax};
use crate::pairs::vocab_pieces;
use crate::prefix::{Continuation, PrefixRun, Row};

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

/// The tokens that end an answer: every token whose text contains `"` (the closing quote,
/// alone or merged with what follows) and the model's end-of-sequence tokens. Indexed by id.
pub fn answer_stops(model: &Model) -> Result<Vec<bool>, Error> {
    Ok(stops_from(&vocab_pieces(model.tokenizer()?)?, model))
}

/// [`answer_stops`] from the tokenizer's [`vocab_pieces`], decoded once for a whole series.
pub(crate) fn stops_from(pieces: &[String], model: &Model) -> Vec<bool> {
    let vocab = model.info().vocab as usize;
    let mut stops: Vec<bool> = (0..vocab)
        .map(|id| pieces.get(id).is_some_and(|p| p.contains('"')))
        .collect();
    for &eos in model.manifest().eos_token_id.iter().flatten() {
        if let Some(s) = usize::try_from(eos).ok().and_then(|i| stops.get_mut(i)) {
            *s = true;
        }
    }
    stops
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

/// One unpatched run of a prompt: every block's output and KV cache, and the logits at the
/// last position. Shared by every patch of the prompt.
#[derive(Debug, Clone)]
pub struct Baseline {
    ids: Vec<u32>,
    d: usize,
    /// Block outputs, `[L][T * d]`.
    outputs: Vec<Vec<f32>>,
    /// Block caches, `[1, kv, T, hd]` each.
    cache: Vec<LayerKv>,
    logits: Vec<f32>,
}

fn shape(model: &Model) -> (usize, usize, usize, usize) {
    let info = model.info();
    (
        info.n_layers as usize,
        info.d_model as usize,
        info.n_kv_heads as usize,
        info.head_dim as usize,
    )
}

impl Baseline {
    /// Runs `ids` (one unpadded prompt) through the whole model, keeping everything.
    pub fn run(model: &mut Model, ids: &[u32]) -> Result<Baseline, Error> {
        let (n_layers, d, _, _) = shape(model);
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
    /// computed (DESIGN §2). Equal to [`Baseline::run`] of `ids` to float tolerance.
    pub fn run_from(model: &mut Model, prefix: &PrefixRun, ids: &[u32]) -> Result<Baseline, Error> {
        let mut one = Baseline::run_many(model, &[(Some(prefix), ids)])?;
        Ok(one.pop().expect("one prompt, one baseline"))
    }

    /// Unpatched runs of several prompts, each continuing its prefix run if it has one, in
    /// batches of up to [`crate::latents::BATCH`] rows laid out as a [`Continuation`] (one
    /// backend call per block for a whole batch). Equal to [`Baseline::run`] of each prompt to
    /// float tolerance.
    pub fn run_many(
        model: &mut Model,
        prompts: &[(Option<&PrefixRun>, &[u32])],
    ) -> Result<Vec<Baseline>, Error> {
        let (n_layers, d, kv, hd) = shape(model);
        let vocab = model.info().vocab as usize;
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(crate::latents::BATCH) {
            if chunk.iter().any(|(_, ids)| ids.is_empty()) {
                return Err(Error::Inconsistent("an empty prompt cannot be run".into()));
            }
            let rows: Vec<Row<'_>> = chunk
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
            let last: Vec<f32> = (0..rows.len())
                .flat_map(|r| &outs[n_layers - 1][(r * t + t - 1) * d..(r * t + t) * d])
                .copied()
                .collect();
            let logits = model.logits(&last)?;
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
                    logits: logits[r * vocab..(r + 1) * vocab].to_vec(),
                });
            }
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

    /// The unpatched next-token probabilities after the prompt.
    pub fn probs(&self) -> Vec<f32> {
        softmax(&self.logits)
    }

    /// The output of every block at `position`, `[L, d]`: the latent this prompt yields.
    pub fn residuals_at(&self, position: usize) -> Result<Vec<f32>, Error> {
        if position >= self.ids.len() {
            return Err(Error::Inconsistent(format!(
                "position {position} is outside a prompt of {} tokens",
                self.ids.len()
            )));
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
}

/// Writes `source` rows into `hidden` (`[batch, seq, d]`) at `sites` with the strategy.
fn apply(
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

fn check(model: &Model, t: usize, patch: &Patch<'_>) -> Result<(), Error> {
    let (n_layers, d, _, _) = shape(model);
    if patch.position >= t || patch.latent.len() != n_layers * d {
        return Err(Error::Inconsistent(format!(
            "patch at position {} of a {t}-token prompt with a latent of {} values ([{n_layers}, {d}] expected)",
            patch.position,
            patch.latent.len()
        )));
    }
    Ok(())
}

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
    let (n_layers, d, _, _) = shape(model);
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

/// Patched runs of one prompt for every start layer, before generation: the distributions,
/// and (when kept) the logits and caches generation continues from.
#[derive(Debug, Clone)]
pub struct Patched {
    vocab: usize,
    len: usize,
    probs: Vec<f32>,
    logits: Vec<f32>,
    /// Per block, `[rows, kv, len, hd]`; empty when not kept.
    caches: Vec<LayerKv>,
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

impl Baseline {
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

/// Greedy generation for every row of `runs` (caches kept), in batches of up to
/// [`GENERATION_BATCH`] rows. Runs may be of different prompts and lengths: a batch
/// left-pads each row's cache to its longest row (masked columns at the row's start, so
/// column distances stay true under sliding windows). Returns, per run, each row's tokens.
pub fn generate(
    model: &mut Model,
    runs: &[&Patched],
    generation: &Generation<'_>,
) -> Result<Vec<Vec<Vec<u32>>>, Error> {
    let mut out: Vec<Vec<Vec<u32>>> = runs.iter().map(|r| vec![Vec::new(); r.rows()]).collect();
    if generation.max_new == 0 || runs.is_empty() {
        return Ok(out);
    }
    let (n_layers, _, heads, hd) = shape(model);
    let vocab = model.info().vocab as usize;
    if let Some(r) = runs
        .iter()
        .find(|r| r.vocab != vocab || r.caches.len() != n_layers)
    {
        return Err(Error::Inconsistent(format!(
            "cannot generate from a run of {} tokens with {} block caches and a vocabulary of {} \
             ({n_layers} blocks, {vocab} tokens expected)",
            r.len,
            r.caches.len(),
            r.vocab
        )));
    }
    // (run, row) of every row, generated in chunks.
    let all: Vec<(usize, usize)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| (0..r.rows()).map(move |j| (i, j)))
        .collect();
    for chunk in all.chunks(GENERATION_BATCH) {
        let lens: Vec<usize> = chunk.iter().map(|&(i, _)| runs[i].len).collect();
        let width = lens.iter().copied().max().unwrap_or(0);
        let caches: Vec<LayerKv> = (0..n_layers)
            .map(|l| {
                let size = chunk.len() * heads * width * hd;
                let mut kv = LayerKv {
                    key: Vec::with_capacity(size),
                    value: Vec::with_capacity(size),
                };
                for &(i, j) in chunk {
                    let (len, src) = (runs[i].len, &runs[i].caches[l]);
                    let row = heads * len * hd;
                    let pad = (width - len) * hd;
                    for h in 0..heads {
                        let at = j * row + h * len * hd;
                        kv.key.extend(std::iter::repeat_n(0f32, pad));
                        kv.key.extend_from_slice(&src.key[at..at + len * hd]);
                        kv.value.extend(std::iter::repeat_n(0f32, pad));
                        kv.value.extend_from_slice(&src.value[at..at + len * hd]);
                    }
                }
                kv
            })
            .collect();
        let logits: Vec<f32> = chunk
            .iter()
            .flat_map(|&(i, j)| &runs[i].logits[j * vocab..(j + 1) * vocab])
            .copied()
            .collect();
        let gens = greedy_batch(model, caches, &lens, logits, generation)?;
        for (&(i, j), g) in chunk.iter().zip(gens) {
            out[i][j] = g;
        }
    }
    Ok(out)
}

/// The most rows [`generate`] runs at once.
pub const GENERATION_BATCH: usize = 64;

/// The incremental computation of [`naive`] from an unpatched run of the same prompt.
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
        Batching::Layers => generate(model, &[&run], generation)?
            .pop()
            .unwrap_or_default(),
        Batching::None => {
            // One start layer at a time, as a one-row run each.
            let (_, _, heads, hd) = shape(model);
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
                    *g = generate(model, &[&one], generation)?.remove(0).remove(0);
                }
            }
            gens
        }
    };
    Ok(run.into_results(generations))
}

/// The patched runs of every start layer from an unpatched run of the same prompt
/// (DESIGN §2), keeping the caches for [`generate`] when `keep_caches`.
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
    let (n_layers, d, heads, hd) = shape(model);
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

/// Greedy generation for a batch of sequences of lengths `lens`, from their caches
/// (`[batch, kv, width, hd]` per block, `width` the longest length, each row's tokens in its
/// last `lens[r]` columns after masked padding) and next-token logits `[batch, vocab]`. Rows
/// that stop leave the batch.
fn greedy_batch(
    model: &mut Model,
    mut caches: Vec<LayerKv>,
    lens: &[usize],
    mut logits: Vec<f32>,
    generation: &Generation<'_>,
) -> Result<Vec<Vec<u32>>, Error> {
    let (n_layers, _, heads, hd) = shape(model);
    let vocab = model.info().vocab as usize;
    let batch = logits.len() / vocab;
    let mut gens = vec![Vec::new(); batch];
    if generation.max_new == 0 {
        return Ok(gens);
    }
    let mut width = lens.iter().copied().max().unwrap_or(0);
    // Each row's padding columns, constant as the rows grow together.
    let pads: Vec<usize> = lens.iter().map(|&l| width - l).collect();
    // The rows still generating, as indices into `gens`; `caches` and `logits` hold them.
    let mut active: Vec<usize> = (0..batch).collect();
    loop {
        let mut keep = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (k, &row) in active.iter().enumerate() {
            let id = argmax(&logits[k * vocab..(k + 1) * vocab]) as u32;
            gens[row].push(id);
            if !(generation.stop)(id) && gens[row].len() < generation.max_new {
                keep.push(k);
                next.push(i64::from(id));
            }
        }
        if keep.is_empty() {
            return Ok(gens);
        }
        if keep.len() < active.len() {
            let row = heads * width * hd;
            let select = |x: &[f32]| -> Vec<f32> {
                keep.iter()
                    .flat_map(|&k| &x[k * row..(k + 1) * row])
                    .copied()
                    .collect()
            };
            caches = caches
                .iter()
                .map(|kv| LayerKv {
                    key: select(&kv.key),
                    value: select(&kv.value),
                })
                .collect();
            active = keep.iter().map(|&k| active[k]).collect();
        }
        let rows = active.len();
        let positions: Vec<i64> = active.iter().map(|&r| (width - pads[r]) as i64).collect();
        let mut mask = Vec::with_capacity(rows * (width + 1));
        for &r in &active {
            mask.extend(std::iter::repeat_n(0i64, pads[r]));
            mask.extend(std::iter::repeat_n(1i64, width + 1 - pads[r]));
        }
        let mut hidden = model.embed(&next, rows)?;
        caches = model.run_layers(
            0..n_layers,
            &mut hidden,
            rows,
            &positions,
            &mask,
            &caches,
            width,
            &mut |_, _| Ok(()),
        )?;
        width += 1;
        logits = model.logits(&hidden)?;
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
