//! The plugin search path.
//!
//! Plugins are looked for, in this order, in the directories given on the command line, in the
//! entries of `XLPATCH_PLUGIN_PATH` (separated like `PATH`), and in `plugins/` next to the
//! running executable, where `cargo xtask build-plugins` puts the built-in ones. The first
//! plugin of a name wins; a later one of the same name is refused and reported.

use std::path::{Path, PathBuf};

use xlpatch_abi::loader::{LoadError, Registry};

/// The environment variable holding extra plugin directories.
pub const PLUGIN_PATH_VAR: &str = "XLPATCH_PLUGIN_PATH";

/// The directories searched, in order: `extra`, then `XLPATCH_PLUGIN_PATH`, then
/// `<dir of exe>/plugins`. Duplicates are removed.
pub fn search_path(extra: &[PathBuf], exe: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(var) = std::env::var_os(PLUGIN_PATH_VAR) {
        dirs.extend(std::env::split_paths(&var).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        dirs.push(dir.join("plugins"));
    }
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
        assert_eq!(dirs.last(), Some(&PathBuf::from("bin/plugins")));
        assert_eq!(dirs.iter().filter(|d| **d == a).count(), 1);
    }
}
