//! Tests of the plan and the disk estimate.

use std::path::{Path, PathBuf};

use xlpatch_export::Dtype;
use xlpatch_hub::Checkpoint;

use crate::budget::*;
use crate::options::*;
use crate::plan::*;
use xlpatch_hub::TreeEntry;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/series")
}

fn checkpoint(revision: &str, weights_hash: &str, files: Vec<TreeEntry>) -> Checkpoint {
    Checkpoint {
        repo: "o/n".into(),
        revision: revision.into(),
        commit: "0".repeat(40),
        step: xlpatch_hub::parse_ref(revision).map(|r| r.step),
        tokens: None,
        files,
        weights_hash: weights_hash.into(),
    }
}

fn entry(path: &str, size: u64) -> TreeEntry {
    TreeEntry {
        path: path.into(),
        size,
        oid: String::new(),
        sha256: None,
    }
}

#[test]
fn the_export_estimate_is_close_to_a_real_export_and_not_below_it_by_much() {
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
    let ck = checkpoint(
        "step_64",
        "h",
        vec![
            entry("config.json", size(fixture().join("step_64/config.json"))),
            entry(
                "model.safetensors",
                size(fixture().join("step_64/model.safetensors")),
            ),
            entry("tokenizer.json", size(fixture().join("tokenizer.json"))),
        ],
    );
    let config = read_json(&fixture().join("step_64/config.json")).unwrap();
    let opts = SeriesOptions {
        work: PathBuf::new(),
        keep: false,
        disk_budget: None,
        dtype: None,
        tokenizer: None,
    };
    // An f16 checkpoint stays f16, as the committed export of it is.
    assert_eq!(export_dtype(&opts, &config), Dtype::F16);
    let est = export_estimate(&ck, &config, Dtype::F16);
    let real = dir_bytes(&fixture().join("export/step_64"));
    let ratio = est as f64 / real as f64;
    assert!(
        (1.0..1.15).contains(&ratio),
        "estimate {est} against {real}"
    );
    // f32 graphs of f16 weights take twice the weights.
    let est32 = export_estimate(&ck, &config, Dtype::F32);
    assert!(
        est32 > est + ck.weight_bytes() * 9 / 10,
        "{est32} against {est}"
    );
    // A bf16 checkpoint stays bf16 (half the disk of f32, nothing lost); f32 stays f32.
    let bf16 = serde_json::json!({"torch_dtype": "bfloat16"});
    assert_eq!(export_dtype(&opts, &bf16), Dtype::Bf16);
    let f32 = serde_json::json!({"torch_dtype": "float32"});
    assert_eq!(export_dtype(&opts, &f32), Dtype::F32);
}

#[test]
fn identical_weights_group_in_series_order() {
    let p = |name: &str, hash: &str, dup: Option<&str>| Planned {
        name: name.into(),
        checkpoint: checkpoint(name, hash, vec![entry("model.safetensors", 10)]),
        duplicate_of: dup.map(String::from),
    };
    let plan = Plan {
        specs: vec!["hf://o/n".into()],
        selections: Vec::new(),
        checkpoints: vec![
            p("step1", "a", None),
            p("step2", "a", Some("step1")),
            p("step3", "b", None),
            p("step4", "a", Some("step1")),
        ],
    };
    assert_eq!(duplicates(&plan), vec![vec!["step1", "step2", "step4"]]);
    let text = format_plan(&plan);
    assert!(
        text.lines()
            .any(|l| l.starts_with("step4 ") && l.ends_with("same weights as step1")),
        "{text}"
    );
}
