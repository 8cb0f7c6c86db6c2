//! The backend swap: the same study through `backend-ort` (ONNX Runtime) and `backend-candle`
//! (candle), with nothing changed but `[plugins] backend`, must give the same rows: every
//! probability column within 1e-5 and identical generations (and so identical ranks and
//! accuracy flags). On the committed fixture series, on exports of every tiny architecture in
//! both graph spellings (`basic` and `fused`), and on Gemma-3-270M.
//!
//! Needs the plugins built (`cargo xtask build-plugins`), ONNX Runtime (`cargo xtask ort`) and,
//! for the last test, the Gemma GGUF (`cargo xtask gemma`); each fails and says so otherwise.

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use xlpatch_core::config::{Setting, SweepConfig};
use xlpatch_core::sweep::{Shard, run};
use xlpatch_export::{Dtype, ExportOptions, GraphOps, Manifest};

use crate::support::{builtins, root};

/// Max |Δp| allowed between the backends, per probability column.
const TOL: f64 = 1e-5;

/// Runs `config` with `backend` into a fresh directory under `out`; returns its rows sorted by
/// unit, setting and start layer.
fn rows(config: &SweepConfig, backend: &str, out: &Path) -> Vec<Value> {
    let mut config = config.clone();
    config.plugins.backend = backend.to_string();
    let dir = out.join(backend);
    run(
        &config,
        &builtins(),
        Path::new("/"),
        &dir,
        Shard::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("sweep with {backend}: {e}"));
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    let mut rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let key = |r: &Value| {
        (
            r["unit"].as_str().unwrap().to_string(),
            r["setting"].as_str().unwrap().to_string(),
            r["start_layer"].as_u64().unwrap(),
        )
    };
    rows.sort_by_key(key);
    rows
}

/// Checks that `a` (ONNX Runtime) and `b` (candle) hold the same rows; returns max |Δp| over
/// every probability column (`p_*`, including the per-language ones).
fn compare(what: &str, a: &[Value], b: &[Value]) -> f64 {
    assert!(!a.is_empty(), "{what}: the sweep wrote no rows");
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    let mut max = 0f64;
    let mut n_probs = 0;
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.as_object().unwrap(), y.as_object().unwrap());
        let keys: Vec<&String> = x.keys().collect();
        assert_eq!(keys, y.keys().collect::<Vec<_>>(), "{what}: columns differ");
        for k in keys {
            if k.starts_with("p_") {
                let (p, q) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
                let d = (p - q).abs();
                assert!(
                    d <= TOL,
                    "{what}: {k} differs by {d:e} ({p} vs {q}) in unit {} setting {} layer {}",
                    x["unit"],
                    x["setting"],
                    x["start_layer"]
                );
                max = max.max(d);
                n_probs += 1;
            } else {
                assert_eq!(
                    x[k], y[k],
                    "{what}: column {k} differs in unit {} setting {} layer {}",
                    x["unit"], x["setting"], x["start_layer"]
                );
            }
        }
    }
    assert!(n_probs > 0, "{what}: no probability columns compared");
    eprintln!(
        "{what}: {} rows, {n_probs} probabilities, max |dp| = {max:e}",
        a.len()
    );
    max
}

fn check(what: &str, config: &SweepConfig) -> f64 {
    let out = tempfile::tempdir().unwrap();
    let ort = rows(config, "backend-ort", out.path());
    let candle = rows(config, "backend-candle", out.path());
    compare(what, &ort, &candle)
}

fn study(
    models: Vec<String>,
    langs: &[&str],
    pair: [&str; 2],
    concept_pairs: usize,
) -> SweepConfig {
    SweepConfig {
        models,
        concepts: root().join("fixtures/concepts").display().to_string(),
        concept_list: None,
        languages: langs.iter().map(|s| s.to_string()).collect(),
        pairs: vec![[pair[0].into(), pair[1].into()]],
        concept_pairs,
        max_new_tokens: 10,
        threads: 1,
        ..SweepConfig::default()
    }
}

#[test]
fn the_fixture_series_gives_the_same_rows_on_both_backends() {
    let series = |p: &str| root().join("fixtures/series").join(p).display().to_string();
    let config = SweepConfig {
        models: vec![series("export/step_*")],
        concepts: root().join("fixtures/concepts").display().to_string(),
        concept_list: Some(series("concepts.txt")),
        concept_pairs: 2,
        threads: 1,
        ..SweepConfig::default()
    };
    check("fixture series", &config);
}

/// The tiny architectures swept here.
const TINY: [&str; 4] = ["llama", "mistral", "qwen2", "gemma3"];

/// Exports every tiny architecture with `ops` and the fixtures' character tokenizer, each into
/// `dir/<arch>` (each its own one-checkpoint series: a series shares its architecture).
fn tiny_exports(dir: &Path, ops: GraphOps) -> Vec<PathBuf> {
    tiny_exports_stored(dir, ops, Dtype::F32)
}

/// [`tiny_exports`] with the weights stored as `dtype`.
fn tiny_exports_stored(dir: &Path, ops: GraphOps, dtype: Dtype) -> Vec<PathBuf> {
    let tok = xlpatch_testkit::char_tokenizer(&xlpatch_testkit::alphabet());
    let file = dir.join("tokenizer.json");
    std::fs::write(&file, serde_json::to_string(&tok).unwrap()).unwrap();
    TINY.iter()
        .map(|arch| {
            let out = dir.join(arch);
            let mut opts = ExportOptions::new(root().join("fixtures/tiny").join(arch), &out);
            opts.tokenizer = Some(file.clone());
            opts.ops = ops;
            opts.dtype = dtype;
            xlpatch_export::export(&opts).unwrap_or_else(|e| panic!("export {arch}: {e}"));
            out
        })
        .collect()
}

#[test]
fn the_tiny_architectures_give_the_same_rows_on_both_backends_in_both_spellings() {
    for ops in [GraphOps::Basic, GraphOps::Fused] {
        let dir = tempfile::tempdir().unwrap();
        for (arch, model) in TINY.iter().zip(tiny_exports(dir.path(), ops)) {
            let mut config = study(
                vec![model.display().to_string()],
                &xlpatch_testkit::LANGS,
                ["fr", "de"],
                2,
            );
            // Character-level prompts of ~200 tokens; the tiny models declare 128 positions.
            config.allow_beyond_context = true;
            check(&format!("tiny {arch}, {ops:?} graphs"), &config);
        }
    }
}

/// Weights stored as bf16 (what a hub series of a bf16 checkpoint exports): both backends
/// cast them to f32 and agree.
#[test]
fn bf16_weights_give_the_same_rows_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, model) in TINY.iter().zip(tiny_exports_stored(
        dir.path(),
        GraphOps::Fused,
        Dtype::Bf16,
    )) {
        let manifest = Manifest::read(&model).unwrap();
        assert_eq!(manifest.dtype, Dtype::Bf16, "{arch}");
        let mut config = study(
            vec![model.display().to_string()],
            &xlpatch_testkit::LANGS,
            ["fr", "de"],
            2,
        );
        config.allow_beyond_context = true;
        check(&format!("tiny {arch}, bf16 weights"), &config);
    }
}

#[test]
fn gemma_270m_gives_the_same_rows_on_both_backends() {
    let cache = root().join(".cache/gemma");
    let gguf = cache.join("gemma-3-270m-q4_k_m.gguf");
    let tokenizer = cache.join("tokenizer.json");
    for f in [&gguf, &tokenizer] {
        assert!(
            f.is_file(),
            "{} is missing: run `cargo xtask gemma`",
            f.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("gemma");
    let mut opts = ExportOptions::new(&gguf, &model);
    opts.tokenizer = Some(tokenizer);
    opts.ops = GraphOps::Fused;
    xlpatch_export::export(&opts).unwrap_or_else(|e| panic!("export Gemma: {e}"));
    let mut config = study(
        vec![model.display().to_string()],
        &["en", "de", "fr", "es", "it"],
        ["fr", "de"],
        1,
    );
    config.settings = vec![Setting::Tgt, Setting::Unpatched];
    check("Gemma-3-270M", &config);
}
