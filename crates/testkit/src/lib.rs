//! Test fixtures shared by the crates' tests (not a library for users): a character-level
//! tokenizer written in code, exports of the tiny checkpoints in `fixtures/tiny/` with it, and
//! a two-checkpoint "series" that sweeps can run on in seconds.

use std::path::{Path, PathBuf};

use serde_json::json;

/// The repository root (this crate lives at `crates/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The study languages of [`series`].
pub const LANGS: [&str; 5] = ["en", "de", "fr", "es", "it"];

/// A character-level tokenizer (SentencePiece-like: no pre-tokenizer, so a word can merge
/// with what follows) for the 256-token fixtures, covering `text`'s characters: one token per
/// character, one merged token `" x"` per character `x` that follows a space, `[UNK]`, and
/// the special BOS `<s>`. Panics if that needs more than 256 ids.
pub fn char_tokenizer(text: &str) -> serde_json::Value {
    let chars: std::collections::BTreeSet<char> = text.chars().collect();
    let after_space: std::collections::BTreeSet<char> = text
        .chars()
        .zip(text.chars().skip(1))
        .filter(|(a, b)| *a == ' ' && *b != ' ')
        .map(|(_, b)| b)
        .collect();
    let mut vocab = serde_json::Map::new();
    let mut add = |t: String| {
        let n = vocab.len();
        vocab.entry(t).or_insert(json!(n));
    };
    add("[UNK]".into());
    chars.iter().for_each(|c| add(c.to_string()));
    after_space.iter().for_each(|c| add(format!(" {c}")));
    let bos = vocab.len();
    assert!(bos < 256, "{} tokens do not fit the fixtures' 256", bos + 1);
    let merges: Vec<[String; 2]> = after_space
        .iter()
        .map(|c| [" ".to_string(), c.to_string()])
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": bos, "content": "<s>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [bos], "tokens": ["<s>"]}}
        },
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "[UNK]",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    })
}

/// Exports `fixtures/tiny/<arch>` into `dir` with `tokenizer` and training step `step`.
pub fn export_into(arch: &str, dir: &Path, tokenizer: &serde_json::Value, step: u64) {
    export_from(
        &repo_root().join("fixtures/tiny").join(arch),
        dir,
        tokenizer,
        step,
    );
}

/// Exports a broken checkpoint as [`export_into`] does: `fixtures/tiny/<arch>` with every
/// weight of the f32 tensor `tensor` set to NaN (the checkpoint is written beside `dir`).
pub fn export_with_nan(
    arch: &str,
    tensor: &str,
    dir: &Path,
    tokenizer: &serde_json::Value,
    step: u64,
) {
    let src = repo_root().join("fixtures/tiny").join(arch);
    let broken = dir.with_extension("checkpoint");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(src.join("config.json"), broken.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st
        .tensor(tensor)
        .unwrap_or_else(|e| panic!("{arch} has no tensor {tensor}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{tensor}");
    let n = view.data().len() / 4;
    let nan: Vec<u8> = (0..n).flat_map(|_| f32::NAN.to_le_bytes()).collect();
    let nan_view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, view.shape().to_vec(), &nan)
            .unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            if name == tensor {
                (name, nan_view.clone())
            } else {
                (name, v)
            }
        })
        .collect();
    safetensors::serialize_to_file(tensors, None, &broken.join("model.safetensors")).unwrap();
    export_from(&broken, dir, tokenizer, step);
    // The export holds the weights; the checkpoint beside it would be matched by a glob.
    std::fs::remove_dir_all(&broken).unwrap();
}

fn export_from(src: &Path, dir: &Path, tokenizer: &serde_json::Value, step: u64) {
    let file = dir.with_extension("tokenizer.json");
    std::fs::create_dir_all(dir.parent().expect("a parent")).unwrap();
    std::fs::write(&file, serde_json::to_string(tokenizer).unwrap()).unwrap();
    let mut opts = xlpatch_export::ExportOptions::new(src, dir);
    opts.tokenizer = Some(file);
    opts.step = Some(step);
    xlpatch_export::export(&opts)
        .unwrap_or_else(|e| panic!("cannot export {}: {e}", src.display()));
}

/// Every character the prompts of `LANGS` can contain.
pub fn alphabet() -> String {
    let table = xlpatch_concepts::ConceptTable::load(repo_root().join("fixtures/concepts"))
        .unwrap()
        .subset(&LANGS.map(|c| xlpatch_concepts::Lang::from_code(c).unwrap()))
        .unwrap();
    let mut text = String::from(": \"\" - \n");
    for lang in table.languages() {
        text.push_str(lang.name());
        text.push(' ');
        for c in table.concepts() {
            for f in c.forms_in(*lang) {
                text.push(' ');
                text.push_str(f);
            }
        }
    }
    text
}

/// A two-checkpoint series in `root/series`: the tiny Gemma 3 at steps 1 and 2 (one
/// architecture, as a series must be; the same weights), with a character tokenizer covering
/// the prompts of [`LANGS`].
pub fn series(root: &Path) -> PathBuf {
    let tok = char_tokenizer(&alphabet());
    let dir = root.join("series");
    export_into("gemma3", &dir.join("step_1"), &tok, 1);
    export_into("gemma3", &dir.join("step_2"), &tok, 2);
    dir
}
