//! Repository hygiene, checked by `cargo test`: every Rust file opens with a `//!` doc, no
//! test is ignored or expects a panic, no file names a machine path, no crate but
//! `crates/abi` allows unsafe code, and every crate takes the workspace's lints.

use std::path::{Path, PathBuf};

use crate::root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The manifest of every package of the workspace, from `cargo metadata`.
fn manifests() -> Vec<PathBuf> {
    crate::metadata::workspace_packages()
        .expect("cargo metadata")
        .into_iter()
        .map(|p| p.manifest_path)
        .collect()
}

#[test]
fn tidy() {
    let mut files = Vec::new();
    for dir in ["crates", "plugins", "fixtures", "tests", "xtask", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10, "tidy found too few files: {files:?}");
    // Built from parts so that this file does not match itself.
    let banned = [
        ["#[", "ignore"].concat(),
        ["#[", "should_panic"].concat(),
        ["/", "work/"].concat(),
        ["/", "root/"].concat(),
    ];
    let allow_unsafe = ["allow(", "unsafe_code)"].concat();
    let abi = root().join("crates/abi");
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root()).unwrap().display();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{rel}: does not start with a `//!` doc comment"));
        }
        for b in &banned {
            if text.contains(b.as_str()) {
                problems.push(format!("{rel}: contains `{b}`"));
            }
        }
        if !file.starts_with(&abi) && text.contains(&allow_unsafe) {
            problems.push(format!(
                "{rel}: allows unsafe code, which only crates/abi may hold"
            ));
        }
    }
    for manifest in manifests() {
        let text = std::fs::read_to_string(&manifest).unwrap();
        let rel = manifest.strip_prefix(root()).unwrap().display();
        if !text.contains("[lints]\nworkspace = true") {
            problems.push(format!(
                "{rel}: lacks `[lints] workspace = true` (the workspace denies unsafe code)"
            ));
        }
    }
    assert!(problems.is_empty(), "tidy:\n{}", problems.join("\n"));
}

/// xtask's ONNX Runtime version is the one backend-ort looks for
/// (`plugins/backend-ort/src/locate.rs`): the two crates do not depend on each other, so this
/// test keeps them equal.
#[test]
fn one_onnx_runtime_version() {
    let path = "plugins/backend-ort/src/locate.rs";
    let backend = std::fs::read_to_string(root().join(path)).unwrap();
    let line = format!("const ORT_VERSION: &str = \"{}\";", crate::ort::VERSION);
    assert!(
        backend.contains(&line),
        "{path} does not declare `{line}`: update xtask/src/ort.rs's VERSION and backend-ort's \
         ORT_VERSION together"
    );
}
