//! Shared helpers: where the built plugins are, and compiling C plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use xlpatch_abi::loader::{PluginLibrary, Registry};

/// `target/<profile>`, found from this test binary (`target/<profile>/deps/tests-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
}

fn built_dir(name: &str) -> PathBuf {
    let dir = profile_dir().join(name);
    assert!(
        dir.is_dir(),
        "{} does not exist: build the plugins first with `cargo xtask build-plugins` \
         (the README's test command `cargo xtask test` does this)",
        dir.display()
    );
    dir
}

/// The directory of the built-in plugins.
pub fn plugin_dir() -> PathBuf {
    built_dir("plugins")
}

/// The directory of the fixture plugins (`fixtures/plugins`).
pub fn test_plugin_dir() -> PathBuf {
    built_dir("test-plugins")
}

/// The built-in plugin library of `package` (e.g. `xlpatch_patch_add`).
pub fn builtin_file(package: &str) -> PathBuf {
    let file = plugin_dir().join(format!(
        "{}{package}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        file.is_file(),
        "{} is missing: run `cargo xtask build-plugins`",
        file.display()
    );
    file
}

/// The registry of built-in plugins; fails on any refusal.
pub fn builtins() -> Registry {
    let (registry, refused) = Registry::discover(&[plugin_dir()]);
    assert!(refused.is_empty(), "built-in plugins refused: {refused:?}");
    registry
}

/// Opens the built-in plugin called `name`.
pub fn open(name: &str) -> PluginLibrary {
    let file = builtin_file(&format!("xlpatch_{}", name.replace('-', "_")));
    PluginLibrary::open(&file).unwrap_or_else(|e| panic!("{e}"))
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// Compiles `tests/c/<source>` with `defines` into a shared library at `out`.
pub fn compile_c_plugin(source: &str, defines: &[&str], out: &Path) {
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-shared", "-fPIC", "-std=c11", "-Wall", "-Werror", "-o"])
        .arg(out)
        .arg("-I")
        .arg(root().join("crates/abi/include"))
        .arg(root().join("tests/c").join(source));
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler (`cc`, or $CC): {e}"));
    assert!(
        output.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A library file name in `dir` with the platform's prefix and suffix.
pub fn lib_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// Tensors of a safetensors file as f32 or i64 vectors with shapes (test goldens only), read
/// with the `safetensors` crate.
pub fn read_safetensors(path: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Tensor)> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{} is not a safetensors file: {e}", path.display()));
    file.iter()
        .map(|(name, view)| {
            let raw = view.data();
            let t = match view.dtype() {
                safetensors::Dtype::F32 => Tensor::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                safetensors::Dtype::I64 => Tensor::I64(
                    raw.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                other => panic!("unexpected dtype {other} in {}", path.display()),
            };
            (name.to_string(), (view.shape().to_vec(), t))
        })
        .collect()
}

/// A golden tensor.
#[derive(Debug, Clone)]
pub enum Tensor {
    /// f32 data.
    F32(Vec<f32>),
    /// i64 data.
    I64(Vec<i64>),
}

impl Tensor {
    /// The f32 data; panics on another dtype.
    pub fn f32(&self) -> &[f32] {
        match self {
            Tensor::F32(v) => v,
            Tensor::I64(_) => panic!("expected f32"),
        }
    }

    /// The i64 data; panics on another dtype.
    pub fn i64(&self) -> &[i64] {
        match self {
            Tensor::I64(v) => v,
            Tensor::F32(_) => panic!("expected i64"),
        }
    }
}
