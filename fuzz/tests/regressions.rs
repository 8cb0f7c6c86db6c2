//! Inputs the fuzzer found that crashed a parser, kept as tests. Each lives here rather than in
//! the owning crate's tests while that crate is being reorganised; the input is committed in
//! `fuzz/regressions/`.

use xlpatch_fuzz::{Env, repo_root, run_one, target};

fn input(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("fuzz/regressions").join(name)).unwrap()
}

/// A GGUF tensor whose dimensions multiply past `usize::MAX` panicked with "attempt to multiply
/// with overflow" in `crates/export/src/gguf.rs` (`Gguf::open`); it is now a malformed-file
/// error naming the file and the tensor.
#[test]
fn gguf_tensor_dimensions_that_overflow_are_an_error() {
    let bytes = input("export-gguf-dims-overflow.gguf");
    let env = Env::new(&repo_root());
    let t = target("export-gguf").unwrap();
    assert_eq!(
        run_one(t, &env, &bytes),
        Ok(false),
        "refused, without a panic"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.gguf");
    std::fs::write(&file, &bytes).unwrap();
    let err = xlpatch_export::export(&xlpatch_export::ExportOptions::new(
        &file,
        dir.path().join("out"),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("too many elements"), "{err}");
}

/// A `config.json` claiming `hidden_size` 4294967295 made the exporter allocate
/// `vocab × hidden_size` floats (274 GB) before comparing that shape with the checkpoint's
/// tensor: the process aborted ("memory allocation failed"), which no `catch_unwind` stops.
/// `crates/export/src/weights.rs` now allocates after the shape check, so it is a shape error
/// naming the checkpoint file.
#[test]
fn a_config_claiming_a_huge_width_is_a_shape_error_not_an_abort() {
    let config = input("export-config-huge-hidden-size.json");
    let env = Env::new(&repo_root());
    let t = target("export-config").unwrap();
    assert_eq!(
        run_one(t, &env, &config),
        Ok(false),
        "refused, without a panic"
    );

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), &config).unwrap();
    std::fs::copy(
        repo_root().join("fuzz/corpus/export-safetensors/micro-llama.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    let err = xlpatch_export::export(&xlpatch_export::ExportOptions::new(
        &model,
        dir.path().join("out"),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("4294967295"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}

/// A results row with `start_layer` 18446744073709551615 panicked with "attempt to add with
/// overflow" in `crates/report/src/input.rs` (`Results::read`, the layer count); a start
/// layer is now refused unless it is below its unit's row count, which also keeps a large
/// one from sizing the report's per-layer tables.
#[test]
fn a_start_layer_past_the_units_rows_is_an_error_naming_results_jsonl() {
    let results = input("report-results-huge-start-layer.jsonl");
    let env = Env::new(&repo_root());
    let t = target("report-results").unwrap();
    assert_eq!(
        run_one(t, &env, &results),
        Ok(false),
        "refused, without a panic"
    );

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    for f in ["config.toml", "run.json", "prompts.jsonl"] {
        std::fs::copy(repo_root().join("fuzz/fixed/run").join(f), run.join(f)).unwrap();
    }
    std::fs::write(run.join("results.jsonl"), &results).unwrap();
    let options = xlpatch_report::Options {
        concepts: Some(repo_root().join("fixtures/concepts")),
        ..xlpatch_report::Options::default()
    };
    let err = xlpatch_report::build(&run, &dir.path().join("report"), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("results.jsonl"), "{err}");
    assert!(
        err.contains("start_layer 18446744073709551615 is not a layer of a model"),
        "{err}"
    );
}

/// A `config.json` claiming 4294967295 decoder blocks made the exporter build per-layer tables
/// of that length (89 s and 4 GB) before reading any weight; the count is now refused up front,
/// naming the key and the file.
#[test]
fn a_config_claiming_billions_of_layers_is_refused_at_once() {
    let config = input("export-config-huge-layer-count.json");
    let env = Env::new(&repo_root());
    let t = target("export-config").unwrap();
    assert_eq!(
        run_one(t, &env, &config),
        Ok(false),
        "refused, without a panic"
    );

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), &config).unwrap();
    let err = xlpatch_export::export(&xlpatch_export::ExportOptions::new(
        &model,
        dir.path().join("out"),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("num_hidden_layers"), "{err}");
    assert!(err.contains("4294967295"), "{err}");
    assert!(err.contains("more than any model has"), "{err}");
}
