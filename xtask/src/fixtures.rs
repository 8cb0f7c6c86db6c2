//! `cargo xtask fixtures`: rebuilds the committed fixture series from scratch. It trains the
//! tiny multilingual model (`xtask/py/train_fixture.py`: tokenizer, corpus, checkpoints at
//! logarithmically spaced steps, `training.json`), installs it into `fixtures/series/`, writes
//! stores the weights in f16 (`xtask/py/to_f16.py`; the fixture budget), writes transformers
//! goldens for every checkpoint (`xtask/py/series_goldens.py`), and exports every
//! checkpoint with `xlpatch export` into `fixtures/series/export/step_<N>/`, its training step
//! recorded in the manifest. The Python side runs in a git-ignored virtual environment
//! (`.cache/py`) made from `xtask/py/requirements.txt`; torch is large (several GB), so it is
//! created once and reused.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run, target_dir};

/// The Python of the project's virtual environment, created with the pinned packages if absent.
pub(crate) fn venv_python() -> Result<PathBuf> {
    let venv = root().join(".cache/py");
    let python = venv.join("bin/python");
    if python.is_file() {
        return Ok(python);
    }
    eprintln!(
        "creating the Python environment in .cache/py (torch and transformers: several GB, once)"
    );
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    run(Command::new(&system).args(["-m", "venv"]).arg(&venv))
        .context("cannot create a virtual environment (on Debian: apt-get install python3-venv)")?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(root().join("xtask/py/requirements.txt")))
    .context("cannot install xtask/py/requirements.txt")?;
    Ok(python)
}

pub(crate) fn fixtures() -> Result<()> {
    let python = venv_python()?;
    let series = root().join("fixtures/series");
    let start = std::time::Instant::now();
    run(Command::new(&python)
        .current_dir(root())
        .arg("xtask/py/train_fixture.py")
        .args([
            "--out",
            ".cache/fixture-train",
            "--install",
            "fixtures/series",
        ]))?;
    run(Command::new(&python)
        .current_dir(root())
        .args(["xtask/py/to_f16.py", "fixtures/series"]))?;
    run(Command::new(&python)
        .current_dir(root())
        .args(["xtask/py/series_goldens.py", "fixtures/series"]))?;
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let xlpatch = target_dir().join("release/xlpatch");
    let export = series.join("export");
    if export.exists() {
        std::fs::remove_dir_all(&export)?;
    }
    let mut steps: Vec<(u64, PathBuf)> = std::fs::read_dir(&series)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let step = p
                .file_name()?
                .to_str()?
                .strip_prefix("step_")?
                .parse()
                .ok()?;
            Some((step, p))
        })
        .collect();
    steps.sort();
    if steps.len() < 6 {
        bail!(
            "training produced {} checkpoints, expected at least 6",
            steps.len()
        );
    }
    for (step, dir) in &steps {
        run(Command::new(&xlpatch)
            .arg("export")
            .arg("--model")
            .arg(dir)
            .arg("--tokenizer")
            .arg(series.join("tokenizer.json"))
            .arg("--out")
            .arg(export.join(format!("step_{step}")))
            .args(["--dtype", "f16", "--step", &step.to_string()]))?;
    }
    eprintln!(
        "fixture series rebuilt in {:.0} s: {} checkpoints in {}",
        start.elapsed().as_secs_f64(),
        steps.len(),
        series.display()
    );
    Ok(())
}
