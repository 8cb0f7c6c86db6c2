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
