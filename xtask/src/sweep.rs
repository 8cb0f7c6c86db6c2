//! `cargo xtask sweep`: the main job. Fetches ONNX Runtime if needed, builds `xlpatch` and the
//! plugins (release), runs the default sweep (`examples/deep.toml`: every checkpoint of the
//! committed deep fixture series in `fixtures/series-deep/export/`, fr→de and the held-out
//! de→it, every setting; the 4-layer `fixtures/series/` of `SweepConfig::default()` shows no
//! patching effect and serves the exactness tests) into
//! `target/sweep/default/`, and prints the summary table. A rerun resumes and so returns at
//! once; delete the directory to start over.

use anyhow::Result;

use crate::{cargo, ort, plugins, root, run, target_dir};

pub(crate) fn sweep() -> Result<()> {
    // A fresh clone has no ONNX Runtime yet: fetch it like `test` does.
    let ort = ort::ensure()?;
    plugins::build(true)?;
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let xlpatch = target_dir()?.join("release/xlpatch");
    let out = target_dir()?.join("sweep/default");
    // Relative to the root when inside it, so the summary's report command reads as the
    // README's (`xlpatch report target/sweep/default ...`).
    let out = out
        .strip_prefix(root())
        .map_or(out.clone(), |p| p.to_path_buf());
    run(std::process::Command::new(&xlpatch)
        .current_dir(root())
        .env("ORT_DYLIB_PATH", &ort)
        .arg("sweep")
        .arg("--config")
        .arg("examples/deep.toml")
        .arg("--out")
        .arg(&out))
}
