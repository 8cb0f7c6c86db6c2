//! A model opened for running: its manifest, a backend instance, and its tokenizer, with the
//! few operations everything else is built from: embed tokens, run a range of decoder blocks
//! over a KV cache while a hook reads or overwrites each block's output, apply the head to
//! chosen rows, and greedy decoding.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use xlpatch_abi::loader::Registry;
use xlpatch_abi::{Backend, LayerRun, ModelInfo, TensorMut, TensorRef};
use xlpatch_model::Manifest;

use crate::{Error, ShapeError, TokenizerError};

/// How to open a model's backend. The host passes the plugin only the model directory
/// (`model`), `threads` when not 0, `verify` when false, then `params` (which win): whatever a
/// runtime needs (its library, device, dtype) is the plugin's business.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// The backend plugin's name.
    pub plugin: String,
    /// Intra-op threads (0: the runtime decides).
    pub threads: usize,
    /// Check every file against the manifest's hashes.
    pub verify: bool,
    /// The plugin's own parameters (`[plugins.backend_params]` of a sweep).
    pub params: BTreeMap<String, String>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            plugin: "backend-ort".to_string(),
            threads: 0,
            verify: true,
            params: BTreeMap::new(),
        }
    }
}

impl BackendOptions {
    /// The parameters the plugin is created with, for the model directory `dir`.
    pub fn plugin_params(&self, dir: &Path) -> Vec<(String, String)> {
        let mut params = vec![("model".to_string(), dir.to_string_lossy().into_owned())];
        if self.threads > 0 {
            params.push(("threads".to_string(), self.threads.to_string()));
        }
        if !self.verify {
            params.push(("verify".to_string(), "false".to_string()));
        }
        params.extend(self.params.iter().map(|(k, v)| (k.clone(), v.clone())));
        params
    }
}

/// Keys and values of one decoder block for a batch, each `[batch, kv_heads, len, head_dim]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerKv {
    /// Keys.
    pub key: Vec<f32>,
    /// Values.
    pub value: Vec<f32>,
}

/// Called after each decoder block with the block's index and its output `[batch, seq, d]`,
/// which it may read or overwrite before the next block sees it.
pub type LayerHook<'a> = dyn FnMut(usize, &mut [f32]) -> Result<(), Error> + 'a;

/// A model ready to run.
pub struct Model {
    dir: PathBuf,
    manifest: Manifest,
    info: ModelInfo,
    backend: Box<dyn Backend>,
    tokenizer: Option<tokenizers::Tokenizer>,
    /// The most rows per head call, when set smaller than [`HEAD_BYTES`] allows.
    head_rows: Option<usize>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dir", &self.dir)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Opens the model directory `dir` with the backend plugin named in `options`.
    pub fn open(registry: &Registry, dir: &Path, options: &BackendOptions) -> Result<Model, Error> {
        let manifest = Manifest::read(dir)?;
        let owned = options.plugin_params(dir);
        let params: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let backend = registry.get(&options.plugin)?.backend(&params)?;
        let info = backend.info();
        if info.n_layers as usize != manifest.num_layers
            || info.d_model as usize != manifest.hidden_size
        {
            return Err(ShapeError::Backend {
                dir: dir.to_path_buf(),
                backend_layers: u64::from(info.n_layers),
                backend_d: u64::from(info.d_model),
                layers: manifest.num_layers as u64,
                d: manifest.hidden_size as u64,
            }
            .into());
        }
        let tokenizer = match &manifest.tokenizer {
            None => None,
            Some(file) => {
                let path = dir.join(file);
                let tok =
                    tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
                        path: Some(path.clone()),
                        source: TokenizerError::Load(e),
                    })?;
                // Special added tokens past the embedding (Gemma 3's `<image_soft_token>`)
                // are never produced from text; any other id past it means another model.
                let max_text_id = tok
                    .get_vocab(false)
                    .values()
                    .copied()
                    .chain(
                        tok.get_added_tokens_decoder()
                            .iter()
                            .filter(|(_, t)| !t.special)
                            .map(|(id, _)| *id),
                    )
                    .max()
                    .unwrap_or(0);
                if max_text_id as usize >= manifest.vocab_size {
                    return Err(Error::Tokenizer {
                        path: Some(path),
                        source: TokenizerError::ForeignVocabulary {
                            max_id: u64::from(max_text_id),
                            embeddings: manifest.vocab_size as u64,
                        },
                    });
                }
                Some(tok)
            }
        };
        Ok(Model {
            dir: dir.to_path_buf(),
            manifest,
            info,
            backend: Box::new(backend),
            tokenizer,
            head_rows: None,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Sizes as the backend reports them.
    pub fn info(&self) -> ModelInfo {
        self.info
    }

    /// The tokenizer, or an error naming the directory if the export has none.
    pub fn tokenizer(&self) -> Result<&tokenizers::Tokenizer, Error> {
        self.tokenizer.as_ref().ok_or_else(|| Error::Tokenizer {
            path: Some(self.dir.clone()),
            source: TokenizerError::Missing,
        })
    }

    /// Token ids of `text`, with the tokenizer's special tokens (e.g. BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        let tok = self.tokenizer()?;
        let enc = tok.encode(text, true).map_err(|source| Error::Tokenizer {
            path: Some(self.dir.clone()),
            source: TokenizerError::Encode {
                text: text.to_string(),
                source,
            },
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        self.tokenizer()?
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer {
                path: Some(self.dir.clone()),
                source: TokenizerError::DecodeText(e),
            })
    }

    /// The residual stream entering block 0 for `ids` `[batch, seq]`.
    pub fn embed(&mut self, ids: &[i64], batch: usize) -> Result<Vec<f32>, Error> {
        let seq = ids.len() / batch.max(1);
        let d = self.info.d_model as usize;
        let mut hidden = vec![0f32; batch * seq * d];
        self.backend.embed(
            TensorRef::new(ids, &[batch, seq])?,
            TensorMut::new(&mut hidden, &[batch, seq, d])?,
        )?;
        Ok(hidden)
    }

    /// Runs blocks `layers` over `hidden` (`[batch, seq, d]`, replaced by the last block's
    /// output). `past[k]` is the cache of block `layers.start + k` for the positions before
    /// (`past_len` of them); `mask` is `[batch, past_len + seq]`. After each block, `hook(i,
    /// output)` may read or overwrite its output before the next block sees it. Returns each
    /// block's cache for all `past_len + seq` positions.
    #[allow(clippy::too_many_arguments)]
    pub fn run_layers(
        &mut self,
        layers: Range<usize>,
        hidden: &mut Vec<f32>,
        batch: usize,
        positions: &[i64],
        mask: &[i64],
        past: &[LayerKv],
        past_len: usize,
        hook: &mut LayerHook<'_>,
    ) -> Result<Vec<LayerKv>, Error> {
        let d = self.info.d_model as usize;
        let (kv, hd) = (self.info.n_kv_heads as usize, self.info.head_dim as usize);
        let seq = hidden.len() / (batch * d);
        let total = past_len + seq;
        if past.len() != layers.len()
            || mask.len() != batch * total
            || positions.len() != batch * seq
        {
            return Err(ShapeError::Blocks {
                caches: past.len(),
                layers: layers.len(),
                mask: mask.len(),
                batch,
                total,
                positions: positions.len(),
                seq,
            }
            .into());
        }
        if seq == 0 {
            // Nothing to compute (a fused `Attention` refuses an empty query): the caches
            // stay as they are.
            return Ok(past.to_vec());
        }
        let mut presents = Vec::with_capacity(layers.len());
        let mut out = vec![0f32; hidden.len()];
        let past_shape = [batch, kv, past_len, hd];
        let present_shape = [batch, kv, total, hd];
        let hidden_shape = [batch, seq, d];
        for (k, layer) in layers.clone().enumerate() {
            let mut present = LayerKv {
                key: vec![0f32; batch * kv * total * hd],
                value: vec![0f32; batch * kv * total * hd],
            };
            self.backend.layer(
                layer as u32,
                LayerRun {
                    hidden_in: TensorRef::new(hidden, &hidden_shape)?,
                    position_ids: TensorRef::new(positions, &[batch, seq])?,
                    attention_mask: TensorRef::new(mask, &[batch, total])?,
                    past_key: TensorRef::new(&past[k].key, &past_shape)?,
                    past_value: TensorRef::new(&past[k].value, &past_shape)?,
                    hidden_out: TensorMut::new(&mut out, &hidden_shape)?,
                    present_key: TensorMut::new(&mut present.key, &present_shape)?,
                    present_value: TensorMut::new(&mut present.value, &present_shape)?,
                    attn_out: None,
                    mlp_out: None,
                },
            )?;
            hook(layer, &mut out)?;
            std::mem::swap(hidden, &mut out);
            presents.push(present);
        }
        Ok(presents)
    }

    /// Logits `[rows, vocab]` of residual rows `[rows, d]`, in head calls of at most
    /// [`Model::head_rows`] rows each.
    pub fn logits(&mut self, rows: &[f32]) -> Result<Vec<f32>, Error> {
        let mut logits = Vec::new();
        self.logits_into(rows, &mut logits)?;
        Ok(logits)
    }

    /// [`Model::logits`] into `logits`, reusing its memory: a generation step's logits are
    /// up to [`HEAD_BYTES`], and a fresh buffer of that size each step costs the kernel's
    /// zeroing of every page (measured: a third of a sweep's time on Gemma-3-270M).
    pub fn logits_into(&mut self, rows: &[f32], logits: &mut Vec<f32>) -> Result<(), Error> {
        let d = self.info.d_model as usize;
        let n = rows.len() / d;
        let v = self.info.vocab as usize;
        // Every element is written by the head; only grown memory is filled first.
        if logits.len() > n * v {
            logits.truncate(n * v);
        } else {
            logits.resize(n * v, 0.0);
        }
        let most = self.head_rows();
        for (x, out) in rows.chunks(most * d).zip(logits.chunks_mut(most * v)) {
            let k = x.len() / d;
            self.backend.head(
                TensorRef::new(x, &[1, k, d])?,
                TensorMut::new(out, &[1, k, v])?,
            )?;
        }
        Ok(())
    }

    /// The most rows one head call takes: as many as [`HEAD_BYTES`] of logits hold, or
    /// fewer if [`Model::set_head_rows`] said so.
    pub fn head_rows(&self) -> usize {
        let fits = (HEAD_BYTES / (self.info.vocab as usize * 4).max(1)).max(1);
        self.head_rows.map_or(fits, |n| n.clamp(1, fits))
    }

    /// Limits head calls to `rows` rows each (at least 1; never more than [`HEAD_BYTES`]
    /// allows): a memory bound tighter than the default, or one row per call to compare
    /// shared head calls with separate ones.
    pub fn set_head_rows(&mut self, rows: usize) {
        self.head_rows = Some(rows);
    }

    /// Runs one unpadded prompt from its first token through every block (`hook` after each,
    /// as in [`Model::run_layers`]). Returns the last block's output `[T, d]` and every
    /// block's cache `[1, kv, T, hd]`.
    pub fn run_prompt(
        &mut self,
        ids: &[u32],
        hook: &mut LayerHook<'_>,
    ) -> Result<(Vec<f32>, Vec<LayerKv>), Error> {
        let n_layers = self.info.n_layers as usize;
        let t = ids.len();
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let mut hidden = self.embed(&ids, 1)?;
        let positions: Vec<i64> = (0..t as i64).collect();
        let cache = self.run_layers(
            0..n_layers,
            &mut hidden,
            1,
            &positions,
            &vec![1; t],
            &vec![LayerKv::default(); n_layers],
            0,
            hook,
        )?;
        Ok((hidden, cache))
    }
}

/// The logits one head call may write (`rows × vocab × 4` bytes). A head call streams the
/// whole unembedding (671 MB in f32 for Gemma-3-270M's 262,144 × 640), so callers gather as
/// many rows into one call as they can: the weights' traffic is then paid once per call, and
/// the product becomes compute-bound (with PyTorch at 1 thread on the development machine,
/// Gemma-3-270M's head ran at 24, 49, 78 and 81 GFLOP/s on 18, 64, 256 and 512 rows against
/// 110 GFLOP/s for a square 2048 product). 256 MiB is 256 rows of that vocabulary: past it
/// the rate gains a few percent while the logits (and the probabilities kept beside them)
/// grow without bound, so larger batches are split into calls of this size.
pub const HEAD_BYTES: usize = 256 << 20;

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// Softmax in f64 accumulation, returned as f32.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties_and_softmax_sums_to_one() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        let p = softmax(&[1000.0, 1000.0, 0.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] < 1e-30);
        assert!((p.iter().map(|&x| f64::from(x)).sum::<f64>() - 1.0).abs() < 1e-6);
    }
}
