//! `xlpatch-fuzz`: runs fuzz targets (`cargo xtask fuzz` is the usual way in).
//!
//! `xlpatch-fuzz list` names the targets; `xlpatch-fuzz run [--secs N] [--seed S] [TARGET]`
//! runs each target (or one) for N seconds with the structure-aware mutator, prints executions
//! and findings, and writes each crashing input to `target/fuzz/crashes/<target>/`;
//! `xlpatch-fuzz afl TARGET` (feature `afl`) is the AFL++ harness, run by `cargo afl fuzz`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lexopt::{Arg, Parser, ValueExt as _};
use xlpatch_fuzz::{Env, TARGETS, Target, fuzz, repo_root, target};

const USAGE: &str = "\
xlpatch-fuzz list
xlpatch-fuzz run [--secs N] [--seed S] [--out DIR] [TARGET]
xlpatch-fuzz repro TARGET FILE   (one input, panics not caught)
xlpatch-fuzz afl TARGET      (built with --features afl, run under cargo afl fuzz)
";

fn main() -> Result<()> {
    let mut p = Parser::from_env();
    let cmd = match p.next()? {
        Some(Arg::Value(v)) => v.string()?,
        _ => {
            print!("{USAGE}");
            return Ok(());
        }
    };
    match cmd.as_str() {
        "list" => {
            for t in TARGETS {
                println!("{:<24} {}", t.name, t.about);
            }
            Ok(())
        }
        "run" => run(&mut p),
        "afl" => afl(&mut p),
        "repro" => repro(&mut p),
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// Runs one input on one target without catching its panic: `repro TARGET FILE`.
fn repro(p: &mut Parser) -> Result<()> {
    let mut values = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Arg::Value(v) => values.push(v),
            other => bail!("{}\n\n{USAGE}", other.unexpected()),
        }
    }
    let [name, file] = <[_; 2]>::try_from(values).ok().context(USAGE)?;
    let t = pick(Some(name.string()?))?[0];
    let input = std::fs::read(&file).with_context(|| format!("cannot read {file:?}"))?;
    let env = Env::new(&repo_root());
    let accepted = (t.run)(&env, &input);
    println!(
        "{}: no panic; the parser {}",
        t.name,
        if accepted {
            "accepted it"
        } else {
            "refused it"
        }
    );
    Ok(())
}

fn pick(name: Option<String>) -> Result<Vec<&'static Target>> {
    match name {
        None => Ok(TARGETS.iter().collect()),
        Some(n) => Ok(vec![target(&n).with_context(|| {
            format!(
                "no fuzz target {n:?} (targets: {})",
                TARGETS
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?]),
    }
}

fn run(p: &mut Parser) -> Result<()> {
    let (mut secs, mut seed, mut name, mut out) = (10u64, 0u64, None, None::<PathBuf>);
    while let Some(arg) = p.next()? {
        match arg {
            Arg::Long("secs") => secs = p.value()?.parse()?,
            Arg::Long("seed") => seed = p.value()?.parse()?,
            Arg::Long("out") => out = Some(p.value()?.into()),
            Arg::Value(v) if name.is_none() => name = Some(v.string()?),
            other => bail!("{}\n\n{USAGE}", other.unexpected()),
        }
    }
    let out = out.unwrap_or_else(|| repo_root().join("target/fuzz"));
    // A panic is a finding, reported below; the default hook would print each one.
    std::panic::set_hook(Box::new(|_| {}));
    let env = Env::new(&repo_root());
    let mut found = 0;
    println!(
        "| target | executions | exec/s | accepted | seeds accepted | slowest input (ms) | distinct panics |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for t in pick(name)? {
        let current = out.join("current").join(t.name);
        std::fs::create_dir_all(current.parent().expect("a parent"))?;
        let start = std::time::Instant::now();
        let stats = fuzz(t, &env, Duration::from_secs(secs), 0, seed, &mut |input| {
            // Left behind if the process aborts (out of memory, stack overflow).
            let _ = std::fs::write(&current, input);
        });
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {} | {}/{} | {:.1} | {} |",
            t.name,
            stats.execs,
            stats.execs as f64 / elapsed,
            stats.accepted,
            stats.seeds_accepted.0,
            stats.seeds_accepted.1,
            stats.slowest.as_secs_f64() * 1e3,
            stats.crashes.len()
        );
        let slow = out.join("slowest").join(t.name);
        std::fs::create_dir_all(slow.parent().expect("a parent"))?;
        std::fs::write(&slow, &stats.slowest_input)?;
        for (i, c) in stats.crashes.iter().enumerate() {
            let dir = out.join("crashes").join(t.name);
            std::fs::create_dir_all(&dir)?;
            let file = dir.join(format!("crash-{i}"));
            std::fs::write(&file, &c.input)?;
            eprintln!(
                "  {}: panic: {} (input: {})",
                t.name,
                c.message,
                file.display()
            );
            found += 1;
        }
        let _ = std::fs::remove_file(&current);
    }
    if found > 0 {
        bail!("{found} distinct panics found");
    }
    Ok(())
}

#[cfg(feature = "afl")]
fn afl(p: &mut Parser) -> Result<()> {
    let name = match p.next()? {
        Some(Arg::Value(v)) => v.string()?,
        _ => bail!("afl needs a target\n\n{USAGE}"),
    };
    let t = *pick(Some(name))?[0];
    let env = Env::new(&repo_root());
    afl::fuzz!(|data: &[u8]| {
        let _accepted = (t.run)(&env, data);
    });
    Ok(())
}

#[cfg(not(feature = "afl"))]
fn afl(_: &mut Parser) -> Result<()> {
    bail!("this xlpatch-fuzz was built without the `afl` feature (cargo afl build --features afl)")
}
