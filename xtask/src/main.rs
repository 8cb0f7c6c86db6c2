//! Project automation, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! Tasks: `test` (the README's test command), `sweep` (the main job), `report`, `snapshots`,
//! `bench`, `bench-scaling`, `build-plugins`, `ort`, `gemma`, `fixtures` (see `HELP`). Each
//! task lives in its own module; they shell out to cargo and python3 and need nothing
//! installed beyond the Rust toolchain and python3 with pip.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod fixtures;
mod gemma;
mod gpu;
mod ort;
mod plugins;
mod report;
mod scaling;
mod snapshots;
mod sweep;
#[cfg(test)]
mod tidy;

const HELP: &str = "\
cargo xtask <task> [options]

tasks:
  test [--release]            fetch ONNX Runtime, build the plugins, run every test
  sweep                       run the default sweep on the committed fixture checkpoints
  report                      report the default sweep into target/report, checked in headless Chromium
  snapshots                   run only the snapshot tests of translations (tests/snapshots/)
  build-plugins [--release]   build the plugins into target/<profile>/plugins
  ort                         fetch ONNX Runtime's shared library into .cache/ort (idempotent)
  gemma                       fetch Gemma-3-270M (GGUF + tokenizer) into .cache/gemma (idempotent)
  gpu-check                   build the CUDA kit (xlpatch + backend-candle) into target/gpu-check
                              and print the command that checks it on a GPU machine
  bench [--reps N] [--targets N] [--threads N] [--models fixture,gemma]
                              xlpatch against the Python reference pipeline (slow; sets up .cache/py)
  bench-scaling [--quick] [--reps N] [--threads N]
                              incremental vs naive on random Llama exports up to EuroLLM-1.7B's
                              shape (slow; up to 10 GB under target/bench-scaling, deleted after)
  fixtures [--check]          retrain the fixture series and rewrite its goldens and exports;
                              --check rebuilds it under target/ and compares with the committed one
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "bench") {
        // bench parses its own options
        return bench::bench(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "bench-scaling") {
        // bench-scaling parses its own options
        return scaling::scaling(&args[1..]);
    }
    let release = args.iter().any(|a| a == "--release");
    let check = args.iter().any(|a| a == "--check");
    if let Some(unknown) = args
        .iter()
        .skip(1)
        .find(|a| !matches!(a.as_str(), "--release" | "--check"))
    {
        bail!("unknown option {unknown:?}\n\n{HELP}");
    }
    match args.first().map(String::as_str) {
        Some("test") => test(release),
        Some("sweep") => sweep::sweep(),
        Some("report") => report::report(),
        Some("snapshots") => snapshots::snapshots(),
        Some("build-plugins") => plugins::build(release).map(|_| ()),
        Some("ort") => ort::ensure().map(|_| ()),
        Some("gemma") => gemma::fetch(),
        Some("gpu-check") => gpu::gpu_check(),
        Some("fixtures") => fixtures::fixtures(check),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n\n{HELP}"),
    }
}

/// The README's test command: everything the tests need, then every test of the workspace.
fn test(release: bool) -> Result<()> {
    let ort = ort::ensure()?;
    gemma::fetch()?;
    plugins::build(release)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    cmd.env("ORT_DYLIB_PATH", &ort);
    run(&mut cmd)
}

/// The repository root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the repository")
        .to_path_buf()
}

/// The cargo target directory the workspace builds into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

/// `cargo`, as the one that runs this xtask, in the repository root.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, failing with the command line if it does not succeed.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
