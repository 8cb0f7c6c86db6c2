//! `cargo xtask project-study`: what the seed paper's full study would cost.
//!
//! The study: 30 checkpoints × 110 target language pairs (11 languages) × 256 concept pairs ×
//! 6 settings × every start layer of EuroLLM-1.7B. A sweep computes it in *units*, one target
//! prompt on one checkpoint with all its settings and start layers, so the grid is
//! 30 × 110 × 256 = 844,800 units and its cost that many times the cost of a unit.
//!
//! A unit is measured by running the release `xlpatch sweep` itself on a random-weight export
//! of EuroLLM-1.7B's shape (`scaling.rs` writes the checkpoint; values do not change the
//! cost, only the shape does), with 11 study languages, every setting, 10 greedy tokens, 1
//! intra-op thread, and the fixture series' byte-level tokenizer padded to the model's 128,000
//! tokens (so the prompts are real few-shot prompts and no generated id is a stop token:
//! every generation runs its full 10 tokens, an upper bound). A unit's cost is the sweep
//! process's CPU time (user + system, from `/proc`) while it computes that unit: with one
//! intra-op thread that is the core-seconds it takes, and unlike wall time it does not count
//! the other processes of a shared machine (its wall time from `timings.jsonl` is reported
//! beside it). The first unit of a checkpoint also computes the few-shot prefixes that later
//! units reuse (every language pair of `seen`), so it is reported apart; the projection uses
//! the median of the others (the model load, once per task, is in the first). Everything lives under
//! `target/project-study/` only while it is measured (about 10 GB at the peak).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::scaling::{Shape, dir_bytes, write_checkpoint};
use crate::{cargo, plugins, root, run, target_dir};

/// Units measured (the first of them apart).
const UNITS: usize = 4;
/// The seed paper's grid.
const CHECKPOINTS: u64 = 30;
const TARGET_PAIRS: u64 = 110;
const CONCEPT_PAIRS: u64 = 256;
/// 11 study languages (110 ordered pairs), English among them as in the paper.
const LANGUAGES: [&str; 11] = [
    "en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "fi", "et",
];

/// The fixture series' tokenizer with its vocabulary padded to `vocab` ids.
fn padded_tokenizer(vocab: usize, out: &Path) -> Result<()> {
    let path = root().join("fixtures/series/tokenizer.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)?;
    let map = json
        .pointer_mut("/model/vocab")
        .and_then(|v| v.as_object_mut())
        .context("the fixture tokenizer has no model.vocab map")?;
    let mut next = map.len();
    while next < vocab {
        // Never produced from text (no merge makes them); decoded as plain text.
        map.insert(format!("<p{next}>"), next.into());
        next += 1;
    }
    std::fs::write(out, serde_json::to_string(&json)?)?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ, 100 on Linux.
    Some(ticks / 100.0)
}

/// Runs the sweep and returns the CPU seconds of each unit (the process's CPU time between
/// one unit's line in `timings.jsonl` and the next; on a shared machine wall time measures
/// the neighbours too) and those spent on the plan, before the model is loaded.
fn sweep_cpu(xlpatch: &Path, config: &Path, out: &Path) -> Result<(Vec<f64>, f64)> {
    let mut child = Command::new(xlpatch)
        .arg("sweep")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start xlpatch sweep")?;
    let timings = out.join("timings.jsonl");
    let (mut marks, mut seen, mut load) = (Vec::new(), 0, None);
    loop {
        let cpu = cpu_seconds(child.id());
        let n = std::fs::read_to_string(&timings)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if load.is_none() && out.join("prompts.jsonl").exists() {
            // The plan is written; the model load and the first unit follow.
            load = cpu;
        }
        if n > seen {
            if let Some(c) = cpu {
                marks.push(c);
            }
            seen = n;
        }
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("xlpatch sweep failed ({status})");
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let load = load.unwrap_or(0.0);
    let cpu = marks
        .iter()
        .scan(load, |prev, &m| {
            let d = m - *prev;
            *prev = m;
            Some(d)
        })
        .collect();
    Ok((cpu, load))
}

/// The task.
pub(crate) fn project() -> Result<()> {
    plugins::build(true)?;
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let xlpatch = target_dir()?.join("release/xlpatch");
    let work = target_dir()?.join("project-study");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove the leftovers in {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let shape = Shape::EUROLLM;
    let ckpt = work.join("checkpoint");
    let model = work.join(shape.name());
    let tokenizer = work.join("tokenizer.json");
    println!(
        "project-study: writing a random {} checkpoint",
        shape.name()
    );
    write_checkpoint(&shape, &ckpt, 1)?;
    padded_tokenizer(shape.vocab, &tokenizer)?;
    let start = Instant::now();
    run(Command::new(&xlpatch)
        .arg("export")
        .arg("--model")
        .arg(&ckpt)
        .arg("--tokenizer")
        .arg(&tokenizer)
        .arg("--out")
        .arg(&model))?;
    let export_s = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&ckpt)?;
    let bytes = dir_bytes(&model);
    let config = work.join("study.toml");
    let r = root();
    std::fs::write(
        &config,
        format!(
            "models = [{:?}]\nconcepts = {:?}\nlanguages = {:?}\npairs = [[\"fr\", \"de\"]]\n\
             concept_pairs = {UNITS}\nmax_new_tokens = 10\nthreads = 1\n",
            model.display().to_string(),
            r.join("fixtures/concepts").display().to_string(),
            LANGUAGES,
        ),
    )?;
    println!("project-study: sweeping {UNITS} units (fr→de, every setting and start layer)");
    let out = work.join("results");
    let start = Instant::now();
    let (cpu, model_load) = sweep_cpu(&xlpatch, &config, &out)?;
    let sweep_s = start.elapsed().as_secs_f64();
    let timings = std::fs::read_to_string(out.join("timings.jsonl"))?;
    let mut wall: Vec<f64> = timings
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some(v["seconds"].as_f64()? + v["write_seconds"].as_f64()?))
        .collect();
    if wall.len() != UNITS || cpu.len() != UNITS {
        bail!(
            "{} holds {} units, {UNITS} expected",
            out.display(),
            wall.len()
        );
    }
    let rows = std::fs::read_to_string(out.join("results.jsonl"))?
        .lines()
        .count();
    std::fs::remove_dir_all(&work)?;
    let mut seconds = cpu;
    let first = seconds.remove(0);
    let first_wall = wall.remove(0);
    let wall_unit = median(&mut wall);
    let (lo, hi) = seconds
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &s| (a.min(s), b.max(s)));
    let unit = median(&mut seconds);
    let units = CHECKPOINTS * TARGET_PAIRS * CONCEPT_PAIRS;
    let core_hours = units as f64 * unit / 3600.0;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| quantity | value |\n|---|---:|\n\
         | model | random weights, EuroLLM-1.7B's shape (24 layers, d 2048, 16 / 8 heads, ffn 5632, vocab 128000), f32 export {:.2} GB in {export_s:.0} s |\n\
         | rows per unit | {} (6 settings × 24 start layers) |\n\
         | plan: prompts built and tokenized (CPU) | {model_load:.1} s |\n\
         | first unit, with the model load (files verified) and the shared few-shot prefixes (CPU; wall) | {first:.1} s; {first_wall:.1} s |\n\
         | per unit, median of the next {} (CPU, range; wall) | **{unit:.1} s** ({lo:.1}–{hi:.1}); {wall_unit:.1} s |\n\
         | sweep wall time, model load included | {sweep_s:.0} s |\n\
         | grid | {CHECKPOINTS} checkpoints × {TARGET_PAIRS} target pairs × {CONCEPT_PAIRS} concept pairs = {units} units |\n\
         | **CPU** | **{core_hours:.0} core-hours** ({:.1} core-years) at 1 intra-op thread per task |\n\
         | GPU | not measured yet (`cargo xtask gpu-check`) |\n\
         | model loads | one per task: {CHECKPOINTS} × shards (`xlpatch slurm submit --shards`) |",
        bytes as f64 / 1e9,
        rows / UNITS,
        seconds.len(),
        core_hours / 24.0 / 365.0,
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        t,
        "\n{} study languages ({}), target pair fr→de, 10 greedy tokens (never stopped early: an \
         upper bound), 1 intra-op thread; load average at the end: {}",
        LANGUAGES.len(),
        LANGUAGES.join(" "),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    print!("\n{t}");
    let file = target_dir()?.join("bench/project-study.md");
    std::fs::create_dir_all(file.parent().expect("a parent"))?;
    std::fs::write(&file, &t).with_context(|| format!("cannot write {}", file.display()))?;
    println!("written to {}", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_from_proc() {
        let before = super::cpu_seconds(std::process::id()).expect("/proc/<pid>/stat parses");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = super::cpu_seconds(std::process::id()).unwrap();
        assert!(after > before, "{before} → {after}");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
