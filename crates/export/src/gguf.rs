//! A reader for GGUF files (llama.cpp): header, metadata, tensor table, and dequantization of
//! F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K and Q6_K per ggml's block definitions
//! (`ggml-common.h`, `dequantize_row_*` in `ggml-quants.c`).
//!
//! Tensors are served under their Hugging Face names, in Hugging Face semantics: llama.cpp's
//! Q/K row permutation of Llama checkpoints is undone, and Gemma 3's norm weights, which the
//! converter stores as `1 + w`, are given back as `w`. The metadata is turned into an
//! equivalent `config.json` so that the architecture files read it like any checkpoint.
//!
//! The header is parsed from a prefix of the file read into memory, grown until it holds the
//! whole header; tensors are then read a chunk of whole rows at a time (`read.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{ExportError, Result};
use crate::read;
use crate::weights::Weights;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// The prefix first read for the header. Small vocabularies fit in it; a large one does not
/// (Gemma 3's 262k tokens make 6.2 MiB of metadata), and then the prefix grows by
/// [`PREFIX_GROWTH`] and the parse starts over: a few cheap tries rather than a large buffer
/// for every file.
const HEADER_PREFIX: usize = 1 << 20;
/// The factor by which a header prefix that proved too short grows.
const PREFIX_GROWTH: usize = 4;

/// A ggml tensor type: its name, elements per block and bytes per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GgmlType {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }
}

/// A name for a ggml type id, for messages.
fn type_name(id: u32) -> String {
    let known = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
    ];
    known
        .get(id as usize)
        .map_or_else(|| format!("ggml type {id}"), |s| s.to_string())
}

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes whole blocks of `t` from `src` into `dst` (`dst.len()` a multiple of the
/// block's element count, `src` exactly the matching bytes).
pub(crate) fn dequantize(t: GgmlType, src: &[u8], dst: &mut [f32]) {
    let (n, bytes) = t.block();
    for (b, y) in src.chunks_exact(bytes).zip(dst.chunks_exact_mut(n)) {
        match t {
            GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            GgmlType::F16 => y[0] = f16(b),
            GgmlType::Bf16 => y[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            GgmlType::Q8_0 => {
                let d = f16(b);
                for (o, &q) in y.iter_mut().zip(&b[2..34]) {
                    *o = (q as i8) as f32 * d;
                }
            }
            GgmlType::Q4_0 => {
                let d = f16(b);
                for (j, &q) in b[2..18].iter().enumerate() {
                    y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
                    y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16(b), f16(&b[2..]));
                for (j, &q) in b[4..20].iter().enumerate() {
                    y[j] = (q & 0x0F) as f32 * d + m;
                    y[j + 16] = (q >> 4) as f32 * d + m;
                }
            }
            GgmlType::Q5_0 => {
                let d = f16(b);
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                for (j, &q) in b[6..22].iter().enumerate() {
                    let h0 = (((qh >> j) << 4) & 0x10) as u8;
                    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                    y[j] = (((q & 0x0F) | h0) as i32 - 16) as f32 * d;
                    y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
                }
            }
            GgmlType::Q4K => {
                let (d, dmin) = (f16(b), f16(&b[2..]));
                let scales = &b[4..16];
                let qs = &b[16..144];
                for (k, y) in y.chunks_exact_mut(64).enumerate() {
                    let q = &qs[32 * k..32 * k + 32];
                    let (sc1, m1) = scale_min_k4(2 * k, scales);
                    let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
                    for l in 0..32 {
                        y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                        y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
            GgmlType::Q5K => {
                let (d, dmin) = (f16(b), f16(&b[2..]));
                let scales = &b[4..16];
                let qh = &b[16..48];
                let qs = &b[48..176];
                for (k, y) in y.chunks_exact_mut(64).enumerate() {
                    let ql = &qs[32 * k..32 * k + 32];
                    let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
                    let (sc1, m1) = scale_min_k4(2 * k, scales);
                    let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
                        y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
                    }
                }
            }
            GgmlType::Q6K => {
                let ql = &b[0..128];
                let qh = &b[128..192];
                let sc = &b[192..208];
                let d = f16(&b[208..210]);
                for (n, y) in y.chunks_exact_mut(128).enumerate() {
                    let ql = &ql[64 * n..64 * n + 64];
                    let qh = &qh[32 * n..32 * n + 32];
                    let sc = &sc[8 * n..8 * n + 8];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        let s = |i: usize| d * (sc[i] as i8) as f32;
                        y[l] = s(is) * q1 as f32;
                        y[l + 32] = s(is + 2) * q2 as f32;
                        y[l + 64] = s(is + 4) * q3 as f32;
                        y[l + 96] = s(is + 6) * q4 as f32;
                    }
                }
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a K-quant block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// A metadata value (array contents are skipped; their length is kept).
#[derive(Clone, Debug, PartialEq)]
enum Meta {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(u64),
}

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
    /// Whether norm weights are stored as `1 + w`.
    norm_shift: bool,
}

/// A reader of the header from `bytes`, a prefix of a file of `file_len` bytes.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    file_len: u64,
    pos: usize,
    /// Set, to the end offset needed, when a read ran past the prefix but not past the file:
    /// the error returned then only means "read more", and the caller retries.
    short: Option<usize>,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e as u64 <= self.file_len);
        let Some(end) = end else {
            return Err(ExportError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "header needs {n} bytes at offset {} but the file has {}",
                    self.pos, self.file_len
                ),
            });
        };
        if end > self.bytes.len() {
            self.short = Some(end);
            return Err(ExportError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "header needs bytes up to {end} but only {} were read",
                    self.bytes.len()
                ),
            });
        }
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| ExportError::malformed(self.path, "length overflows"))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| ExportError::malformed(self.path, "string is not utf-8"))
    }
    fn value(&mut self, ty: u32) -> Result<Meta> {
        Ok(match ty {
            0 => Meta::Uint(self.u8()? as u64),
            1 => Meta::Int(self.u8()? as i8 as i64),
            2 => Meta::Uint(u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as u64),
            3 => Meta::Int(i16::from_le_bytes(self.take(2)?.try_into().expect("2")) as i64),
            4 => Meta::Uint(self.u32()? as u64),
            5 => Meta::Int(self.u32()? as i32 as i64),
            6 => Meta::Float(f32::from_le_bytes(self.take(4)?.try_into().expect("4")) as f64),
            7 => Meta::Bool(self.u8()? != 0),
            8 => Meta::Str(self.string()?),
            9 => {
                let inner = self.u32()?;
                let n = self.u64()?;
                for _ in 0..n {
                    self.value(inner)?;
                }
                Meta::Array(n)
            }
            10 => Meta::Uint(self.u64()?),
            11 => Meta::Int(self.u64()? as i64),
            12 => Meta::Float(f64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            other => {
                return Err(ExportError::malformed(
                    self.path,
                    format!("unknown metadata value type {other}"),
                ));
            }
        })
    }
}

/// The Hugging Face name of a GGUF tensor name, if it is one the exporter uses.
fn hf_name(gguf: &str, arch: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (i, tail) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (stem, kind) = tail.rsplit_once('.')?;
    let gemma = arch == "gemma3";
    let part = match stem {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{i}.{part}.{kind}"))
}

/// What the header holds, read before any tensor data.
struct Header {
    meta: HashMap<String, Meta>,
    arch: String,
    /// Per tensor as stored: GGUF name, dimensions (ggml order), type id, offset from the data.
    tensors: Vec<(String, Vec<usize>, u32, usize)>,
    /// Absolute offset of the data section.
    data_start: usize,
}

impl Header {
    /// Parses the header from the start of the file.
    fn parse(c: &mut Cursor<'_>) -> Result<Self> {
        let path = c.path;
        if c.take(4)? != MAGIC {
            return Err(ExportError::malformed(path, "not a GGUF file (bad magic)"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ExportError::malformed(
                path,
                format!("GGUF version {version} is not supported (2 or 3)"),
            ));
        }
        let n_tensors = c.u64()?;
        let n_meta = c.u64()?;
        let mut meta = HashMap::new();
        for _ in 0..n_meta {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty)?;
            meta.insert(key, v);
        }
        let arch = match meta.get("general.architecture") {
            Some(Meta::Str(s)) => s.clone(),
            _ => return Err(ExportError::malformed(path, "no general.architecture")),
        };
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()? as usize;
            if nd > 4 {
                return Err(ExportError::malformed(
                    path,
                    format!("tensor \"{name}\" has {nd} dims"),
                ));
            }
            let mut ne = Vec::with_capacity(nd);
            for _ in 0..nd {
                ne.push(c.len()?);
            }
            let ty = c.u32()?;
            let offset = c.len()?;
            tensors.push((name, ne, ty, offset));
        }
        let align = match meta.get("general.alignment") {
            Some(Meta::Uint(a)) if *a > 0 => *a,
            _ => DEFAULT_ALIGNMENT,
        } as usize;
        let data_start = c.pos.div_ceil(align) * align;
        Ok(Header {
            meta,
            arch,
            tensors,
            data_start,
        })
    }

    /// Reads and parses the header of `file` (`file_len` bytes long), from a prefix of `first`
    /// bytes grown until the header fits in it.
    fn read(file: &File, path: &Path, file_len: u64, first: usize) -> Result<Self> {
        let mut bytes = Vec::new();
        let mut want = first.max(1);
        loop {
            let target = usize::try_from(file_len).map_or(want, |len| want.min(len));
            let have = bytes.len();
            bytes.resize(target, 0);
            // Only what the last try lacked is read; the parse itself starts over.
            read::read_at(file, path, have as u64, &mut bytes[have..])?;
            let mut c = Cursor {
                path,
                bytes: &bytes,
                file_len,
                pos: 0,
                short: None,
            };
            let parsed = Self::parse(&mut c);
            // A parse that ran past the prefix, not past the file, needs more of the file; the
            // cursor reports truncation itself when the file is too short, so this ends.
            match c.short {
                Some(end) if parsed.is_err() => {
                    want = want.saturating_mul(PREFIX_GROWTH).max(end);
                }
                _ => return parsed,
            }
        }
    }
}

impl Gguf {
    /// Opens and indexes a GGUF file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Self::open_with_prefix(path, HEADER_PREFIX)
    }

    /// [`Gguf::open`], first reading `prefix` bytes for the header.
    fn open_with_prefix(path: &Path, prefix: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| ExportError::io(path, e))?;
        let file_len = read::len(&file, path)?;
        let Header {
            meta,
            arch,
            tensors: raw,
            data_start,
        } = Header::read(&file, path, file_len, prefix)?;
        let mut tensors = HashMap::new();
        for (name, ne, ty, offset) in raw {
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
        let architecture = match self.arch.as_str() {
            "llama" => "LlamaForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            "gemma3" => "Gemma3ForCausalLM",
            other => {
                return Err(ExportError::UnsupportedArchitecture {
                    path: self.path.clone(),
                    name: format!("gguf:{other}"),
                    supported: vec!["gguf:llama", "gguf:qwen2", "gguf:gemma3"],
                });
            }
        };
        let need = |k: &str| {
            self.uint(k).ok_or_else(|| {
                ExportError::malformed(&self.path, format!("missing {}.{k}", self.arch))
            })
        };
        let hidden = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let vocab = match self.tensors.get("model.embed_tokens.weight") {
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
        let mut j = json!({
            "architectures": [architecture],
            "hidden_size": hidden,
            "intermediate_size": need("feed_forward_length")?,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": self.uint("attention.head_count_kv").unwrap_or(heads),
            "head_dim": head_dim,
            "vocab_size": vocab,
            "rms_norm_eps": self.float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            "tie_word_embeddings": !self.tensors.contains_key("lm_head.weight"),
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
        for (gguf_key, hf_key) in [
            ("tokenizer.ggml.bos_token_id", "bos_token_id"),
            ("tokenizer.ggml.eos_token_id", "eos_token_id"),
            ("tokenizer.ggml.padding_token_id", "pad_token_id"),
        ] {
            if let Some(Meta::Uint(v)) = self.global(gguf_key) {
                j[hf_key] = json!(v);
            }
        }
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
        if self.arch == "qwen2" {
            j["use_sliding_window"] = json!(false);
        }
        Ok(j)
    }

    /// The Hugging Face row index of GGUF row `r` of tensor `name` (undoing llama.cpp's
    /// Q/K permutation where the architecture has it).
    fn hf_row(&self, name: &str, r: usize, rows: usize) -> usize {
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

/// The Hugging Face row of GGUF row `r` of a `rows`-row q or k projection with `n_head` heads:
/// llama.cpp's converter maps HF row `(h, s, j)` to `(h, j, s)` within each head of
/// `2 * half` rows.
fn unpermute(r: usize, rows: usize, n_head: usize) -> usize {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return r;
    }
    let half = rows / n_head / 2;
    let (h, within) = (r / (2 * half), r % (2 * half));
    let (j, s) = (within / 2, within % 2);
    h * 2 * half + s * half + j
}

impl Weights for Gguf {
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
        let permute_elements = rows == 1 && name.ends_with("_proj.bias");
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

    /// A header read from a prefix that must grow, from any first size, reads as one read
    /// whole; a file cut anywhere gives the same error either way, naming the file's length.
    #[test]
    fn a_growing_header_prefix_reads_as_the_whole_file() {
        let dir = TempDir::new("gguf-prefix");
        let p = dir.path().join("m.gguf");
        let bytes = small_gguf();
        assert!(bytes.len() > 4000, "{}", bytes.len());
        std::fs::write(&p, &bytes).unwrap();
        let whole = summary(Gguf::open_with_prefix(&p, usize::MAX));
        assert!(whole.contains("0:[0.0, 1.0, 2.0, 3.0]"), "{whole}");
        assert!(whole.contains("2:[8.0, 9.0, 10.0, 11.0]"), "{whole}");
        for first in [0, 1, 5, 24, 100, 1000, bytes.len(), HEADER_PREFIX] {
            assert_eq!(summary(Gguf::open_with_prefix(&p, first)), whole, "{first}");
        }
        for cut in (0..bytes.len())
            .step_by(7)
            .chain([4, 8, 23, 24, bytes.len() - 1])
        {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let want = summary(Gguf::open_with_prefix(&p, usize::MAX));
            assert!(
                want.starts_with(&format!("error: {} is truncated", p.display())),
                "cut {cut}: {want}"
            );
            assert!(!want.contains("were read"), "cut {cut}: {want}");
            for first in [1, 64, 1000] {
                let got = summary(Gguf::open_with_prefix(&p, first));
                assert_eq!(got, want, "cut {cut}, first {first}");
            }
        }
    }

    fn f16b(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_is_d_times_int8() {
        let mut b = f16b(0.5).to_vec();
        b.extend((0..32).map(|i| ((i as i8) - 16) as u8));
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q8_0, &b, &mut y);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, 0.5 * (i as f32 - 16.0));
        }
    }

    #[test]
    fn q4_0_and_q4_1_nibbles() {
        let qs: Vec<u8> = (0..16).map(|j| (j as u8) | ((15 - j as u8) << 4)).collect();
        let mut b = f16b(2.0).to_vec();
        b.extend(&qs);
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q4_0, &b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 2.0 * (j as f32 - 8.0));
            assert_eq!(y[j + 16], 2.0 * ((15 - j) as f32 - 8.0));
        }
        let mut b = f16b(0.25).to_vec();
        b.extend(f16b(-1.0));
        b.extend(&qs);
        dequantize(GgmlType::Q4_1, &b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 0.25 * j as f32 - 1.0);
            assert_eq!(y[j + 16], 0.25 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q5_0_takes_the_fifth_bit_from_qh() {
        // Element i (0..32) has low nibble (i % 16) and fifth bit (bit i of qh).
        let qh: u32 = 0b1010_0110_0000_1111_0101_0011_1100_1001;
        let mut b = f16b(0.5).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend((0..16u8).map(|j| j | (((j + 3) % 16) << 4)));
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q5_0, &b, &mut y);
        for (i, &v) in y.iter().enumerate() {
            let low = if i < 16 {
                i as u32
            } else {
                ((i - 16) as u32 + 3) % 16
            };
            let q = low | (((qh >> i) & 1) << 4);
            assert_eq!(v, 0.5 * (q as f32 - 16.0), "element {i}");
        }
    }

    /// Packs 8 (scale, min) pairs of 6 bits as ggml's quantizer does.
    fn pack_scales(ls: [u8; 8], lm: [u8; 8]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                s[j] = ls[j];
                s[j + 4] = lm[j];
            } else {
                s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
                s[j - 4] |= (ls[j] >> 4) << 6;
                s[j] |= (lm[j] >> 4) << 6;
            }
        }
        s
    }

    #[test]
    fn q4_k_matches_its_quantizer_layout() {
        let ls = [1, 63, 17, 32, 45, 9, 60, 33];
        let lm = [0, 5, 63, 48, 16, 31, 2, 50];
        let l: Vec<u8> = (0..256).map(|i| ((i * 7 + 3) % 16) as u8).collect();
        let (d, dmin) = (0.125f32, 0.0625f32);
        let mut b = f16b(d).to_vec();
        b.extend(f16b(dmin));
        b.extend(pack_scales(ls, lm));
        for j in (0..256).step_by(64) {
            for k in 0..32 {
                b.push(l[j + k] | (l[j + k + 32] << 4));
            }
        }
        assert_eq!(b.len(), 144);
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q4K, &b, &mut y);
        for i in 0..256 {
            let s = i / 32;
            let want = d * ls[s] as f32 * l[i] as f32 - dmin * lm[s] as f32;
            assert_eq!(y[i], want, "element {i}");
        }
    }

    #[test]
    fn q5_k_matches_its_quantizer_layout() {
        let ls = [3, 63, 17, 32, 45, 9, 60, 33];
        let lm = [7, 5, 63, 48, 16, 31, 2, 50];
        let l: Vec<u8> = (0..256).map(|i| ((i * 11 + 5) % 32) as u8).collect();
        let (d, dmin) = (0.25f32, 0.5f32);
        let mut b = f16b(d).to_vec();
        b.extend(f16b(dmin));
        b.extend(pack_scales(ls, lm));
        let mut qh = [0u8; 32];
        let mut ql = [0u8; 128];
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in (0..256).step_by(64) {
            for j in 0..32 {
                let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[n / 2 + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        b.extend(qh);
        b.extend(ql);
        assert_eq!(b.len(), 176);
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q5K, &b, &mut y);
        for i in 0..256 {
            let s = i / 32;
            let want = d * ls[s] as f32 * l[i] as f32 - dmin * lm[s] as f32;
            assert_eq!(y[i], want, "element {i}");
        }
    }

    #[test]
    fn q6_k_matches_its_quantizer_layout() {
        let l: Vec<u8> = (0..256).map(|i| ((i * 13 + 1) % 64) as u8).collect();
        let sc: Vec<i8> = (0..16).map(|i| (i as i8 - 8) * 3).collect();
        let d = 0.5f32;
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for j in (0..256).step_by(128) {
            let (ql, qh) = (&mut ql[j / 2..j / 2 + 64], &mut qh[j / 4..j / 4 + 32]);
            for k in 0..32 {
                let (a, b, c, e) = (l[j + k], l[j + k + 32], l[j + k + 64], l[j + k + 96]);
                ql[k] = (a & 0xF) | ((c & 0xF) << 4);
                ql[k + 32] = (b & 0xF) | ((e & 0xF) << 4);
                qh[k] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(sc.iter().map(|&s| s as u8));
        b.extend(f16b(d));
        assert_eq!(b.len(), 210);
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q6K, &b, &mut y);
        for i in 0..256 {
            let want = d * sc[i / 16] as f32 * (l[i] as f32 - 32.0);
            assert_eq!(y[i], want, "element {i}");
        }
    }

    #[test]
    fn unpermute_inverts_the_converter_permutation() {
        // The converter: rows reshaped (n_head, 2, half) -> swap -> (n_head, half, 2).
        for (n_head, hd) in [(2usize, 6usize), (3, 8), (1, 2)] {
            let rows = n_head * hd;
            let half = hd / 2;
            for h in 0..n_head {
                for s in 0..2 {
                    for j in 0..half {
                        let hf = h * hd + s * half + j;
                        let gguf = h * hd + j * 2 + s;
                        assert_eq!(unpermute(gguf, rows, n_head), hf);
                    }
                }
            }
        }
    }

    #[test]
    fn gguf_names_map_to_hf_names() {
        assert_eq!(
            hf_name("blk.3.ffn_norm.weight", "llama").as_deref(),
            Some("model.layers.3.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf_name("blk.3.ffn_norm.weight", "gemma3").as_deref(),
            Some("model.layers.3.pre_feedforward_layernorm.weight")
        );
        assert_eq!(
            hf_name("blk.0.attn_q.bias", "qwen2").as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
        assert_eq!(hf_name("rope_freqs.weight", "llama"), None);
    }
}
