//! Greedy generation from patched caches: runs of any prompts and lengths left-padded
//! together, and the tokens that end an answer.

use super::spec::{Dims, Generation, Patched, dims};
use crate::config::Stop;
use crate::model::{LayerKv, Model, argmax};
use crate::pairs::vocab_pieces;
use crate::{Error, ShapeError};

/// The tokens that end an answer: every token whose text contains `"` (the closing quote,
/// alone or merged with what follows) and the model's end-of-sequence tokens. Indexed by id.
pub fn answer_stops(model: &Model) -> Result<Vec<bool>, Error> {
    Ok(stops_from(
        &vocab_pieces(model.tokenizer()?)?,
        model,
        Stop::Quote,
    ))
}

/// The tokens that end a generation under `rule`, from the tokenizer's [`vocab_pieces`]
/// (decoded once for a whole series): [`answer_stops`] for [`Stop::Quote`], the
/// end-of-sequence tokens for [`Stop::Eos`], none for [`Stop::MaxNewTokens`]. Indexed by id.
pub(crate) fn stops_from(pieces: &[String], model: &Model, rule: Stop) -> Vec<bool> {
    let vocab = model.info().vocab as usize;
    let mut stops: Vec<bool> = (0..vocab)
        .map(|id| rule == Stop::Quote && pieces.get(id).is_some_and(|p| p.contains('"')))
        .collect();
    if rule == Stop::MaxNewTokens {
        return stops;
    }
    for &eos in model.manifest().eos_token_id.iter().flatten() {
        if let Some(s) = usize::try_from(eos).ok().and_then(|i| stops.get_mut(i)) {
            *s = true;
        }
    }
    stops
}

/// Greedy generation for every row of `runs` (caches kept), in batches of up to
/// [`GENERATION_BATCH`] rows. Runs may be of different prompts and lengths: a batch
/// left-pads each row's cache to its longest row (masked columns at the row's start, so
/// column distances stay true under sliding windows). The batches advance together, one token
/// per step, and share each step's head calls. Returns, per run, each row's tokens.
pub fn generate_many(
    model: &mut Model,
    runs: &[&Patched],
    generation: &Generation<'_>,
) -> Result<Vec<Vec<Vec<u32>>>, Error> {
    generate_grouped(model, runs, &vec![0; runs.len()], generation)
}

/// [`generate_many`] with the block calls split by `groups` (one group id per run): the rows
/// of the runs of one group run their blocks together (in batches of up to
/// [`GENERATION_BATCH`] rows, left-padded), those of different groups never do; every step's
/// head call serves the rows of all groups. So a sweep keeps each target's block calls to its
/// own rows (larger, left-padded block calls do not pay on the CPU: BENCHMARKS.md) while
/// the unembedding is streamed once per step for all its targets. Rows give the
/// tokens they give alone: the head is applied to each row independently.
pub fn generate_grouped(
    model: &mut Model,
    runs: &[&Patched],
    groups: &[usize],
    generation: &Generation<'_>,
) -> Result<Vec<Vec<Vec<u32>>>, Error> {
    let mut out: Vec<Vec<Vec<u32>>> = runs.iter().map(|r| vec![Vec::new(); r.rows()]).collect();
    if generation.max_new == 0 || runs.is_empty() {
        return Ok(out);
    }
    let Dims {
        layers: n_layers,
        kv_heads: heads,
        head_dim: hd,
        ..
    } = dims(model);
    let vocab = model.info().vocab as usize;
    if let Some(r) = runs
        .iter()
        .find(|r| r.vocab != vocab || r.caches.len() != n_layers)
    {
        return Err(ShapeError::Generation {
            len: r.len,
            caches: r.caches.len(),
            vocab: r.vocab,
            layers: n_layers,
            model_vocab: vocab,
        }
        .into());
    }
    // (run, row) of every row, by group in order of first appearance, each group in chunks.
    let mut ids: Vec<usize> = Vec::new();
    for &g in groups {
        if !ids.contains(&g) {
            ids.push(g);
        }
    }
    let mut chunks: Vec<Vec<(usize, usize)>> = Vec::new();
    for g in ids {
        let rows: Vec<(usize, usize)> = runs
            .iter()
            .enumerate()
            .filter(|&(i, _)| groups.get(i) == Some(&g))
            .flat_map(|(i, r)| (0..r.rows()).map(move |j| (i, j)))
            .collect();
        chunks.extend(rows.chunks(GENERATION_BATCH).map(<[_]>::to_vec));
    }
    let mut batches = Vec::with_capacity(chunks.len());
    // The first logits of every chunk's rows, chunk after chunk.
    let mut logits: Vec<f32> = Vec::with_capacity(all_rows(&chunks) * vocab);
    for chunk in &chunks {
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
        logits.extend(
            chunk
                .iter()
                .flat_map(|&(i, j)| &runs[i].logits[j * vocab..(j + 1) * vocab]),
        );
        batches.push(Greedy::new(caches, &lens));
    }
    let gens = greedy_waves(model, batches, logits, generation)?;
    for (chunk, gens) in chunks.iter().zip(gens) {
        for (&(i, j), g) in chunk.iter().zip(gens) {
            out[i][j] = g;
        }
    }
    Ok(out)
}

fn all_rows(chunks: &[Vec<(usize, usize)>]) -> usize {
    chunks.iter().map(Vec::len).sum()
}

/// The most rows [`generate_many`] runs through one block call.
pub const GENERATION_BATCH: usize = 64;

/// Greedy generation for a batch of sequences of lengths `lens`, from their caches
/// (`[batch, kv, width, hd]` per block, `width` the longest length, each row's tokens in its
/// last `lens[r]` columns after masked padding) and next-token logits `[batch, vocab]`. Rows
/// that stop leave the batch.
pub(super) fn greedy_batch(
    model: &mut Model,
    caches: Vec<LayerKv>,
    lens: &[usize],
    logits: Vec<f32>,
    generation: &Generation<'_>,
) -> Result<Vec<Vec<u32>>, Error> {
    let mut gens = greedy_waves(model, vec![Greedy::new(caches, lens)], logits, generation)?;
    Ok(gens.pop().expect("one batch, one result"))
}

/// Greedy generation of several batches in waves: each step takes every batch's next tokens,
/// runs each batch's blocks on its own, then computes the next logits of all batches' rows
/// in one head call (split only by [`Model::head_rows`]). `logits` holds the first logits of
/// every batch's rows, batch after batch, and is reused for every step's. Returns each
/// batch's rows' tokens.
fn greedy_waves(
    model: &mut Model,
    mut states: Vec<Greedy>,
    mut logits: Vec<f32>,
    generation: &Generation<'_>,
) -> Result<Vec<Vec<Vec<u32>>>, Error> {
    let vocab = model.info().vocab as usize;
    // Each batch's first row in `logits`.
    let mut first: Vec<usize> = states
        .iter()
        .scan(0, |at, s| {
            let here = *at;
            *at += s.active.len();
            Some(here)
        })
        .collect();
    let mut hidden: Vec<f32> = Vec::new();
    if generation.max_new > 0 {
        loop {
            // Every batch still generating takes its tokens and runs its blocks.
            hidden.clear();
            let mut rows = 0;
            for (b, state) in states.iter_mut().enumerate() {
                let n = state.active.len();
                if n == 0 {
                    continue;
                }
                let mine = &logits[first[b] * vocab..(first[b] + n) * vocab];
                if !state.take(mine, vocab, generation) {
                    continue;
                }
                hidden.extend(state.advance(model)?);
                first[b] = rows;
                rows += state.active.len();
            }
            if rows == 0 {
                break;
            }
            // One head for the rows of all of them.
            model.logits_into(&hidden, &mut logits)?;
        }
    }
    Ok(states.into_iter().map(|s| s.gens).collect())
}

/// One batch of greedy generation between steps: the rows still generating, their caches and
/// next tokens.
struct Greedy {
    /// Per block, the active rows' caches `[active, kv, width, hd]`.
    caches: Vec<LayerKv>,
    /// The cache columns, padding included.
    width: usize,
    /// Each row's padding columns, constant as the rows grow together.
    pads: Vec<usize>,
    /// The rows still generating, as indices into `gens`; `caches` and the logits hold them.
    active: Vec<usize>,
    /// Every row's tokens so far.
    gens: Vec<Vec<u32>>,
    /// The active rows' last tokens, to run next.
    next: Vec<i64>,
}

impl Greedy {
    fn new(caches: Vec<LayerKv>, lens: &[usize]) -> Greedy {
        let width = lens.iter().copied().max().unwrap_or(0);
        Greedy {
            caches,
            width,
            pads: lens.iter().map(|&l| width - l).collect(),
            active: (0..lens.len()).collect(),
            gens: vec![Vec::new(); lens.len()],
            next: Vec::new(),
        }
    }

    /// Appends each active row's argmax of `logits` (`[active, vocab]`); rows that stop
    /// leave the batch. False when none is left.
    fn take(&mut self, logits: &[f32], vocab: usize, generation: &Generation<'_>) -> bool {
        let mut keep = Vec::with_capacity(self.active.len());
        self.next.clear();
        for (k, &row) in self.active.iter().enumerate() {
            let id = argmax(&logits[k * vocab..(k + 1) * vocab]) as u32;
            self.gens[row].push(id);
            if !(generation.stop)(id) && self.gens[row].len() < generation.max_new {
                keep.push(k);
                self.next.push(i64::from(id));
            }
        }
        if keep.len() < self.active.len() && !keep.is_empty() {
            let row = self
                .caches
                .first()
                .map_or(0, |kv| kv.key.len() / self.active.len().max(1));
            let select = |x: &[f32]| -> Vec<f32> {
                keep.iter()
                    .flat_map(|&k| &x[k * row..(k + 1) * row])
                    .copied()
                    .collect()
            };
            self.caches = self
                .caches
                .iter()
                .map(|kv| LayerKv {
                    key: select(&kv.key),
                    value: select(&kv.value),
                })
                .collect();
        }
        self.active = keep.iter().map(|&k| self.active[k]).collect();
        !self.active.is_empty()
    }

    /// Runs the active rows' next tokens through every block, growing the caches by a column;
    /// returns their outputs `[active, d]`.
    fn advance(&mut self, model: &mut Model) -> Result<Vec<f32>, Error> {
        let n_layers = dims(model).layers;
        let rows = self.active.len();
        let width = self.width;
        let positions: Vec<i64> = self
            .active
            .iter()
            .map(|&r| (width - self.pads[r]) as i64)
            .collect();
        let mut mask = Vec::with_capacity(rows * (width + 1));
        for &r in &self.active {
            mask.extend(std::iter::repeat_n(0i64, self.pads[r]));
            mask.extend(std::iter::repeat_n(1i64, width + 1 - self.pads[r]));
        }
        let mut hidden = model.embed(&self.next, rows)?;
        self.caches = model.run_layers(
            0..n_layers,
            &mut hidden,
            rows,
            &positions,
            &mask,
            &self.caches,
            width,
            &mut |_, _| Ok(()),
        )?;
        self.width += 1;
        Ok(hidden)
    }
}
