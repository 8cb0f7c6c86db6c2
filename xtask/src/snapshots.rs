//! `cargo xtask snapshots`: only the snapshot tests of translations (`tests/snapshots.rs`,
//! one per fixture checkpoint), with ONNX Runtime fetched and the plugins built as `test`
//! does. On a failure it says how to review or accept new snapshots.

use anyhow::{Context, Result, bail};

use crate::{cargo, ort, plugins, root};

const HINT: &str = "\
If a translation snapshot differs from tests/snapshots/<checkpoint>.snap or is missing (the
diff is above) and the change is intended, review it with `cargo insta review` (get the tool
with `cargo install cargo-insta`), or accept every new snapshot without the tool:
    INSTA_UPDATE=always cargo xtask snapshots
then read `git diff tests/snapshots` and commit the .snap files.";

pub(crate) fn snapshots() -> Result<()> {
    let ort = ort::ensure()?;
    plugins::build(false)?;
    remove_pending()?;
    let status = cargo()
        .args(["test", "-p", "xlpatch-tests", "--test", "tests"])
        .args(["--", "snapshots::"])
        .env("ORT_DYLIB_PATH", &ort)
        .status()
        .context("cannot start cargo test")?;
    if !status.success() {
        eprintln!("\n{HINT}");
        bail!("the snapshot tests failed ({status})");
    }
    Ok(())
}

/// Removes the `.snap.new` files an earlier failing run left (insta does not, even when
/// `INSTA_UPDATE=always` then writes the snapshot itself), so that only this run's are
/// reviewed and none is committed by mistake.
fn remove_pending() -> Result<()> {
    let dir = root().join("tests/snapshots");
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".snap.new") {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}
