//! An exported model directory, the interface between the exporter and everything that runs a
//! model: `manifest.json` (architecture, sizes, provenance, the sha256 of every file), the
//! graphs `embed.onnx`, `layer_{i}.onnx`, `head.onnx`, and the tokenizer.
//!
//! **API boundary:** the manifest's JSON form. Readers refuse a `format_version` they do not
//! know, and [`Manifest::load`] refuses a directory whose files do not hash to what the manifest
//! says, naming the file, so a sweep never runs on a half-copied or edited model. Hashes
//! verified once are remembered by path, size and modification time (the `cache` module), so
//! that a large export is not read again on every open; [`Manifest::verify_full`] reads
//! every byte.
#![deny(missing_docs)]

mod cache;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest format written and read by this version.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Errors reading a model directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The manifest is not valid.
    #[error("{}: {what}", path.display())]
    Malformed {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A file's content does not match the hash in the manifest.
    #[error(
        "{} does not match its manifest (sha256 {found}, manifest says {expected}): the model \
         directory was modified or copied incompletely; export it again",
        path.display()
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The file's hash.
        found: String,
    },
}

/// Which keys a layer's queries may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionType {
    /// Every earlier key (causal).
    FullAttention,
    /// Earlier keys less than `sliding_window` positions back.
    SlidingAttention,
}

/// How weights are stored in the graphs (computation is always f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats.
    #[default]
    F32,
    /// IEEE half precision, cast to f32 inside the graph.
    F16,
    /// bfloat16, cast to f32 inside the graph: a bf16 checkpoint stored as it was trained
    /// (bf16 to f32 is exact, so the graphs compute what the f32 export computes).
    Bf16,
}

impl std::str::FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Dtype::F32),
            "f16" => Ok(Dtype::F16),
            "bf16" => Ok(Dtype::Bf16),
            other => Err(format!(
                "unknown dtype \"{other}\" (expected f32, f16 or bf16)"
            )),
        }
    }
}

/// Which ONNX operators the block and head graphs are built from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphOps {
    /// Opset 21 primitives only: RMSNorm, rotary embedding and attention spelled out node by
    /// node (what manifests without an `ops` field describe).
    #[default]
    Basic,
    /// Opset 23's `RMSNormalization`, `RotaryEmbedding` and `Attention`: the same function in
    /// about a third of the nodes, so a call on a few tokens costs a fraction of the time.
    Fused,
}

impl std::str::FromStr for GraphOps {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "basic" => Ok(GraphOps::Basic),
            "fused" => Ok(GraphOps::Fused),
            other => Err(format!("unknown ops \"{other}\" (expected fused or basic)")),
        }
    }
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// The description of an exported model directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`] when written.
    pub format_version: u32,
    /// The Hugging Face architecture, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    /// Decoder blocks: `layer_0.onnx` .. `layer_{num_layers-1}.onnx`.
    pub num_layers: usize,
    /// Width of the residual stream (`d`).
    pub hidden_size: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (the KV cache's second axis).
    pub num_kv_heads: usize,
    /// Width of one head (the KV cache's last axis).
    pub head_dim: usize,
    /// Rows of the embedding, columns of the logits.
    pub vocab_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Attention type of each layer.
    pub layer_types: Vec<AttentionType>,
    /// Window of the sliding-attention layers, if any.
    pub sliding_window: Option<usize>,
    /// The longest context the model was trained for (`max_position_embeddings` or the
    /// architecture's equivalent), when the config says; absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// How the weights are stored.
    pub dtype: Dtype,
    /// The checkpoint path as given to the exporter.
    pub source: String,
    /// The checkpoint's revision, if given.
    pub revision: Option<String>,
    /// The checkpoint's training step, if given.
    pub step: Option<u64>,
    /// The tokenizer's file name in the directory, if one was copied.
    pub tokenizer: Option<String>,
    /// Whether the layer graphs also output `attn_out` and `mlp_out`.
    pub extra_outputs: bool,
    /// Which operators the graphs are built from (`basic` when absent).
    #[serde(default)]
    pub ops: GraphOps,
    /// Beginning-of-sequence token ids from the config.
    pub bos_token_id: Option<Vec<i64>>,
    /// End-of-sequence token ids from the config.
    pub eos_token_id: Option<Vec<i64>>,
    /// Padding token ids from the config.
    pub pad_token_id: Option<Vec<i64>>,
    /// sha256 (hex) of every other file in the directory, by file name.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// File name of the embedding graph.
    pub const EMBED: &'static str = "embed.onnx";
    /// File name of the head graph.
    pub const HEAD: &'static str = "head.onnx";

    /// File name of layer `i`'s graph.
    pub fn layer_file(i: usize) -> String {
        format!("layer_{i}.onnx")
    }

    /// Reads `<dir>/manifest.json` without checking file hashes.
    pub fn read(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let malformed = |what: String| ModelError::Malformed {
            path: path.clone(),
            what,
        };
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| malformed(format!("invalid manifest: {e}")))?;
        if m.format_version != MANIFEST_VERSION {
            return Err(malformed(format!(
                "manifest format_version {} is not the supported {MANIFEST_VERSION}",
                m.format_version
            )));
        }
        if m.layer_types.len() != m.num_layers {
            return Err(malformed(format!(
                "{} layer types for {} layers",
                m.layer_types.len(),
                m.num_layers
            )));
        }
        if let Some(name) = m
            .files
            .keys()
            .find(|n| n.contains(['/', '\\']) || n.starts_with('.'))
        {
            return Err(malformed(format!(
                "file name {name:?} is not a plain file name"
            )));
        }
        let mut needed = vec![Manifest::EMBED.to_string(), Manifest::HEAD.to_string()];
        needed.extend((0..m.num_layers).map(Manifest::layer_file));
        if let Some(missing) = needed.iter().find(|n| !m.files.contains_key(*n)) {
            return Err(malformed(format!("the manifest does not list {missing}")));
        }
        Ok(m)
    }

    /// Reads `<dir>/manifest.json` and checks the sha256 of every file it lists (a file
    /// unchanged since its hash was last verified is not read again; see [`Manifest::verify`]).
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let m = Manifest::read(dir)?;
        m.verify(dir)?;
        Ok(m)
    }

    /// Checks the sha256 of every listed file in `dir`, reusing the hash verified earlier
    /// for a file whose path, size and modification time are unchanged (kept in the user's
    /// cache directory); any other file is read and hashed.
    pub fn verify(&self, dir: &Path) -> Result<(), ModelError> {
        self.verify_with(dir, cache::default_path(), false)
    }

    /// Checks the sha256 of every listed file in `dir`, reading every byte (`--verify`), and
    /// remembers the hashes for [`Manifest::verify`].
    pub fn verify_full(&self, dir: &Path) -> Result<(), ModelError> {
        self.verify_with(dir, cache::default_path(), true)
    }

    /// The check of [`Manifest::verify`] with the cache in `cache_file` (none: no cache);
    /// `full` ignores cached hashes.
    fn verify_with(
        &self,
        dir: &Path,
        cache_file: Option<PathBuf>,
        full: bool,
    ) -> Result<(), ModelError> {
        let mut cache = cache::HashCache::open(cache_file);
        let mut result = Ok(());
        for (name, expected) in &self.files {
            let file = dir.join(name);
            let key = std::fs::canonicalize(&file).ok();
            let stat = cache::Stat::of(&file);
            let cached = match (&key, stat) {
                (Some(k), Some(s)) if !full => cache.get(k, s).map(str::to_string),
                _ => None,
            };
            let found = match cached {
                Some(sha) => sha,
                None => {
                    let started = std::time::SystemTime::now();
                    let sha = match sha256_file(&file) {
                        Ok(sha) => sha,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    };
                    // Stored only if the file did not change while it was read.
                    if let (Some(k), Some(s)) = (key, stat)
                        && cache::Stat::of(&file) == Some(s)
                    {
                        cache.put(k, s, started, sha.clone());
                    }
                    sha
                }
            };
            if &found != expected {
                result = Err(ModelError::HashMismatch {
                    path: file,
                    expected: expected.clone(),
                    found,
                });
                break;
            }
        }
        cache.save();
        result
    }

    /// Writes the manifest to `<dir>/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
    }

    /// A content hash of the whole model: the sha256 of the sorted file hashes, so that two
    /// directories with the same files have the same hash wherever they are.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for (name, hash) in &self.files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(hash.as_bytes());
            h.update([b'\n']);
        }
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Manifest {
        let mut files = BTreeMap::new();
        for name in ["embed.onnx", "layer_0.onnx", "head.onnx"] {
            std::fs::write(dir.join(name), name.as_bytes()).unwrap();
            files.insert(name.to_string(), sha256_file(&dir.join(name)).unwrap());
        }
        Manifest {
            format_version: MANIFEST_VERSION,
            architecture: "LlamaForCausalLM".into(),
            num_layers: 1,
            hidden_size: 8,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            vocab_size: 16,
            intermediate_size: 16,
            layer_types: vec![AttentionType::FullAttention],
            sliding_window: None,
            context_length: None,
            dtype: Dtype::F32,
            source: "somewhere".into(),
            revision: None,
            step: Some(3),
            tokenizer: None,
            extra_outputs: false,
            ops: GraphOps::Fused,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            files,
        }
    }

    #[test]
    fn round_trip_and_hash_check() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample(dir.path());
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);

        std::fs::write(dir.path().join("layer_0.onnx"), b"edited").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("layer_0.onnx does not match its manifest"),
            "{err}"
        );
    }

    /// Sets `path`'s modification time to `t`.
    fn set_mtime(path: &Path, t: std::time::SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn verified_hashes_are_cached_and_changed_files_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("hashes.json");
        let m = sample(dir.path());
        let hour = std::time::Duration::from_secs(3600);
        let then = std::time::SystemTime::now() - hour;
        for name in m.files.keys() {
            set_mtime(&dir.path().join(name), then);
        }
        let verify = |full| m.verify_with(dir.path(), Some(cache.clone()), full);
        verify(false).unwrap();
        let cached = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(cached.matches("\"sha256\"").count(), 3, "{cached}");

        // Same size, same modification time, other bytes: only a full check reads them
        // (which shows that the cached hash was used).
        let layer = dir.path().join("layer_0.onnx");
        std::fs::write(&layer, b"LAYER_0.ONNX").unwrap();
        set_mtime(&layer, then);
        verify(false).unwrap();
        let err = verify(true).unwrap_err();
        assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("layer_0.onnx"), "{err}");

        // Restored: cached again. Then a changed modification time, or a changed size, makes
        // the file be hashed again and the mismatch caught.
        std::fs::write(&layer, b"layer_0.onnx").unwrap();
        set_mtime(&layer, then);
        verify(true).unwrap();
        std::fs::write(&layer, b"LAYER_0.ONNX").unwrap();
        set_mtime(&layer, then + hour / 2);
        assert!(matches!(
            verify(false),
            Err(ModelError::HashMismatch { .. })
        ));
        std::fs::write(&layer, b"layer_0.onnx, edited").unwrap();
        set_mtime(&layer, then);
        assert!(matches!(
            verify(false),
            Err(ModelError::HashMismatch { .. })
        ));

        // A file modified moments ago is hashed but not cached (a write in the same
        // timestamp tick would go unseen).
        std::fs::write(&layer, b"layer_0.onnx").unwrap();
        verify(false).unwrap();
        let cached = std::fs::read_to_string(&cache).unwrap();
        assert!(!cached.contains("layer_0.onnx"), "{cached}");
        assert_eq!(cached.matches("\"sha256\"").count(), 2, "{cached}");

        // An unwritable cache location only costs the hashing.
        let blocked = cache_dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        m.verify_with(dir.path(), Some(blocked.join("hashes.json")), false)
            .unwrap();
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sample(dir.path());
        m.format_version = 99;
        m.save(dir.path()).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
        assert!(err.contains("format_version 99"), "{err}");

        let mut m = sample(dir.path());
        m.files.remove("head.onnx");
        m.save(dir.path()).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not list head.onnx"), "{err}");

        std::fs::write(dir.path().join(MANIFEST_FILE), "{ truncated").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("invalid manifest"), "{err}");
    }

    #[test]
    fn content_hash_depends_on_contents_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (ma, mut mb) = (sample(a.path()), sample(b.path()));
        mb.source = "elsewhere".into();
        assert_eq!(ma.content_hash(), mb.content_hash());
        mb.files.insert("head.onnx".into(), "0".repeat(64));
        assert_ne!(ma.content_hash(), mb.content_hash());
    }
}
