//! Repository hygiene, checked by `cargo test`: every Rust file opens with a `//!` doc, no
//! test is ignored or expects a panic, and no file names a machine path.

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

#[test]
fn tidy() {
    let mut files = Vec::new();
    for dir in ["crates", "plugins", "fixtures", "tests", "xtask"] {
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
    }
    assert!(problems.is_empty(), "tidy:\n{}", problems.join("\n"));
}
