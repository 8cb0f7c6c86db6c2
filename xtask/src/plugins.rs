//! `cargo xtask build-plugins`: builds every plugin crate and gathers the libraries where the
//! `xlpatch` binary looks for them: the built-ins of `plugins/` into `target/<profile>/plugins`,
//! the test fixtures of `fixtures/plugins/` into `target/<profile>/test-plugins`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{cargo, metadata, root, run, target_dir};

/// A plugin crate: its package name and the directory its library goes to.
struct PluginCrate {
    package: String,
    dest: &'static str,
}

/// The workspace packages under `plugins/` and `fixtures/plugins/`, from `cargo metadata`.
fn plugin_crates() -> Result<Vec<PluginCrate>> {
    let (builtins, fixtures) = (root().join("plugins"), root().join("fixtures/plugins"));
    let mut crates: Vec<PluginCrate> = metadata::workspace_packages()?
        .into_iter()
        .filter_map(|p| {
            let dest = if p.manifest_path.starts_with(&builtins) {
                "plugins"
            } else if p.manifest_path.starts_with(&fixtures) {
                "test-plugins"
            } else {
                return None;
            };
            Some(PluginCrate {
                package: p.name,
                dest,
            })
        })
        .collect();
    crates.sort_by(|a, b| (a.dest, &a.package).cmp(&(b.dest, &b.package)));
    if !crates.iter().any(|c| c.dest == "plugins") {
        bail!("`cargo metadata` lists no package under plugins/");
    }
    Ok(crates)
}

/// Builds all plugins; returns the directory of the built-in ones.
pub(crate) fn build(release: bool) -> Result<PathBuf> {
    let crates = plugin_crates()?;
    let mut cmd = cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    for c in &crates {
        cmd.args(["-p", &c.package]);
    }
    run(&mut cmd)?;
    let profile_dir = target_dir()?.join(if release { "release" } else { "debug" });
    for c in &crates {
        let file = format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            c.package.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        );
        let built = profile_dir.join(&file);
        if !built.is_file() {
            bail!(
                "cargo built {} but {} is missing",
                c.package,
                built.display()
            );
        }
        let dest_dir = profile_dir.join(c.dest);
        std::fs::create_dir_all(&dest_dir)
            .with_context(|| format!("cannot create {}", dest_dir.display()))?;
        // Copy to a temporary name and rename, so a running xlpatch never sees half a file.
        let tmp = dest_dir.join(format!(".{file}.tmp"));
        std::fs::copy(&built, &tmp)
            .with_context(|| format!("cannot copy {} to {}", built.display(), tmp.display()))?;
        std::fs::rename(&tmp, dest_dir.join(&file))?;
    }
    let dir = profile_dir.join("plugins");
    eprintln!("plugins ready in {}", dir.display());
    Ok(dir)
}
