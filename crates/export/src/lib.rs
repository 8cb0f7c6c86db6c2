//! `xlpatch-export`: a Hugging Face checkpoint in, per-layer ONNX graphs out, with no PyTorch.
//!
//! The residual stream between decoder blocks is the interface the rest of xlpatch patches,
//! so every block is its own graph: `embed.onnx` maps token ids to the residual stream,
//! `layer_{i}.onnx` runs block `i` with a KV cache in and out, and `head.onnx` applies the
//! final norm and the unembedding (the logit lens is `head` on any layer's residual).
//! `manifest.json` describes the set and holds the sha256 of every file.
//!
//! The key design choice is to write the ONNX protobuf directly, node by node, from a
//! hand-written subset of `onnx.proto3` (as onnxruntime-genai's model builder does in Python),
//! reading weights straight from the checkpoint a bounded chunk of rows at a time: the graph is
//! exactly the one described here, nothing is traced, and exporting needs about one layer's
//! weights in memory (plus the embedding while writing `embed` and `head`).
//!
//! # Graph contract
//!
//! - `embed.onnx`: `input_ids` int64 `[batch, seq]` -> `hidden` f32 `[batch, seq, d]`.
//! - `layer_{i}.onnx`: `hidden_in` f32 `[batch, seq, d]`, `position_ids` int64 `[batch, seq]`,
//!   `attention_mask` int64 `[batch, total]` (1 = token, 0 = padding; `total = past + seq`),
//!   `past_key`, `past_value` f32 `[batch, kv_heads, past, head_dim]` (`past` may be 0) ->
//!   `hidden_out` f32 `[batch, seq, d]`, `present_key`, `present_value` f32
//!   `[batch, kv_heads, total, head_dim]`, and with [`ExportOptions::extra_outputs`]
//!   `attn_out`, `mlp_out` f32 `[batch, seq, d]` (what attention and MLP add to the residual).
//! - `head.onnx`: `hidden` f32 `[batch, seq, d]` -> `logits` f32 `[batch, seq, vocab]`.
//!
//! [`GraphOps`] chooses how a block is spelled: `fused` (the default, opset 23) uses ONNX's
//! `RMSNormalization`, `RotaryEmbedding` and `Attention`; `basic` (opset 21) writes them out
//! as primitives. Both compute the same function (a test holds them within 1e-5). On the
//! small models of a checkpoint study, ONNX Runtime's cost per node dominates a call on a few
//! tokens, and the fused block has about a third of the nodes.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod arch;
mod attention;
mod config;
mod error;
mod gguf;
mod graph;
mod model;
mod ops;
mod read;
mod safetensors;
#[cfg(test)]
mod testutil;
mod tokenizer;
mod weights;

// The messages live in their own crate, shared with the candle backend that reads them.
use xlpatch_onnx_proto as onnx;

use std::path::{Path, PathBuf};

pub use error::{ExportError, Result};
pub use xlpatch_model::{
    AttentionType, Dtype, GraphOps, MANIFEST_FILE, MANIFEST_VERSION, Manifest, ModelError,
};

/// Weights above this many bytes in one graph go to an external data file by default.
pub const DEFAULT_EXTERNAL_DATA_THRESHOLD: usize = 1 << 30;

/// The tokenizer's file name inside an exported model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// What to export, where, and how; start from [`ExportOptions::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportOptions {
    /// A Hugging Face checkpoint directory (`config.json` plus `model.safetensors` or a
    /// sharded `model.safetensors.index.json`), or a `.gguf` file.
    pub model: PathBuf,
    /// The directory to write (created if absent).
    pub out: PathBuf,
    /// A `tokenizer.json` to check against the vocabulary and copy as `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// How weights are stored.
    pub dtype: Dtype,
    /// The checkpoint's training step, recorded in the manifest.
    pub step: Option<u64>,
    /// The checkpoint's revision, recorded in the manifest.
    pub revision: Option<String>,
    /// Whether layer graphs also output `attn_out` and `mlp_out`.
    pub extra_outputs: bool,
    /// Which operators the graphs use ([`GraphOps::Fused`] unless told otherwise).
    pub ops: GraphOps,
    /// A graph whose weights exceed this many bytes keeps them in `<graph>.bin`.
    pub external_data_threshold: usize,
}

impl ExportOptions {
    /// Options with defaults: f32, no tokenizer, no extra outputs, the default threshold.
    pub fn new(model: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        ExportOptions {
            model: model.into(),
            out: out.into(),
            tokenizer: None,
            dtype: Dtype::F32,
            step: None,
            revision: None,
            extra_outputs: false,
            ops: GraphOps::Fused,
            external_data_threshold: DEFAULT_EXTERNAL_DATA_THRESHOLD,
        }
    }
}

/// How the blocks of an architecture differ from Llama's, for an architecture the exporter
/// writes (`name` as a manifest records it, e.g. `GPTNeoXForCausalLM`, or a `model_type`).
pub fn architecture_features(name: &str) -> Option<&'static str> {
    arch::features(name)
}

/// `(model_type, architectures[0])` of every architecture the exporter writes.
pub fn supported_architectures() -> Vec<(&'static str, &'static str)> {
    arch::supported().collect()
}

/// Exports a checkpoint to a model directory and returns the manifest written there.
///
/// Graphs are built and written one at a time, so memory holds one graph's weights.
///
/// `opts.model` is a checkpoint directory or a `.gguf` file (dequantized to f32; the
/// metadata stands in for `config.json`).
pub fn export(opts: &ExportOptions) -> Result<Manifest> {
    let model = &opts.model;
    let not_a_model = |problem: &str| ExportError::NotAModel {
        path: model.clone(),
        problem: problem.to_string(),
    };
    let is_gguf = model.is_file()
        && (model
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            || gguf_magic(model));
    if !model.exists() {
        return Err(not_a_model("does not exist"));
    }
    if model.is_file() && !is_gguf {
        return Err(not_a_model(
            "is a file but not a GGUF file (a safetensors file is exported from its directory)",
        ));
    }
    if model.is_dir() && !model.join("config.json").is_file() {
        return Err(not_a_model("is a directory without config.json"));
    }
    if is_gguf {
        let weights = gguf::Gguf::open(&opts.model)?;
        let cfg = arch::from_json(&opts.model, weights.hf_config()?)?;
        write_all(opts, &cfg, &weights)
    } else {
        let cfg = arch::load(&opts.model)?;
        let weights = safetensors::SafeTensors::open_dir(&opts.model)?;
        write_all(opts, &cfg, &weights)
    }
}

/// Whether the file begins as a GGUF file does.
fn gguf_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

fn write_all(
    opts: &ExportOptions,
    cfg: &config::Config,
    weights: &dyn weights::Weights,
) -> Result<Manifest> {
    // A checkpoint of the base model lacks the base model's prefix on every name.
    let prefix = cfg.names.embed.split_once('.').map_or("", |(p, _)| p);
    let prefix = format!("{prefix}.");
    let unprefixed = weights::Unprefixed {
        inner: weights,
        prefix: &prefix,
    };
    let weights: &dyn weights::Weights = match cfg.names.embed.strip_prefix(prefix.as_str()) {
        Some(short) if !weights.has(cfg.names.embed) && weights.has(short) => &unprefixed,
        _ => weights,
    };
    let out: &Path = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| ExportError::io(out, e))?;
    let mut files = graph::FileHashes::new();
    let tokenizer = match &opts.tokenizer {
        Some(src) => {
            tokenizer::check(src, cfg.vocab_size)?;
            let dst = out.join(TOKENIZER_FILE);
            std::fs::copy(src, &dst).map_err(|e| ExportError::io(src, e))?;
            files.insert(TOKENIZER_FILE.to_string(), graph::sha256_file(&dst)?);
            Some(TOKENIZER_FILE.to_string())
        }
        None => None,
    };
    let ex = ops::Exporter {
        cfg,
        weights,
        dtype: opts.dtype,
        extra_outputs: opts.extra_outputs,
        ops: opts.ops,
    };
    let threshold = opts.external_data_threshold;
    files.extend(ex.embed()?.write(out, "embed", threshold)?);
    for i in 0..cfg.num_layers {
        files.extend(ex.layer(i)?.write(out, &format!("layer_{i}"), threshold)?);
    }
    files.extend(ex.head()?.write(out, "head", threshold)?);
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        architecture: cfg.architecture.clone(),
        num_layers: cfg.num_layers,
        hidden_size: cfg.hidden_size,
        num_heads: cfg.num_heads,
        num_kv_heads: cfg.num_kv_heads,
        head_dim: cfg.head_dim,
        vocab_size: cfg.vocab_size,
        intermediate_size: cfg.intermediate_size,
        layer_types: cfg.layer_types.clone(),
        sliding_window: cfg.sliding_window,
        context_length: cfg.context_length,
        dtype: opts.dtype,
        source: opts.model.to_string_lossy().into_owned(),
        revision: opts.revision.clone(),
        step: opts.step,
        tokenizer,
        extra_outputs: opts.extra_outputs,
        ops: opts.ops,
        bos_token_id: cfg.bos_token_id.clone(),
        eos_token_id: cfg.eos_token_id.clone(),
        pad_token_id: cfg.pad_token_id.clone(),
        files,
    };
    manifest.save(out)?;
    Ok(manifest)
}
