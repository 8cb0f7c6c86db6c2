//! Shared helpers: the built plugins, fixture exports in temporary directories (one per
//! process and architecture), tokenizers written in code, and comparison helpers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::model::{BackendOptions, Model};

pub use xlpatch_testkit::{char_tokenizer, repo_root};

/// `target/<profile>/plugins`, found from this test binary (`target/<profile>/deps/…`).
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .join("plugins");
    assert!(
        dir.join(format!(
            "{}xlpatch_backend_ort{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
        .is_file(),
        "the built-in plugins are not in {}: run `cargo xtask build-plugins` (and `cargo xtask \
         ort` for ONNX Runtime), or the README's test command `cargo xtask test`",
        dir.display()
    );
    dir
}

/// The registry of the built-in plugins; fails on any refusal.
pub fn registry() -> Registry {
    let (registry, refused) = Registry::discover(&[plugin_dir()]);
    assert!(refused.is_empty(), "built-in plugins refused: {refused:?}");
    registry
}

/// Exports of this process, by key; the directories live until the process ends.
static EXPORTS: Mutex<BTreeMap<String, tempfile::TempDir>> = Mutex::new(BTreeMap::new());

/// `fixtures/tiny/<arch>` exported (once per process), with `tokenizer` if given.
pub fn exported(arch: &str, tokenizer: Option<(&str, &serde_json::Value)>) -> PathBuf {
    let key = format!("{arch}+{}", tokenizer.map_or("none", |t| t.0));
    let mut exports = EXPORTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = exports.get(&key) {
        return dir.path().join("model");
    }
    let src = repo_root().join("fixtures/tiny").join(arch);
    assert!(src.is_dir(), "fixture {} is missing", src.display());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("model");
    let mut opts = xlpatch_export::ExportOptions::new(&src, &out);
    if let Some((name, json)) = tokenizer {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string(json).unwrap()).unwrap();
        opts.tokenizer = Some(file);
    }
    xlpatch_export::export(&opts)
        .unwrap_or_else(|e| panic!("cannot export {}: {e}", src.display()));
    exports.insert(key, dir);
    out
}

/// Opens an exported model with one intra-op thread (deterministic and fair for timing).
pub fn open(registry: &Registry, dir: &Path) -> Model {
    let options = BackendOptions {
        threads: 1,
        ..BackendOptions::default()
    };
    Model::open(registry, dir, &options).unwrap_or_else(|e| {
        panic!(
            "cannot open {} (ONNX Runtime comes from `cargo xtask ort`): {e}",
            dir.display()
        )
    })
}

/// GPT-2's byte-to-character map of byte-level BPE.
pub fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut map = vec!['\0'; 256];
    for (b, c) in bs.iter().zip(&cs) {
        map[*b as usize] = char::from_u32(*c).unwrap();
    }
    map
}

/// A byte-level tokenizer for the 256-token fixtures: token `b` is byte `b` (no merges), and
/// id 255 (byte 0xff never occurs in UTF-8) is the special BOS `<s>` every encoding starts
/// with.
pub fn byte_tokenizer() -> serde_json::Value {
    let chars = byte_chars();
    let vocab: serde_json::Map<String, serde_json::Value> =
        (0..255).map(|b| (chars[b].to_string(), json!(b))).collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 255, "content": "<s>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [255], "tokens": ["<s>"]}}
        },
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

/// A tokenizer from its JSON form.
pub fn tokenizer(json: &serde_json::Value) -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(json).unwrap())
        .expect("a valid tokenizer.json")
}

/// The largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Where a property test keeps the seeds of its failures (`tests/proptest-regressions/`,
/// committed): a failing case found once is replayed first by every later run, on every
/// machine.
pub fn persisted(name: &str) -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    let path = format!(
        "{}/tests/proptest-regressions/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::Direct(Box::leak(path.into_boxed_str())),
    ))
}
