//! Where ONNX Runtime's shared library is: `$ORT_DYLIB_PATH` if set, else the copy that
//! `cargo xtask ort` put in `.cache/ort/` of the checkout the running binary was built in
//! (found by walking up from the host executable, then from this plugin's own source
//! directory, for a host installed elsewhere: `cargo install --path crates/cli`), so no
//! command needs a variable set.
//! Finding the runtime is this plugin's business: the host knows nothing of ONNX Runtime.

use std::path::{Path, PathBuf};

/// The ONNX Runtime release the backend plugin is built against.
pub(crate) const ORT_VERSION: &str = "1.32.0";

/// The library's file name inside `.cache/ort/`.
pub(crate) fn library_file_name() -> String {
    format!("libonnxruntime.so.{ORT_VERSION}")
}

/// What to tell a user when the library is not found.
pub(crate) const NOT_FOUND: &str = "ONNX Runtime's library was not found: run `cargo xtask ort` in \
    the xlpatch checkout, or set ORT_DYLIB_PATH";

/// Finds the library: `$ORT_DYLIB_PATH`, else `<ancestor of the running exe>/.cache/ort/<file>`,
/// else `.cache/ort/<file>` of the checkout this plugin was built in.
pub(crate) fn locate() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    locate_from(std::env::var_os("ORT_DYLIB_PATH"), exe.as_deref())
        .or_else(|| in_cache_above(Path::new(env!("CARGO_MANIFEST_DIR"))))
}

fn locate_from(var: Option<std::ffi::OsString>, exe: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = var.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    in_cache_above(exe?.parent()?)
}

/// `<dir or an ancestor>/.cache/ort/<file>`, the nearest that exists.
fn in_cache_above(dir: &Path) -> Option<PathBuf> {
    let file = library_file_name();
    dir.ancestors()
        .map(|dir| dir.join(".cache/ort").join(&file))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_wins_then_the_cache_above_the_executable() {
        let set = Some("somewhere/libonnxruntime.so".into());
        assert_eq!(
            locate_from(set, Some(Path::new("x/bin/xlpatch"))),
            Some(PathBuf::from("somewhere/libonnxruntime.so"))
        );
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(".cache/ort").join(library_file_name());
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, b"").unwrap();
        let exe = dir.path().join("target/debug/xlpatch");
        assert_eq!(locate_from(None, Some(&exe)), Some(lib));
        assert!(locate_from(Some("".into()), Some(&exe)).is_some());
        assert_eq!(
            locate_from(None, Some(Path::new("nonexistent/bin/xlpatch"))),
            None
        );
    }
}
