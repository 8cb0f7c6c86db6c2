//! The plugin search path.
//!
//! Plugins are looked for, in this order, in the directories given on the command line, in the
//! entries of `XLPATCH_PLUGIN_PATH` (separated like `PATH`), in `plugins/` next to the
//! running executable, where `cargo xtask build-plugins` puts the built-in ones, and last in
//! `plugins/` of the build the executable came from ([`BUILD_PLUGIN_DIR`]), so that a binary
//! copied elsewhere (`cargo install --path crates/cli`) still finds the plugins of its
//! checkout. The first plugin of a name wins; a later one of the same name is refused and
//! reported.

use std::path::{Path, PathBuf};

use xlpatch_abi::loader::{LoadError, Registry};

/// The environment variable holding extra plugin directories.
pub const PLUGIN_PATH_VAR: &str = "XLPATCH_PLUGIN_PATH";

/// `target/<profile>/plugins` of the build this crate was compiled in (set by `build.rs`):
/// where `cargo xtask build-plugins` puts the built-in plugins for that profile.
pub const BUILD_PLUGIN_DIR: Option<&str> = option_env!("XLPATCH_BUILD_PLUGIN_DIR");

/// The directories searched, in order: `extra`, then `XLPATCH_PLUGIN_PATH`, then
/// `<dir of exe>/plugins`, then [`BUILD_PLUGIN_DIR`]. Duplicates are removed.
pub fn search_path(extra: &[PathBuf], exe: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(var) = std::env::var_os(PLUGIN_PATH_VAR) {
        dirs.extend(std::env::split_paths(&var).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        dirs.push(dir.join("plugins"));
    }
    dirs.extend(BUILD_PLUGIN_DIR.map(PathBuf::from));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let new = !seen.contains(d);
        seen.push(d.clone());
        new
    });
    dirs
}

/// Loads every plugin on the search path; returns them with what was refused.
pub fn discover(extra: &[PathBuf]) -> (Vec<PathBuf>, Registry, Vec<LoadError>) {
    let exe = std::env::current_exe().ok();
    let dirs = search_path(extra, exe.as_deref());
    let (registry, refused) = Registry::discover(&dirs);
    (dirs, registry, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_order_and_dedup() {
        let a = PathBuf::from("a");
        let exe = Path::new("bin/xlpatch");
        let dirs = search_path(&[a.clone(), a.clone()], Some(exe));
        assert_eq!(dirs.first(), Some(&a));
        let n = dirs.len();
        assert_eq!(
            dirs[n - 2..],
            [
                PathBuf::from("bin/plugins"),
                BUILD_PLUGIN_DIR.unwrap().into()
            ]
        );
        assert_eq!(dirs.iter().filter(|d| **d == a).count(), 1);
    }
}
