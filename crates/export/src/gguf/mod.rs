//! A reader for GGUF files (llama.cpp): the header (`header.rs`), dequantization of the
//! ggml block types (`dequant.rs`), and llama.cpp's naming and row conventions undone
//! (`names.rs`).
//!
//! Tensors are served under their Hugging Face names, in Hugging Face semantics: llama.cpp's
//! Q/K row permutation of Llama checkpoints is undone, BLOOM's and GPT-NeoX's fused q/k/v rows
//! are put back in their per-head order, and Gemma 3's norm weights, which the converter
//! stores as `1 + w`, are given back as `w`. The metadata is turned into an equivalent
//! `config.json` so that the architecture files read it like any checkpoint. Tensors are read
//! a chunk of whole rows at a time (`read.rs`).

mod dequant;
mod header;
mod names;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{ExportError, Result};
use crate::read;
use crate::weights::Weights;
use dequant::{GgmlType, dequantize, type_name};
use header::{Header, Meta, RawTensor};
use names::{hf_name, unfuse, unpermute};

/// The buffer the header is read through.
const HEADER_BUFFER: usize = 1 << 20;

struct TensorInfo {
    /// Dimensions in ggml order (`ne[0]` varies fastest).
    ne: Vec<usize>,
    ty: u32,
    /// Absolute byte offset in the file.
    start: usize,
}

/// An opened GGUF file.
pub(crate) struct Gguf {
    path: PathBuf,
    file: File,
    meta: HashMap<String, Meta>,
    tensors: HashMap<String, TensorInfo>,
    arch: String,
    /// Heads of q and k for llama.cpp's permutation, when it must be undone.
    permute: Option<(usize, usize)>,
    /// Heads of a fused q/k/v projection whose rows the converter regrouped.
    unfuse: Option<usize>,
    /// Whether norm weights are stored as `1 + w`.
    norm_shift: bool,
}

impl Gguf {
    /// Opens and indexes a GGUF file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Self::open_with_buffer(path, HEADER_BUFFER)
    }

    /// [`Gguf::open`], reading the header through a buffer of `buffer` bytes.
    fn open_with_buffer(path: &Path, buffer: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| ExportError::io(path, e))?;
        let file_len = read::len(&file, path)?;
        let Header {
            meta,
            arch,
            tensors: raw,
            data_start,
        } = Header::read(&file, path, file_len, buffer)?;
        let mut tensors = HashMap::new();
        for RawTensor {
            name,
            ne,
            ty,
            offset,
        } in raw
        {
            let start = data_start.checked_add(offset);
            // Dimensions come from the file: their product may not fit in a usize.
            let numel = ne.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let Some(numel) = numel else {
                return Err(ExportError::malformed(
                    path,
                    format!("tensor \"{name}\" has dimensions {ne:?}, too many elements"),
                ));
            };
            let size = GgmlType::from_id(ty).map(|t| {
                let (n, b) = t.block();
                (numel / n).saturating_mul(b)
            });
            if let (Some(start), Some(size)) = (start, size)
                && start
                    .checked_add(size)
                    .is_none_or(|end| end as u64 > file_len)
            {
                return Err(ExportError::Truncated {
                    path: path.to_path_buf(),
                    detail: format!(
                        "tensor \"{name}\" needs bytes {start}..{} but the file has {}",
                        start as u128 + size as u128,
                        file_len
                    ),
                });
            }
            if let Some(hf) = hf_name(&name, &arch) {
                tensors.insert(
                    hf,
                    TensorInfo {
                        ne,
                        ty,
                        start: start.unwrap_or(usize::MAX),
                    },
                );
            }
        }
        let mut g = Gguf {
            path: path.to_path_buf(),
            file,
            meta,
            tensors,
            permute: None,
            unfuse: None,
            norm_shift: arch == "gemma3",
            arch,
        };
        if g.arch == "llama" {
            let heads = g.uint("attention.head_count").unwrap_or(0) as usize;
            let kv = g
                .uint("attention.head_count_kv")
                .map_or(heads, |v| v as usize);
            g.permute = Some((heads, kv));
        }
        if g.arch == "bloom" || g.arch == "gptneox" {
            g.unfuse = Some(g.uint("attention.head_count").unwrap_or(0) as usize);
        }
        Ok(g)
    }

    fn uint(&self, key: &str) -> Option<u64> {
        match self.meta.get(&format!("{}.{key}", self.arch))? {
            Meta::Uint(v) => Some(*v),
            Meta::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn float(&self, key: &str) -> Option<f64> {
        match self.meta.get(&format!("{}.{key}", self.arch))? {
            Meta::Float(v) => Some(*v),
            Meta::Uint(v) => Some(*v as f64),
            _ => None,
        }
    }

    fn global(&self, key: &str) -> Option<&Meta> {
        self.meta.get(key)
    }

    /// The equivalent Hugging Face `config.json`.
    pub(crate) fn hf_config(&self) -> Result<Value> {
        let Some(&(_, model_type, architecture)) =
            names::ARCHS.iter().find(|(a, _, _)| *a == self.arch)
        else {
            return Err(ExportError::UnsupportedArchitecture {
                path: self.path.clone(),
                name: format!("gguf:{}", self.arch),
                supported: names::ARCHS.iter().map(|(a, _, _)| *a).collect(),
            });
        };
        let need = |k: &str| {
            self.uint(k).ok_or_else(|| {
                ExportError::malformed(&self.path, format!("missing {}.{k}", self.arch))
            })
        };
        let hidden = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let embed = hf_name("token_embd.weight", &self.arch).unwrap_or_default();
        let vocab = match self.tensors.get(&embed) {
            Some(t) if t.ne.len() == 2 => t.ne[1] as u64,
            _ => {
                return Err(ExportError::MissingTensor {
                    path: self.path.clone(),
                    tensor: "token_embd.weight".into(),
                });
            }
        };
        let head_dim = self
            .uint("attention.key_length")
            .unwrap_or(hidden / heads.max(1));
        let layers = need("block_count")?;
        let untied = self
            .tensors
            .contains_key(&hf_name("output.weight", &self.arch).unwrap_or_default());
        match self.arch.as_str() {
            "gptneox" => {
                let rotary = self.uint("rope.dimension_count").unwrap_or(head_dim / 4);
                let qkv_bias = hf_name("blk.0.attn_qkv.bias", &self.arch).unwrap_or_default();
                let mut j = json!({
                    "model_type": model_type,
                    "architectures": [architecture],
                    "hidden_size": hidden,
                    "intermediate_size": need("feed_forward_length")?,
                    "num_hidden_layers": layers,
                    "num_attention_heads": heads,
                    "vocab_size": vocab,
                    "layer_norm_eps": self.float("attention.layer_norm_epsilon").unwrap_or(1e-5),
                    "rope_parameters": {
                        "rope_type": "default",
                        "rope_theta": self.float("rope.freq_base").unwrap_or(10000.0),
                        "partial_rotary_factor": rotary as f64 / head_dim as f64,
                    },
                    "use_parallel_residual": self.flag("use_parallel_residual").unwrap_or(true),
                    "attention_bias": self.tensors.contains_key(&qkv_bias),
                    "tie_word_embeddings": !untied,
                });
                self.token_ids(&mut j);
                self.context_length(&mut j, "max_position_embeddings");
                return Ok(j);
            }
            "bloom" => {
                let mut j = json!({
                    "model_type": model_type,
                    "architectures": [architecture],
                    "hidden_size": hidden,
                    "n_layer": layers,
                    "n_head": heads,
                    "vocab_size": vocab,
                    "layer_norm_epsilon": self.float("attention.layer_norm_epsilon").unwrap_or(1e-5),
                    "tie_word_embeddings": !untied,
                });
                self.token_ids(&mut j);
                self.context_length(&mut j, "seq_length");
                return Ok(j);
            }
            _ => {}
        }
        let mut j = json!({
            "model_type": model_type,
            "architectures": [architecture],
            "hidden_size": hidden,
            "intermediate_size": need("feed_forward_length")?,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": self.uint("attention.head_count_kv").unwrap_or(heads),
            "head_dim": head_dim,
            "vocab_size": vocab,
            "rms_norm_eps": self.float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            "tie_word_embeddings": !untied,
        });
        if let Some(t) = self.float("rope.freq_base") {
            j["rope_theta"] = json!(t);
        }
        if let Some(Meta::Str(kind)) = self.meta.get(&format!("{}.rope.scaling.type", self.arch))
            && kind != "none"
        {
            j["rope_scaling"] = json!({
                "rope_type": kind,
                "factor": self.float("rope.scaling.factor").unwrap_or(1.0),
            });
        }
        self.token_ids(&mut j);
        self.context_length(&mut j, "max_position_embeddings");
        if self.arch == "gemma3" {
            // llama.cpp: every 6th layer global, local RoPE base 10000, queries scaled by
            // head_dim^-0.5 except for the 27B model (hidden/heads).
            let scalar = if layers == 62 {
                hidden / heads
            } else {
                head_dim
            };
            j["query_pre_attn_scalar"] = json!(scalar);
            j["sliding_window_pattern"] = json!(6);
            j["rope_local_base_freq"] = json!(10000.0);
            if let Some(w) = self.uint("attention.sliding_window") {
                j["sliding_window"] = json!(w);
            }
            for (k, hf) in [
                ("final_logit_softcapping", "final_logit_softcapping"),
                ("attn_logit_softcapping", "attn_logit_softcapping"),
            ] {
                if let Some(v) = self.float(k) {
                    j[hf] = json!(v);
                }
            }
        }
        if matches!(self.arch.as_str(), "qwen2" | "qwen3") {
            j["use_sliding_window"] = json!(false);
        }
        Ok(j)
    }

    /// `<arch>.context_length` as the config key `hf_key` the architecture reads it from.
    fn context_length(&self, j: &mut Value, hf_key: &str) {
        if let Some(n) = self.uint("context_length") {
            j[hf_key] = json!(n);
        }
    }

    /// The special token ids of the tokenizer metadata, as `config.json` keys.
    fn token_ids(&self, j: &mut Value) {
        for (gguf_key, hf_key) in [
            ("tokenizer.ggml.bos_token_id", "bos_token_id"),
            ("tokenizer.ggml.eos_token_id", "eos_token_id"),
            ("tokenizer.ggml.padding_token_id", "pad_token_id"),
        ] {
            if let Some(Meta::Uint(v)) = self.global(gguf_key) {
                j[hf_key] = json!(v);
            }
        }
    }

    fn flag(&self, key: &str) -> Option<bool> {
        match self.meta.get(&format!("{}.{key}", self.arch))? {
            Meta::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The Hugging Face row index of GGUF row `r` of tensor `name` (undoing llama.cpp's
    /// Q/K permutation where the architecture has it).
    fn hf_row(&self, name: &str, r: usize, rows: usize) -> usize {
        if let Some(heads) = self.unfuse
            && name.contains(".query_key_value.")
        {
            return unfuse(r, rows, heads);
        }
        let Some((heads, kv)) = self.permute else {
            return r;
        };
        let n_head = if name.ends_with("self_attn.q_proj.weight")
            || name.ends_with("self_attn.q_proj.bias")
        {
            heads
        } else if name.ends_with("self_attn.k_proj.weight")
            || name.ends_with("self_attn.k_proj.bias")
        {
            kv
        } else {
            return r;
        };
        unpermute(r, rows, n_head)
    }
}

impl Weights for Gguf {
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn rows(
        &self,
        name: &str,
        expected: &[usize],
        visit: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ExportError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let shape: Vec<usize> = t.ne.iter().rev().copied().collect();
        if shape != expected {
            return Err(ExportError::ShapeMismatch {
                path: self.path.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: shape,
            });
        }
        let ty = GgmlType::from_id(t.ty).ok_or_else(|| ExportError::UnsupportedDtype {
            path: self.path.clone(),
            tensor: name.to_string(),
            dtype: type_name(t.ty),
        })?;
        let cols = t.ne.first().copied().unwrap_or(1);
        let rows: usize = t.ne.iter().skip(1).product();
        let (per_block, block_bytes) = ty.block();
        if cols % per_block != 0 {
            return Err(ExportError::malformed(
                &self.path,
                format!("tensor \"{name}\" rows of {cols} are not whole {per_block}-blocks"),
            ));
        }
        let row_bytes = cols / per_block * block_bytes;
        let shift = self.norm_shift && name.ends_with("norm.weight");
        // A 1-D q/k bias is one row: permute its elements instead of its rows.
        let permute_elements =
            rows == 1 && (name.ends_with("_proj.bias") || name.ends_with("query_key_value.bias"));
        let mut row = vec![0f32; cols];
        let mut convert = |r: usize, bytes: &[u8]| {
            dequantize(ty, bytes, &mut row);
            if shift {
                for v in &mut row {
                    *v -= 1.0;
                }
            }
            if permute_elements {
                let mut out = vec![0f32; cols];
                for (k, &v) in row.iter().enumerate() {
                    out[self.hf_row(name, k, cols)] = v;
                }
                visit(0, &out);
                return;
            }
            visit(self.hf_row(name, r, rows), &row);
        };
        read::for_each_row(
            &self.file,
            &self.path,
            t.start as u64,
            row_bytes,
            rows,
            read::CHUNK_BYTES,
            &mut convert,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A GGUF v3 file with a few KB of metadata and one 3x4 F32 tensor holding 0..12.
    fn small_gguf() -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(1u64.to_le_bytes());
        out.extend(3u64.to_le_bytes());
        put_str(&mut out, "general.architecture");
        out.extend(8u32.to_le_bytes());
        put_str(&mut out, "llama");
        put_str(&mut out, "tokenizer.ggml.tokens");
        out.extend(9u32.to_le_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend(500u64.to_le_bytes());
        for i in 0..500 {
            put_str(&mut out, &format!("token{i}"));
        }
        put_str(&mut out, "llama.block_count");
        out.extend(4u32.to_le_bytes());
        out.extend(7u32.to_le_bytes());
        put_str(&mut out, "token_embd.weight");
        out.extend(2u32.to_le_bytes());
        out.extend(4u64.to_le_bytes());
        out.extend(3u64.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend((0..12).flat_map(|i| (i as f32).to_le_bytes()));
        out
    }

    /// What an open returned, as text: its error, or its metadata, tensor table and data.
    fn summary(r: Result<Gguf>) -> String {
        let g = match r {
            Ok(g) => g,
            Err(e) => return format!("error: {e}"),
        };
        let mut meta: Vec<_> = g.meta.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        meta.sort();
        let mut out = format!("{} {meta:?}", g.arch);
        let mut names: Vec<_> = g.tensors.keys().collect();
        names.sort();
        for n in names {
            let t = &g.tensors[n];
            let shape: Vec<usize> = t.ne.iter().rev().copied().collect();
            out += &format!(" {n} {:?} {} {}", t.ne, t.ty, t.start);
            g.rows(n, &shape, &mut |r, row| out += &format!(" {r}:{row:?}"))
                .unwrap();
        }
        out
    }

    /// A header read through a buffer of any size, smaller or larger than the header, reads
    /// the same; a file cut anywhere gives the same error either way, naming the file.
    #[test]
    fn the_header_reads_the_same_through_any_buffer() {
        let dir = TempDir::new("gguf-prefix");
        let p = dir.path().join("m.gguf");
        let bytes = small_gguf();
        assert!(bytes.len() > 4000, "{}", bytes.len());
        std::fs::write(&p, &bytes).unwrap();
        let whole = summary(Gguf::open_with_buffer(&p, 2 * bytes.len()));
        assert!(whole.contains("0:[0.0, 1.0, 2.0, 3.0]"), "{whole}");
        assert!(whole.contains("2:[8.0, 9.0, 10.0, 11.0]"), "{whole}");
        for first in [0, 1, 5, 24, 100, 1000, bytes.len(), HEADER_BUFFER] {
            assert_eq!(summary(Gguf::open_with_buffer(&p, first)), whole, "{first}");
        }
        for cut in (0..bytes.len())
            .step_by(7)
            .chain([4, 8, 23, 24, bytes.len() - 1])
        {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let want = summary(Gguf::open_with_buffer(&p, 2 * bytes.len()));
            assert!(
                want.starts_with(&format!("error: {} is truncated", p.display())),
                "cut {cut}: {want}"
            );
            for first in [1, 64, 1000] {
                let got = summary(Gguf::open_with_buffer(&p, first));
                assert_eq!(got, want, "cut {cut}, first {first}");
            }
        }
    }
}
