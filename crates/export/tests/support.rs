//! Shared helpers: temp dirs, fixture and ONNX Runtime location, a goldens reader, a runner
//! for an exported model directory, and a tiny checkpoint writer.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use xlpatch_export::Manifest;

/// Named random tensors: shape and values.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The repository root (this crate lives at `crates/export`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `XLPATCH_FIXTURES`, else `<repo>/fixtures`.
pub fn fixtures() -> PathBuf {
    std::env::var_os("XLPATCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("fixtures"))
}

/// The ONNX Runtime environment, loaded once from `ORT_DYLIB_PATH` or
/// `<repo>/.cache/ort/libonnxruntime.so.1.32.0`; panics with directions if neither exists.
pub fn ort_env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let default = repo_root().join(".cache/ort/libonnxruntime.so.1.32.0");
        let path = match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) => {
                let p = PathBuf::from(p);
                assert!(p.is_file(), "ORT_DYLIB_PATH={} is not a file", p.display());
                p
            }
            None => {
                assert!(
                    default.is_file(),
                    "ONNX Runtime not found: ORT_DYLIB_PATH is unset and {} does not exist \
                     (run `cargo xtask ort`, or point ORT_DYLIB_PATH at libonnxruntime.so.1.32.0)",
                    default.display()
                );
                default
            }
        };
        ort::init_from(&path)
            .unwrap_or_else(|e| panic!("cannot load ONNX Runtime from {}: {e}", path.display()))
            .with_name("xlpatch-export-tests")
            .build()
            .expect("ONNX Runtime environment")
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!(
            "xlpatch-export-it-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tensor read from a safetensors file.
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A named tensor: shape and data.
pub struct Entry {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Entry {
    pub fn f32(&self) -> &[f32] {
        match &self.data {
            Data::F32(v) => v,
            Data::I64(_) => panic!("not f32"),
        }
    }
    pub fn i64(&self) -> &[i64] {
        match &self.data {
            Data::I64(v) => v,
            Data::F32(_) => panic!("not i64"),
        }
    }
}

/// Reads every F32/I64 tensor of a safetensors file (through the `safetensors` crate, not the
/// exporter's own reader).
pub fn read_safetensors(path: &Path) -> BTreeMap<String, Entry> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file =
        SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let raw = view.data();
        let d = match view.dtype() {
            Dtype::F32 => Data::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::I64 => Data::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            other => panic!("{}: dtype {other:?} in test reader", path.display()),
        };
        out.insert(
            name,
            Entry {
                shape: view.shape().to_vec(),
                data: d,
            },
        );
    }
    out
}

/// Writes a safetensors file of f32 tensors (through the `safetensors` crate).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    use safetensors::tensor::TensorView;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), data, shape.clone())
        })
        .collect();
    let views = bytes.iter().map(|(name, data, shape)| {
        let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        (name.as_str(), view)
    });
    let out = safetensors::serialize(views, None).expect("tensors serialize");
    std::fs::write(path, out).unwrap();
}

fn session(path: &Path) -> Session {
    Session::builder(ort_env())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(path)
        .unwrap_or_else(|e| panic!("ONNX Runtime refuses {}: {e}", path.display()))
}

/// The graphs of an exported model directory, opened in ONNX Runtime.
pub struct Runner {
    pub manifest: Manifest,
    embed: Session,
    layers: Vec<Session>,
    head: Session,
}

/// What one forward pass produced, each flattened row-major.
pub struct Pass {
    pub embed: Vec<f32>,
    pub residuals: Vec<Vec<f32>>,
    pub attn_out: Vec<Vec<f32>>,
    pub mlp_out: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

/// A KV cache: per layer, keys and values `[batch, kv_heads, past, head_dim]`.
pub struct Cache {
    pub past: usize,
    pub kv: Vec<(Vec<f32>, Vec<f32>)>,
}

fn extract(outputs: &ort::session::SessionOutputs<'_>, name: &str) -> Vec<f32> {
    outputs[name]
        .try_extract_tensor::<f32>()
        .unwrap_or_else(|e| panic!("output {name}: {e}"))
        .1
        .to_vec()
}

impl Runner {
    pub fn open(dir: &Path) -> Runner {
        let manifest = Manifest::load(dir).expect("manifest verifies");
        Runner {
            embed: session(&dir.join(Manifest::EMBED)),
            layers: (0..manifest.num_layers)
                .map(|i| session(&dir.join(Manifest::layer_file(i))))
                .collect(),
            head: session(&dir.join(Manifest::HEAD)),
            manifest,
        }
    }

    pub fn empty_cache(&self) -> Cache {
        Cache {
            past: 0,
            kv: vec![(Vec::new(), Vec::new()); self.manifest.num_layers],
        }
    }

    /// Runs `ids` [batch, seq] through every graph. `mask` is [batch, past + seq]; the cache is
    /// read and replaced.
    pub fn forward(
        &mut self,
        batch: usize,
        ids: &[i64],
        mask: &[i64],
        pos: &[i64],
        cache: &mut Cache,
    ) -> Pass {
        let seq = ids.len() / batch;
        let total = cache.past + seq;
        assert_eq!(mask.len(), batch * total);
        let (b, s, t) = (batch as i64, seq as i64, total as i64);
        let m = &self.manifest;
        let (kvh, hd, d) = (
            m.num_kv_heads as i64,
            m.head_dim as i64,
            m.hidden_size as i64,
        );
        let extra = m.extra_outputs;
        let out = self
            .embed
            .run(ort::inputs!["input_ids" => Tensor::from_array(([b, s], ids.to_vec())).unwrap()])
            .unwrap();
        let embed = extract(&out, "hidden");
        drop(out);
        let mut hidden = embed.clone();
        let mut residuals = Vec::new();
        let (mut attn_out, mut mlp_out) = (Vec::new(), Vec::new());
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let (pk, pv) = &cache.kv[i];
            let past = cache.past as i64;
            let out = layer
                .run(ort::inputs![
                    "hidden_in" => Tensor::from_array(([b, s, d], hidden.clone())).unwrap(),
                    "position_ids" => Tensor::from_array(([b, s], pos.to_vec())).unwrap(),
                    "attention_mask" => Tensor::from_array(([b, t], mask.to_vec())).unwrap(),
                    "past_key" => Tensor::from_array(([b, kvh, past, hd], pk.clone())).unwrap(),
                    "past_value" => Tensor::from_array(([b, kvh, past, hd], pv.clone())).unwrap(),
                ])
                .unwrap();
            hidden = extract(&out, "hidden_out");
            let nk = extract(&out, "present_key");
            let nv = extract(&out, "present_value");
            assert_eq!(nk.len() as i64, b * kvh * t * hd, "present_key size");
            if extra {
                attn_out.push(extract(&out, "attn_out"));
                mlp_out.push(extract(&out, "mlp_out"));
            }
            drop(out);
            cache.kv[i] = (nk, nv);
            residuals.push(hidden.clone());
        }
        cache.past = total;
        let out = self
            .head
            .run(ort::inputs!["hidden" => Tensor::from_array(([b, s, d], hidden)).unwrap()])
            .unwrap();
        let logits = extract(&out, "logits");
        Pass {
            embed,
            residuals,
            attn_out,
            mlp_out,
            logits,
        }
    }
}

/// Max abs difference between `ours` (rows of width `w`, `ours_rows` of them) and the same
/// rows of `golden`, over the (ours_row, golden_row) pairs given.
pub fn max_diff_rows(ours: &[f32], golden: &[f32], w: usize, pairs: &[(usize, usize)]) -> f32 {
    let mut worst = 0f32;
    for &(o, g) in pairs {
        let a = &ours[o * w..(o + 1) * w];
        let b = &golden[g * w..(g + 1) * w];
        for (x, y) in a.iter().zip(b) {
            assert!(x.is_finite(), "non-finite value in our output");
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

/// A small deterministic generator (xorshift64*), for random test weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

/// The tensors a config implies (names and shapes), filled with random values.
pub fn random_weights(
    config: &serde_json::Value,
    seed: u64,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let u = |k: &str| config[k].as_u64().unwrap() as usize;
    let arch = config["architectures"][0].as_str().unwrap();
    let gemma = arch.starts_with("Gemma3");
    let (v, d, ff, l, h, kv) = (
        u("vocab_size"),
        u("hidden_size"),
        u("intermediate_size"),
        u("num_hidden_layers"),
        u("num_attention_heads"),
        u("num_key_value_heads"),
    );
    let hd = config
        .get("head_dim")
        .and_then(|x| x.as_u64())
        .map_or(d / h, |x| x as usize);
    let qkv_bias = arch == "Qwen2ForCausalLM" || config["attention_bias"].as_bool() == Some(true);
    let o_bias = arch != "Qwen2ForCausalLM" && config["attention_bias"].as_bool() == Some(true);
    let mlp_bias = config["mlp_bias"].as_bool() == Some(true);
    let tied = config["tie_word_embeddings"].as_bool().unwrap_or(gemma);
    let mut rng = Rng::new(seed);
    let mut t = BTreeMap::new();
    let norm_offset = if gemma { 0.0 } else { 1.0 };
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let values = rng.vec(n, scale, offset);
        t.insert(name, (shape, values));
    };
    add("model.embed_tokens.weight".into(), vec![v, d], 1.0, 0.0);
    for i in 0..l {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        add(
            format!("{p}.input_layernorm.weight"),
            vec![d],
            0.3,
            norm_offset,
        );
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            0.3,
            norm_offset,
        );
        for (n, rows) in [("q", h * hd), ("k", kv * hd), ("v", kv * hd)] {
            add(format!("{a}.{n}_proj.weight"), vec![rows, d], 0.2, 0.0);
            if qkv_bias {
                add(format!("{a}.{n}_proj.bias"), vec![rows], 0.2, 0.0);
            }
        }
        add(format!("{a}.o_proj.weight"), vec![d, h * hd], 0.2, 0.0);
        if o_bias {
            add(format!("{a}.o_proj.bias"), vec![d], 0.2, 0.0);
        }
        if gemma {
            add(format!("{a}.q_norm.weight"), vec![hd], 0.3, 0.0);
            add(format!("{a}.k_norm.weight"), vec![hd], 0.3, 0.0);
            add(
                format!("{p}.pre_feedforward_layernorm.weight"),
                vec![d],
                0.3,
                0.0,
            );
            add(
                format!("{p}.post_feedforward_layernorm.weight"),
                vec![d],
                0.3,
                0.0,
            );
        }
        let m = format!("{p}.mlp");
        add(format!("{m}.gate_proj.weight"), vec![ff, d], 0.2, 0.0);
        add(format!("{m}.up_proj.weight"), vec![ff, d], 0.2, 0.0);
        add(format!("{m}.down_proj.weight"), vec![d, ff], 0.2, 0.0);
        if mlp_bias {
            for (n, rows) in [("gate", ff), ("up", ff), ("down", d)] {
                add(format!("{m}.{n}_proj.bias"), vec![rows], 0.2, 0.0);
            }
        }
    }
    add("model.norm.weight".into(), vec![d], 0.3, norm_offset);
    if !tied {
        add("lm_head.weight".into(), vec![v, d], 0.2, 0.0);
    }
    t
}

/// Writes `config.json` and random weights into `dir`, in `shards` files (1: a single
/// `model.safetensors`; more: with a `model.safetensors.index.json`).
pub fn write_checkpoint(dir: &Path, config: &serde_json::Value, seed: u64, shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    let weights = random_weights(config, seed);
    if shards <= 1 {
        write_safetensors(&dir.join("model.safetensors"), &weights);
        return;
    }
    let mut parts: Vec<Tensors> = vec![BTreeMap::new(); shards];
    let mut map = serde_json::Map::new();
    for (k, (name, t)) in weights.into_iter().enumerate() {
        let s = k % shards;
        map.insert(
            name.clone(),
            serde_json::Value::String(format!("model-{:05}-of-{shards:05}.safetensors", s + 1)),
        );
        parts[s].insert(name, t);
    }
    for (s, part) in parts.iter().enumerate() {
        write_safetensors(
            &dir.join(format!("model-{:05}-of-{shards:05}.safetensors", s + 1)),
            part,
        );
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
}
