//! What cargo knows about the workspace, from `cargo metadata` (never by reading manifests
//! ourselves): its packages and the target directory, which honours `CARGO_TARGET_DIR` and
//! `build.target-dir` alike.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cargo;

/// A package of the workspace.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub name: String,
    pub manifest_path: PathBuf,
}

/// The parsed output of `cargo metadata --no-deps`.
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
}

fn load() -> Result<Metadata> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).context("`cargo metadata` printed no JSON")?;
    let str_of = |v: &Value, key: &str| -> Result<String> {
        v[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("`cargo metadata` output lacks `{key}`"))
    };
    let packages = v["packages"]
        .as_array()
        .context("`cargo metadata` output lacks `packages`")?
        .iter()
        .map(|p| {
            Ok(Package {
                name: str_of(p, "name")?,
                manifest_path: str_of(p, "manifest_path")?.into(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Metadata {
        packages,
        target_directory: str_of(&v, "target_directory")?.into(),
    })
}

fn metadata() -> Result<&'static Metadata> {
    static CELL: OnceLock<Metadata> = OnceLock::new();
    if let Some(m) = CELL.get() {
        return Ok(m);
    }
    let m = load()?;
    Ok(CELL.get_or_init(|| m))
}

/// Every package of the workspace.
pub(crate) fn workspace_packages() -> Result<Vec<Package>> {
    Ok(metadata()?.packages.clone())
}

/// The directory cargo builds into.
pub(crate) fn target_directory() -> Result<PathBuf> {
    Ok(metadata()?.target_directory.clone())
}
