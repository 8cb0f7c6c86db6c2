//! Source latents (DESIGN §1): the residual stream of a source prompt at one token, for every
//! block, `[L, d]`; several sources stacked `[n, L, d]` and combined per block by an
//! extractor plugin (`extract-mean` for mean patching, `extract-first` for the control).
//!
//! A cut source prompt is read at its concept word's last token; the single-layer variant's
//! source, a whole translation prompt, at its last token ([`Site`]).

use xlpatch_abi::{Extractor, TensorMut, TensorRef};

use crate::Error;
use crate::model::{LayerKv, Model};
use crate::prefix::PrefixRun;
use crate::prompt::{Prompt, PromptKind, Tokenized};

/// Which token of a source prompt is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// The last token of the query word (cut source prompts).
    WordEnd,
    /// The last token of the prompt (the single-layer variant's translation prompts).
    Last,
}

impl Site {
    /// The site a prompt of `kind` is read at: a cut prompt at its word, a translation
    /// prompt at its last token.
    pub fn for_kind(kind: PromptKind) -> Site {
        match kind {
            PromptKind::Cut => Site::WordEnd,
            PromptKind::Translation => Site::Last,
        }
    }

    /// The token index of this site in `tokens`.
    pub fn position(self, tokens: &Tokenized) -> usize {
        match self {
            Site::WordEnd => tokens.word_end.token,
            Site::Last => tokens.ids.len() - 1,
        }
    }
}

/// The output of every block at `position` of `ids`, `[L, d]`. Only positions up to
/// `position` are run (later ones cannot change it).
pub fn residuals(model: &mut Model, ids: &[u32], position: usize) -> Result<Vec<f32>, Error> {
    if position >= ids.len() {
        return Err(Error::Inconsistent(format!(
            "position {position} is outside a prompt of {} tokens",
            ids.len()
        )));
    }
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    let t = position + 1;
    let ids: Vec<i64> = ids[..t].iter().map(|&i| i64::from(i)).collect();
    let mut hidden = model.embed(&ids, 1)?;
    let positions: Vec<i64> = (0..t as i64).collect();
    let mut out = Vec::with_capacity(n_layers * d);
    model.run_layers(
        0..n_layers,
        &mut hidden,
        1,
        &positions,
        &vec![1; t],
        &vec![LayerKv::default(); n_layers],
        0,
        &mut |_, h| {
            out.extend_from_slice(&h[position * d..(position + 1) * d]);
            Ok(())
        },
    )?;
    Ok(out)
}

/// How many prompts [`residuals_batch`] runs at once.
pub const BATCH: usize = 16;

/// [`residuals`] of several prompts, each `(ids, position)`, run in left-padded batches of
/// up to [`BATCH`] rows: every row is cut after its position and padded on the left (mask 0,
/// position id 0), so every site is the batch's last column. Equal to single runs to float
/// tolerance (a masked key gets exactly zero weight).
pub fn residuals_batch(
    model: &mut Model,
    prompts: &[(&[u32], usize)],
) -> Result<Vec<Vec<f32>>, Error> {
    let rows: Vec<(Option<&PrefixRun>, &[u32], usize)> =
        prompts.iter().map(|&(ids, at)| (None, ids, at)).collect();
    residuals_from(model, &rows)
}

/// [`residuals_batch`] of prompts of which some continue a shared prefix run, each
/// `(prefix, ids, position)`: only the tokens after a row's prefix are computed, in batches of
/// up to [`BATCH`] rows. Every row is left-aligned to the batch's last column with padding
/// only at its start, so that the distance between any two of its tokens is the true one
/// (sliding-window attention counts columns): a batch computes the last `t` tokens of every
/// row (`t` the longest rest after a prefix); what precedes them in a row comes from its
/// prefix's cache, whatever of `t` a shorter row does not need covers the end of its prefix
/// again. Equal to [`residuals`] to float tolerance.
pub fn residuals_from(
    model: &mut Model,
    prompts: &[(Option<&PrefixRun>, &[u32], usize)],
) -> Result<Vec<Vec<f32>>, Error> {
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    let (kv, hd) = (info.n_kv_heads as usize, info.head_dim as usize);
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(BATCH) {
        for (prefix, ids, position) in chunk {
            let p = prefix.map_or(0, |r| r.len());
            if let Some(prefix) = prefix {
                prefix.check_continues(ids)?;
            }
            if *position < p || *position >= ids.len() {
                return Err(Error::Inconsistent(format!(
                    "position {position} is not after the {p}-token prefix of a prompt of {} tokens",
                    ids.len()
                )));
            }
        }
        let rows = chunk.len();
        let prefix_len = |r: &Option<&PrefixRun>| r.map_or(0, |r| r.len());
        // Tokens computed per row, and per row how many cached prefix tokens precede them.
        let t = chunk
            .iter()
            .map(|(r, _, pos)| pos + 1 - prefix_len(r))
            .max()
            .unwrap_or(0);
        let kept: Vec<usize> = chunk
            .iter()
            .map(|(_, _, pos)| (pos + 1).saturating_sub(t))
            .collect();
        let past_len = kept.iter().copied().max().unwrap_or(0);
        let total = past_len + t;
        let (mut ids, mut positions, mut mask) = (
            Vec::with_capacity(rows * t),
            Vec::with_capacity(rows * t),
            Vec::with_capacity(rows * total),
        );
        for ((_, row, pos), &keep) in chunk.iter().zip(&kept) {
            let (from, len) = (keep, pos + 1 - keep);
            let pad = t - len;
            ids.extend(std::iter::repeat_n(0i64, pad));
            ids.extend(row[from..=*pos].iter().map(|&i| i64::from(i)));
            positions.extend(std::iter::repeat_n(0i64, pad));
            positions.extend(from as i64..=*pos as i64);
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
                for (r, ((prefix, _, _), &keep)) in chunk.iter().zip(&kept).enumerate() {
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
        let mut latents = vec![Vec::with_capacity(n_layers * d); rows];
        model.run_layers(
            0..n_layers,
            &mut hidden,
            rows,
            &positions,
            &mask,
            &past,
            past_len,
            &mut |_, h| {
                for (r, latent) in latents.iter_mut().enumerate() {
                    let at = (r * t + t - 1) * d;
                    latent.extend_from_slice(&h[at..at + d]);
                }
                Ok(())
            },
        )?;
        out.extend(latents);
    }
    Ok(out)
}

/// The latent of a source prompt: tokenized with the model's tokenizer and read at the site
/// its kind calls for. Returns the latent `[L, d]` and the tokenization.
pub fn prompt_latent(model: &mut Model, prompt: &Prompt) -> Result<(Vec<f32>, Tokenized), Error> {
    let tokens = prompt.tokenize(model.tokenizer()?)?;
    let position = Site::for_kind(prompt.kind).position(&tokens);
    Ok((residuals(model, &tokens.ids, position)?, tokens))
}

/// Combines source latents (each `[L, d]`) into one `[L, d]` with `extractor`.
pub fn combine(
    extractor: &dyn Extractor,
    sources: &[Vec<f32>],
    n_layers: usize,
    d: usize,
) -> Result<Vec<f32>, Error> {
    if sources.is_empty() || sources.iter().any(|s| s.len() != n_layers * d) {
        return Err(Error::Inconsistent(format!(
            "{} source latents of sizes {:?} cannot be combined as [n, {n_layers}, {d}]",
            sources.len(),
            sources.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    let stacked: Vec<f32> = sources.concat();
    let mut out = vec![0f32; n_layers * d];
    let in_shape = [sources.len(), n_layers, d];
    let out_shape = [n_layers, d];
    extractor.combine(
        TensorRef::new(&stacked, &in_shape)?,
        TensorMut::new(&mut out, &out_shape)?,
    )?;
    Ok(out)
}
