//! Project automation, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! Tasks: `test` (the README's test command), `sweep` (the main job), `report`, `snapshots`,
//! `bench`, `bench-scaling`, `build-plugins`, `ort`, `gemma`, `fixtures`, `fuzz` (see `HELP`). Each
//! task lives in its own module and parses its own options with the one argument parser,
//! [`lexopt`]; they shell out to cargo and python3 and need nothing installed beyond the Rust
//! toolchain and python3 with pip.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use lexopt::Parser;

mod args;
mod bench;
mod fixtures;
mod flops;
mod fuzz;
mod gemma;
mod gpu;
mod metadata;
mod ort;
mod plugins;
mod project;
mod report;
mod scaling;
mod slurm;
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
  project-study               the seed paper's full grid in CPU-core-hours, from sweep units timed on a
                              random EuroLLM-1.7B-shaped export (slow; about 10 GB under target/)
  slurm-up / slurm-down       start / stop a one-node Slurm for the tests (apt-get installs it if missing)
  fixtures [--check] [--deep] retrain the fixture series and rewrite its goldens and exports;
                              --check rebuilds it under target/ and compares with the committed one;
                              --deep: the deep series of the default sweep (fixtures/series-deep)
  fuzz [--secs N] [--afl] [TARGET]
                              run each fuzz target of fuzz/ for N seconds (default 60); --afl:
                              coverage-guided with AFL++ (needs `cargo install cargo-afl`)
";

fn main() -> Result<()> {
    let mut p = Parser::from_env();
    let Some(task) = args::task(&mut p, HELP)? else {
        print!("{HELP}");
        return Ok(());
    };
    let p = &mut p;
    // One arm per task; each parses the options after the task name.
    match task.as_str() {
        "test" => test(args::release(p, HELP)?),
        "sweep" => args::none(p, HELP).and_then(|()| sweep::sweep()),
        "report" => args::none(p, HELP).and_then(|()| report::report()),
        "snapshots" => args::none(p, HELP).and_then(|()| snapshots::snapshots()),
        "build-plugins" => plugins::build(args::release(p, HELP)?).map(|_| ()),
        "ort" => args::none(p, HELP).and_then(|()| ort::ensure().map(|_| ())),
        "gemma" => args::none(p, HELP).and_then(|()| gemma::fetch()),
        "bench" => bench::bench(p),
        "bench-scaling" => scaling::scaling(p),
        "fixtures" => fixtures_task(p),
        "fuzz" => fuzz::fuzz(p),
        "gpu-check" => args::none(p, HELP).and_then(|()| gpu::gpu_check()),
        "project-study" => args::none(p, HELP).and_then(|()| project::project()),
        "slurm-up" => args::none(p, HELP).and_then(|()| slurm::up().map(|_| ())),
        "slurm-down" => args::none(p, HELP).and_then(|()| slurm::down()),
        other => bail!("unknown task {other:?}\n\n{HELP}"),
    }
}

/// `fixtures [--check] [--deep]`.
fn fixtures_task(p: &mut Parser) -> Result<()> {
    let (mut check, mut deep) = (false, false);
    while let Some(arg) = p.next()? {
        match arg {
            lexopt::Arg::Long("check") => check = true,
            lexopt::Arg::Long("deep") => deep = true,
            other => args::unexpected(other, HELP)?,
        }
    }
    fixtures::fixtures(check, deep)
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
    slurm::around(&mut cmd)
}

/// The repository root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the repository")
        .to_path_buf()
}

/// The cargo target directory the workspace builds into.
fn target_dir() -> Result<PathBuf> {
    metadata::target_directory()
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
