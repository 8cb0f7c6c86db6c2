//! `cargo xtask fixtures`: rebuilds the committed fixture series from scratch. It trains the
//! tiny multilingual model (`xtask/py/train_fixture.py`: tokenizer, corpus, checkpoints at
//! logarithmically spaced steps, `training.json`), installs it into `fixtures/series/`, writes
//! stores the weights in f16 (`xtask/py/to_f16.py`; the fixture budget), writes transformers
//! goldens for every checkpoint (`xtask/py/series_goldens.py`), and exports every
//! checkpoint with `xlpatch export` into `fixtures/series/export/step_<N>/`, its training step
//! recorded in the manifest. The Python side runs in a git-ignored virtual environment
//! (`.cache/py`) made from `xtask/py/requirements.txt`; torch is large (several GB), so it is
//! created once and reused.

use std::path::{Path, PathBuf};
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

/// Where `cargo xtask fixtures --check` rebuilds the series (relative to the root).
const CHECK_DIR: &str = "target/fixtures-check";

/// Rebuilds the series into `fixtures/series` (with `deep`, the deep series into
/// `fixtures/series-deep`), or with `check` into [`CHECK_DIR`] and compares it with the
/// committed one file by file.
pub(crate) fn fixtures(check: bool, deep: bool) -> Result<()> {
    if deep {
        return fixtures_deep(check);
    }
    let python = venv_python()?;
    let (train, series_rel) = rebuild_dirs(check, "")?;
    let series = root().join(&series_rel);
    let start = std::time::Instant::now();
    run(Command::new(&python)
        .current_dir(root())
        .arg("xtask/py/train_fixture.py")
        .args(["--out", &train, "--install", &series_rel]))?;
    write_concept_list(&series)?;
    run(Command::new(&python)
        .current_dir(root())
        .args(["xtask/py/to_f16.py", &series_rel]))?;
    run(Command::new(&python)
        .current_dir(root())
        .args(["xtask/py/series_goldens.py", &series_rel]))?;
    let mut steps: Vec<u64> = std::fs::read_dir(&series)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("step_")?.parse().ok())
        .collect();
    steps.sort();
    if steps.len() < 6 {
        bail!(
            "training produced {} checkpoints, expected at least 6",
            steps.len()
        );
    }
    export_steps(&series_rel, &series_rel, &steps)?;
    eprintln!(
        "fixture series rebuilt in {:.0} s: {} checkpoints in {series_rel}",
        start.elapsed().as_secs_f64(),
        steps.len(),
    );
    if check {
        compare(&series, &root().join("fixtures/series"))?;
    }
    Ok(())
}

/// The deep series (`train_fixture.py --design deep`, docs/fixture-designs.md): only
/// what the default sweep reads is committed (the exports, the tokenizer, `training.json`,
/// `concepts.txt`); its Hugging Face checkpoints stay in the training directory, since
/// keeping them too would exceed the fixture budget (its weights are already f16, and the
/// exactness tests and their goldens use the 4-layer series).
fn fixtures_deep(check: bool) -> Result<()> {
    let python = venv_python()?;
    let (train, series_rel) = rebuild_dirs(check, "-deep")?;
    let series = root().join(&series_rel);
    let start = std::time::Instant::now();
    run(Command::new(&python)
        .current_dir(root())
        .arg("xtask/py/train_fixture.py")
        // One thread: the committed series was trained so (bit-identical reruns need the
        // same thread count).
        .args(["--out", &train, "--design", "deep", "--threads", "1"]))?;
    std::fs::create_dir_all(&series)?;
    for name in ["tokenizer.json", "training.json"] {
        std::fs::copy(root().join(&train).join(name), series.join(name))
            .with_context(|| format!("cannot copy {name} from {train}"))?;
    }
    write_concept_list(&series)?;
    let steps = checkpoint_steps(&root().join(&train))?;
    export_steps(&train, &series_rel, &steps)?;
    eprintln!(
        "deep fixture series rebuilt in {:.0} s: {} checkpoints in {series_rel}",
        start.elapsed().as_secs_f64(),
        steps.len(),
    );
    if check {
        compare(&series, &root().join("fixtures/series-deep"))?;
    }
    Ok(())
}

/// The training directory and the series a rebuild writes, relative to the root (the
/// exporter records its source path in the manifest, and a committed manifest must not name
/// this machine): `.cache/fixture-train{suffix}` and `fixtures/series{suffix}`, or with
/// `check` both under a fresh [`CHECK_DIR`].
fn rebuild_dirs(check: bool, suffix: &str) -> Result<(String, String)> {
    if !check {
        return Ok((
            format!(".cache/fixture-train{suffix}"),
            format!("fixtures/series{suffix}"),
        ));
    }
    let dir = root().join(CHECK_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok((
        format!("{CHECK_DIR}/train{suffix}"),
        format!("{CHECK_DIR}/series{suffix}"),
    ))
}

/// Exports each checkpoint `{src}/step_{N}` (with `{src}/tokenizer.json`) into
/// `{series}/export/step_{N}`, f16, with the release binary; an earlier export is removed.
fn export_steps(src: &str, series: &str, steps: &[u64]) -> Result<()> {
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let xlpatch = target_dir()?.join("release/xlpatch");
    let export = root().join(series).join("export");
    if export.exists() {
        std::fs::remove_dir_all(&export)?;
    }
    for step in steps {
        run(Command::new(&xlpatch)
            .current_dir(root())
            .arg("export")
            .arg("--model")
            .arg(format!("{src}/step_{step}"))
            .arg("--tokenizer")
            .arg(format!("{src}/tokenizer.json"))
            .arg("--out")
            .arg(format!("{series}/export/step_{step}"))
            .args(["--dtype", "f16", "--step", &step.to_string()]))?;
    }
    Ok(())
}

/// The checkpoint steps of a training run (its `training.json`).
fn checkpoint_steps(train: &Path) -> Result<Vec<u64>> {
    let path = train.join("training.json");
    let training: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(steps) = training["training"]["checkpoint_steps"].as_array() else {
        bail!("{}: no training.checkpoint_steps list", path.display());
    };
    let steps: Option<Vec<u64>> = steps.iter().map(|s| s.as_u64()).collect();
    let Some(steps) = steps else {
        bail!("{}: a checkpoint step is not a number", path.display());
    };
    if steps.len() < 8 {
        bail!(
            "{}: {} checkpoints, expected at least 8",
            path.display(),
            steps.len()
        );
    }
    Ok(steps)
}

/// Writes `concepts.txt`, the concept ids the series was trained on (from `training.json`),
/// which the default sweep config restricts its study to.
fn write_concept_list(series: &Path) -> Result<()> {
    let path = series.join("training.json");
    let training: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(ids) = training["corpus"]["concept_ids"].as_array() else {
        bail!("{}: no corpus.concept_ids list", path.display());
    };
    let mut text = String::from(
        "# The concepts the fixture series was trained on (training.json corpus.concept_ids),\n\
         # written by `cargo xtask fixtures`; the default sweep studies these.\n",
    );
    for id in ids {
        let Some(id) = id.as_str() else {
            bail!("{}: a concept id is not a string", path.display());
        };
        text.push_str(id);
        text.push('\n');
    }
    std::fs::write(series.join("concepts.txt"), text)?;
    Ok(())
}

/// Compares a rebuilt series with the committed one: every file byte for byte, except that
/// `training.json`'s wall times and command line, and the manifests' source paths may differ.
fn compare(rebuilt: &Path, committed: &Path) -> Result<()> {
    let files = |root: &Path| -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(root)?.to_path_buf());
                }
            }
        }
        out.sort();
        Ok(out)
    };
    let (a, b) = (files(rebuilt)?, files(committed)?);
    if a != b {
        bail!(
            "the rebuilt series has other files than the committed one:\n  rebuilt:   {a:?}\n  committed: {b:?}"
        );
    }
    let mut differ = Vec::new();
    for rel in &a {
        let (x, y) = (
            std::fs::read(rebuilt.join(rel))?,
            std::fs::read(committed.join(rel))?,
        );
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let same = match name {
            "training.json" => {
                normalized(&x, TRAINING_VOLATILE)? == normalized(&y, TRAINING_VOLATILE)?
            }
            "manifest.json" => normalized(&x, &["source"])? == normalized(&y, &["source"])?,
            _ => x == y,
        };
        if !same {
            differ.push(rel.display().to_string());
        }
    }
    if !differ.is_empty() {
        bail!(
            "{} of {} files differ from the committed series: {}",
            differ.len(),
            a.len(),
            differ.join(", ")
        );
    }
    eprintln!(
        "fixtures --check: all {} files equal the committed series (training.json wall times and \
         manifest source paths aside)",
        a.len()
    );
    Ok(())
}

/// What `training.json` may differ in between two runs: how long they took, and the command
/// line (which names the output directory).
const TRAINING_VOLATILE: &[&str] = &["wall_time_s", "command"];

/// A JSON document without the top-level keys `skip`.
fn normalized(bytes: &[u8], skip: &[&str]) -> Result<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(o) = v.as_object_mut() {
        for k in skip {
            o.remove(*k);
        }
    }
    Ok(v)
}
