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
/// column distances stay true under sliding windows). Returns, per run, each row's tokens.
pub fn generate_many(
    model: &mut Model,
    runs: &[&Patched],
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

/// The most rows [`generate_many`] runs at once.
pub const GENERATION_BATCH: usize = 64;

/// Greedy generation for a batch of sequences of lengths `lens`, from their caches
/// (`[batch, kv, width, hd]` per block, `width` the longest length, each row's tokens in its
/// last `lens[r]` columns after masked padding) and next-token logits `[batch, vocab]`. Rows
/// that stop leave the batch.
pub(super) fn greedy_batch(
    model: &mut Model,
    mut caches: Vec<LayerKv>,
    lens: &[usize],
    mut logits: Vec<f32>,
    generation: &Generation<'_>,
) -> Result<Vec<Vec<u32>>, Error> {
    let Dims {
        layers: n_layers,
        kv_heads: heads,
        head_dim: hd,
        ..
    } = dims(model);
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
