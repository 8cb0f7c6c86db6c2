//! Source latents (docs/method.md): the residual stream of a source prompt at one token, for every
//! block, `[L, d]`; several sources stacked `[n, L, d]` and combined per block by an
//! extractor plugin (`extract-mean` for mean patching, `extract-first` for the control).
//!
//! A cut source prompt is read at its concept word's last token; the single-layer variant's
//! source, a whole translation prompt, at its last token ([`Site`]).

use xlpatch_abi::{Extractor, TensorMut, TensorRef};

use crate::model::Model;
use crate::prefix::{Continuation, PrefixRun};
use crate::prompt::{Prompt, PromptKind, Tokenized};
use crate::{Error, ShapeError};

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
        return Err(ShapeError::Outside {
            position,
            len: ids.len(),
        }
        .into());
    }
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    let mut out = Vec::with_capacity(n_layers * d);
    model.run_prompt(&ids[..=position], &mut |_, h| {
        out.extend_from_slice(&h[position * d..(position + 1) * d]);
        Ok(())
    })?;
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
/// up to [`BATCH`] rows laid out as a [`Continuation`]. Equal to [`residuals`] to float
/// tolerance.
pub fn residuals_from(
    model: &mut Model,
    prompts: &[(Option<&PrefixRun>, &[u32], usize)],
) -> Result<Vec<Vec<f32>>, Error> {
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(BATCH) {
        let batch = Continuation::plan(chunk)?;
        let t = batch.t;
        let mut latents = vec![Vec::with_capacity(n_layers * d); chunk.len()];
        batch.run(model, &mut |_, h| {
            for (r, latent) in latents.iter_mut().enumerate() {
                let at = (r * t + t - 1) * d;
                latent.extend_from_slice(&h[at..at + d]);
            }
            Ok(())
        })?;
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
        return Err(ShapeError::Latents {
            sizes: sources.iter().map(Vec::len).collect(),
            layers: n_layers,
            d,
        }
        .into());
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
