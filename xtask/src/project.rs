//! `cargo xtask project-study`: what the seed paper's full study would cost (issue 15).
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
//! every generation runs its full 10 tokens, an upper bound). The first unit of a checkpoint
//! also computes the few-shot prefixes that later units reuse (every language pair of `seen`),
//! so it is reported apart; the projection uses the median of the others, from the sweep's
//! `timings.jsonl` (model load excluded, as it is once per task). Everything lives under
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

/// The task.
pub(crate) fn project() -> Result<()> {
    plugins::build(true)?;
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let xlpatch = target_dir().join("release/xlpatch");
    let work = target_dir().join("project-study");
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
    run(Command::new(&xlpatch)
        .arg("sweep")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out))?;
    let sweep_s = start.elapsed().as_secs_f64();
    let timings = std::fs::read_to_string(out.join("timings.jsonl"))?;
    let mut seconds: Vec<f64> = timings
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some(v["seconds"].as_f64()? + v["write_seconds"].as_f64()?))
        .collect();
    if seconds.len() != UNITS {
        bail!(
            "{} holds {} units, {UNITS} expected",
            out.display(),
            seconds.len()
        );
    }
    let rows = std::fs::read_to_string(out.join("results.jsonl"))?
        .lines()
        .count();
    std::fs::remove_dir_all(&work)?;
    let first = seconds.remove(0);
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
         | first unit of the checkpoint (computes the shared few-shot prefixes) | {first:.1} s |\n\
         | per unit, median of the next {} (range) | **{unit:.1} s** ({lo:.1}–{hi:.1}) |\n\
         | sweep wall time, model load included | {sweep_s:.0} s |\n\
         | grid | {CHECKPOINTS} checkpoints × {TARGET_PAIRS} target pairs × {CONCEPT_PAIRS} concept pairs = {units} units |\n\
         | **CPU** | **{core_hours:.0} core-hours** ({:.1} core-years) at 1 intra-op thread per task |\n\
         | GPU | from the GPU issue, not measured |\n\
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
    let file = target_dir().join("bench/project-study.md");
    std::fs::create_dir_all(file.parent().expect("a parent"))?;
    std::fs::write(&file, &t).with_context(|| format!("cannot write {}", file.display()))?;
    println!("written to {}", file.display());
    Ok(())
}
