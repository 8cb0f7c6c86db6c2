//! `cargo xtask fuzz [--secs N] [--afl] [TARGET]`: runs each fuzz target of `fuzz/` (or one)
//! for N seconds (default 60) and prints executions and findings per target.
//!
//! Without `--afl` it runs the structure-aware mutator (`xlpatch-fuzz run`), which needs
//! nothing installed. With `--afl` it runs AFL++, coverage-guided, on the same seeds: it needs
//! `cargo afl` (`cargo install cargo-afl`, which also builds AFL++), builds the harness with
//! the `afl` feature into `target/afl` (instrumented builds of every dependency, kept apart
//! from the normal ones), and runs `cargo afl fuzz -V N` per target, findings in
//! `target/afl/out/<target>/default/crashes/`. CI does not run this task: `cargo xtask test`
//! runs every target briefly on its seed corpus (`fuzz/tests/corpus.rs`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use lexopt::{Arg, Parser, ValueExt as _};

use crate::{args, cargo, root, run, target_dir};

const USAGE: &str = "\
cargo xtask fuzz [--secs N] [--afl] [TARGET]

  --secs N   seconds per target (default 60)
  --afl      coverage-guided with AFL++ (needs `cargo install cargo-afl`); default: the
             structure-aware mutator, which needs nothing installed
  TARGET     one target (`cargo run -p xlpatch-fuzz -- list` names them); default: all
";

pub(crate) fn fuzz(p: &mut Parser) -> Result<()> {
    let (mut secs, mut afl, mut target) = (60usize, false, None::<String>);
    while let Some(arg) = p.next()? {
        match arg {
            Arg::Long("secs") => secs = args::positive(p, "secs", USAGE)?,
            Arg::Long("afl") => afl = true,
            Arg::Value(v) if target.is_none() => target = Some(v.string()?),
            other => args::unexpected(other, USAGE)?,
        }
    }
    if afl {
        return with_afl(secs, target);
    }
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "xlpatch-fuzz",
        "--",
        "run",
        "--secs",
    ])
    .arg(secs.to_string());
    cmd.args(target);
    run(&mut cmd)
}

fn with_afl(secs: usize, target: Option<String>) -> Result<()> {
    let ok = cargo()
        .args(["afl", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!("`cargo afl` is not installed: `cargo install cargo-afl` (it builds AFL++ too)");
    }
    let afl_dir = target_dir()?.join("afl");
    run(cargo()
        .args([
            "afl",
            "build",
            "-p",
            "xlpatch-fuzz",
            "--features",
            "afl",
            "--target-dir",
        ])
        .arg(&afl_dir))?;
    let harness = afl_dir.join("debug/xlpatch-fuzz");
    let listed = Command::new(&harness)
        .arg("list")
        .output()
        .with_context(|| format!("cannot run {}", harness.display()))?;
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let targets = match target {
        Some(t) if all.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t:?} (targets: {})", all.join(", ")),
        None => all,
    };
    println!("| target | executions | exec/s | paths found | crashes | hangs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for t in targets {
        let out = afl_dir.join("out").join(&t);
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        // `-V`: stop after N seconds. The environment keeps AFL++ from refusing to start on a
        // machine it does not own (CPU governor, core dumps piped elsewhere).
        let status = cargo()
            .args(["afl", "fuzz", "-V", &secs.to_string(), "-i"])
            .arg(root().join("fuzz/corpus").join(&t))
            .arg("-o")
            .arg(&out)
            .args(["-t", "2000", "--"])
            .arg(&harness)
            .args(["afl", &t])
            .env("AFL_NO_UI", "1")
            .env("AFL_SKIP_CPUFREQ", "1")
            .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
            .env("AFL_NO_AFFINITY", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot start cargo afl fuzz")?;
        if !status.success() {
            bail!("cargo afl fuzz {t} failed ({status})");
        }
        let stats = std::fs::read_to_string(out.join("default/fuzzer_stats"))
            .with_context(|| format!("AFL++ wrote no fuzzer_stats for {t}"))?;
        let stat = |key: &str| {
            stats
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| "?".into())
        };
        println!(
            "| {t} | {} | {} | {} | {} | {} |",
            stat("execs_done"),
            stat("execs_per_sec"),
            stat("corpus_found"),
            stat("saved_crashes"),
            stat("saved_hangs")
        );
    }
    Ok(())
}
