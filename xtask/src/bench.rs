//! `cargo xtask bench`: xlpatch against the Python reference pipeline (`bench/python/`,
//! PyTorch + transformers + nnsight, the way the prior work's scripts patch), side by side on
//! identical inputs (issue 7; the method and figures are in BENCHMARKS.md).
//!
//! For each model it writes a small sweep config (fr→de target prompts, the `seen` setting,
//! a few concept pairs, two intra-op threads), then alternates, for several repetitions:
//! `xlpatch sweep` into a fresh directory (which also writes the `prompts.jsonl` both sides
//! run on, and the per-target wall times `timings.jsonl`), and `reference.py` on that
//! `prompts.jsonl`. It prints, per model, the median wall time per target of each side, their
//! ratio, the whole commands' times, the largest difference of any probability column of any
//! row, and how many greedy generations are identical (listing the others with the top-2
//! logit gap of the step where they part: a near-tie explains a flip). Beside the ratio it
//! reports xlpatch's achieved GFLOP/s per target (the FLOPs of blocks and head that
//! `flops.rs` counts, over the target's wall time) against the machine's float32 GEMM rate,
//! measured in the same run by `bench/python/gemm_peak.py`. The tables are also
//! written to `target/bench/summary.md`.
//!
//! The Python environment is the project's `.cache/py` (git-ignored; torch alone is about
//! 5.7 GB installed, so it is created once and reused), with `bench/python/requirements.txt`
//! added when nnsight is missing. Too slow for CI: not part of `cargo xtask test`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lexopt::{Arg, Parser, ValueExt as _};
use serde_json::Value;

use crate::flops::{self, Shape, Work};
use crate::{args, cargo, fixtures, gemma, ort, plugins, root, run, target_dir};

const USAGE: &str = "\
cargo xtask bench [--reps N] [--targets N] [--threads N] [--models fixture,gemma] [--xlpatch PATH]

  --reps N        repetitions, each a fresh xlpatch sweep and a Python run (default 3)
  --targets N     target prompts (concept pairs) per model (default 4)
  --threads N     intra-op threads of both sides (default 1; see BENCHMARKS.md)
  --models LIST   which models, comma-separated: fixture (the fixture series' final
                  checkpoint), gemma (Gemma-3-270M) (default: both)
  --xlpatch PATH  run this prebuilt xlpatch binary (with its plugins/ beside it) instead of
                  building the checkout's: a before/after comparison on one machine state
";

/// The probability columns every results row has (`metric_ids` in `prompts.jsonl` names the
/// token sets; any per-language column present on both sides is compared too).
const COLUMNS: [&str; 6] = [
    "p_src_out",
    "p_tgt_out",
    "p_src_in",
    "p_tgt_in",
    "p_src_other",
    "p_tgt_other",
];

struct Options {
    reps: usize,
    targets: usize,
    /// Intra-op threads of both sides. One by default: on a 2-core machine shared with other
    /// work, two threads per side measured 4-8× slower on both sides (oversubscription).
    threads: usize,
    models: Vec<String>,
    /// A prebuilt `xlpatch` to measure instead of the checkout's release build.
    xlpatch: Option<PathBuf>,
}

impl Options {
    fn parse(p: &mut Parser) -> Result<Options> {
        let mut o = Options {
            reps: 3,
            targets: 4,
            threads: 1,
            models: vec!["fixture".into(), "gemma".into()],
            xlpatch: None,
        };
        while let Some(arg) = p.next()? {
            match arg {
                Arg::Long("reps") => o.reps = args::positive(p, "reps", USAGE)?,
                Arg::Long("targets") => o.targets = args::positive(p, "targets", USAGE)?,
                Arg::Long("threads") => o.threads = args::positive(p, "threads", USAGE)?,
                Arg::Long("models") => {
                    o.models = p
                        .value()?
                        .string()?
                        .split(',')
                        .map(str::to_string)
                        .collect();
                    if let Some(bad) = o
                        .models
                        .iter()
                        .find(|m| !["fixture", "gemma"].contains(&m.as_str()))
                    {
                        bail!("unknown model {bad:?} (fixture, gemma)\n\n{USAGE}");
                    }
                }
                Arg::Long("xlpatch") => o.xlpatch = Some(p.value()?.into()),
                other => args::unexpected(other, USAGE)?,
            }
        }
        Ok(o)
    }
}

/// A model as both sides load it.
struct Subject {
    name: &'static str,
    /// The xlpatch model directory.
    export: PathBuf,
    /// The Hugging Face checkpoint the Python side loads (same weights, float32).
    hf: PathBuf,
    tokenizer: PathBuf,
    /// The concepts the model knows (`concept_list` of the sweep config), if not all.
    concept_list: Option<PathBuf>,
}

pub(crate) fn bench(p: &mut Parser) -> Result<()> {
    let opts = Options::parse(p)?;
    let python = python_env()?;
    let ort = ort::ensure()?;
    let xlpatch = match &opts.xlpatch {
        // A prebuilt binary: nothing is built (its plugins are those beside it).
        Some(bin) if bin.is_file() => bin.clone(),
        Some(bin) => bail!("--xlpatch {}: no such file", bin.display()),
        None => {
            plugins::build(true)?;
            run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
            target_dir()?.join("release/xlpatch")
        }
    };
    let out = target_dir()?.join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    let load_before = load_average();
    let mut results = Vec::new();
    for name in &opts.models {
        let subject = subject(name, &xlpatch, &python, &out)?;
        results.push(bench_model(&subject, &opts, &xlpatch, &ort, &python, &out)?);
    }
    let load_after = load_average();

    let summary = summary(&results, &opts, &load_before, &load_after);
    print!("\n{summary}");
    let path = out.join("summary.md");
    std::fs::write(&path, &summary).with_context(|| format!("cannot write {}", path.display()))?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// The project's Python environment with the reference pipeline's packages.
fn python_env() -> Result<PathBuf> {
    let venv_python = root().join(".cache/py/bin/python");
    if !venv_python.is_file() {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
        let ok = |args: &[&str]| {
            Command::new(&system)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ok(&["--version"]) {
            bail!(
                "`{system}` was not found: the reference pipeline needs Python 3 with pip and venv \
                 (on Debian: apt-get install python3 python3-pip python3-venv)"
            );
        }
        if !ok(&["-m", "pip", "--version"]) {
            bail!(
                "`{system} -m pip` does not work: the reference pipeline installs PyTorch, \
                 transformers and nnsight with pip (on Debian: apt-get install python3-pip python3-venv)"
            );
        }
        eprintln!(
            "the Python reference pipeline needs PyTorch (about 5.7 GB installed), transformers and \
             nnsight: installing them once into .cache/py"
        );
    }
    let python = fixtures::venv_python()?;
    let has_nnsight = Command::new(&python)
        .args(["-c", "import nnsight"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nnsight {
        eprintln!("installing bench/python/requirements.txt into .cache/py");
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(root().join("bench/python/requirements.txt")))
        .context("cannot install bench/python/requirements.txt")?;
    }
    Ok(python)
}

fn subject(name: &str, xlpatch: &Path, python: &Path, out: &Path) -> Result<Subject> {
    let root = root();
    match name {
        "fixture" => {
            let series = root.join("fixtures/series");
            let s = Subject {
                name: "fixture step_2000",
                export: series.join("export/step_2000"),
                hf: series.join("step_2000"),
                tokenizer: series.join("tokenizer.json"),
                // The fixture model was trained on these concepts only.
                concept_list: Some(series.join("concepts.txt")),
            };
            for p in [&s.export, &s.hf] {
                if !p.is_dir() {
                    bail!(
                        "{} is missing: the fixture series is committed; `cargo xtask fixtures` rebuilds it",
                        p.display()
                    );
                }
            }
            Ok(s)
        }
        "gemma" => {
            gemma::fetch()?;
            let cache = root.join(".cache/gemma");
            let hf = cache.join("hf");
            if !hf.join("config.json").is_file() {
                // The dequantized Hugging Face checkpoint is written by the goldens script;
                // --check writes nothing under fixtures/.
                eprintln!("writing the dequantized Hugging Face checkpoint into .cache/gemma/hf");
                run(Command::new(python)
                    .current_dir(&root)
                    .args(["xtask/py/gemma_goldens.py", "--check"]))?;
            }
            let export = out.join("gemma-export");
            // Reused unless missing or built from other operators than the exporter's default.
            let current = read_json(&export.join("manifest.json"))
                .is_ok_and(|m| m["ops"].as_str() == Some("fused"));
            if !current {
                let _ = std::fs::remove_dir_all(&export);
                run(Command::new(xlpatch)
                    .arg("export")
                    .arg("--model")
                    .arg(cache.join("gemma-3-270m-q4_k_m.gguf"))
                    .arg("--tokenizer")
                    .arg(cache.join("tokenizer.json"))
                    .arg("--out")
                    .arg(&export))?;
            }
            Ok(Subject {
                name: "Gemma-3-270M",
                export,
                hf,
                tokenizer: cache.join("tokenizer.json"),
                concept_list: None,
            })
        }
        other => bail!("unknown model {other:?}"),
    }
}

/// What one model's benchmark measured.
struct ModelResult {
    name: String,
    layers: usize,
    targets: usize,
    reps: usize,
    /// Seconds per target, every target of every repetition.
    xl_target: Vec<f64>,
    py_target: Vec<f64>,
    /// Seconds per whole command (model load and start-up included).
    xl_command: Vec<f64>,
    py_command: Vec<f64>,
    compare: Comparison,
    /// Per target of every repetition: its counted work and xlpatch's seconds for it.
    work: Vec<(Work, f64)>,
    /// The machine's float32 matrix-product rate (GFLOP/s), measured once per repetition.
    peak: Vec<f64>,
}

/// Where the two sides' rows agree and where not.
#[derive(Default)]
struct Comparison {
    rows: usize,
    values: usize,
    max_diff: f64,
    /// (item, setting, start layer, column) of the largest difference.
    max_at: String,
    identical: usize,
    /// Every differing generation, once.
    differing: Vec<Differing>,
}

/// A generation that differs between the two sides.
struct Differing {
    /// Item, setting, start layer and the index of the first differing token.
    at: String,
    xlpatch: Vec<u64>,
    python: Vec<u64>,
    /// Python's gap between its two largest logits at that token: a near-tie explains a flip.
    gap: Option<f64>,
}

fn toml_str(path: &Path) -> String {
    let s = path.to_string_lossy();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn bench_model(
    subject: &Subject,
    opts: &Options,
    xlpatch: &Path,
    ort: &Path,
    python: &Path,
    out: &Path,
) -> Result<ModelResult> {
    let dir = out.join(
        subject
            .name
            .split_whitespace()
            .next()
            .unwrap_or("model")
            .to_lowercase(),
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = dir.join("sweep.toml");
    let mut text = format!(
        "# written by `cargo xtask bench`\n\
         models = [{}]\n\
         concepts = {}\n\
         languages = [\"en\", \"de\", \"fr\", \"es\", \"it\"]\n\
         pairs = [[\"fr\", \"de\"]]\n\
         settings = [\"seen\"]\n\
         concept_pairs = {}\n\
         seed = 0\n\
         max_new_tokens = 10\n\
         threads = {}\n",
        toml_str(&subject.export),
        toml_str(&root().join("fixtures/concepts")),
        opts.targets,
        opts.threads,
    );
    if let Some(list) = &subject.concept_list {
        let _ = writeln!(text, "concept_list = {}", toml_str(list));
    }
    std::fs::write(&config, text).with_context(|| format!("cannot write {}", config.display()))?;
    let layers = read_json(&subject.export.join("manifest.json"))?["num_layers"]
        .as_u64()
        .context("manifest.json without num_layers")? as usize;

    let mut result = ModelResult {
        name: subject.name.to_string(),
        layers,
        targets: opts.targets,
        reps: opts.reps,
        xl_target: Vec::new(),
        py_target: Vec::new(),
        xl_command: Vec::new(),
        py_command: Vec::new(),
        compare: Comparison::default(),
        work: Vec::new(),
        peak: Vec::new(),
    };
    let shape = Shape::from_manifest(&read_json(&subject.export.join("manifest.json"))?)?;
    let mut prompts_seen: Option<String> = None;
    for rep in 0..opts.reps {
        eprintln!("{}: repetition {}/{}", subject.name, rep + 1, opts.reps);
        // xlpatch: a fresh results directory (a rerun into an old one would resume, doing nothing).
        let xl_out = dir.join(format!("xlpatch-{rep}"));
        if xl_out.exists() {
            std::fs::remove_dir_all(&xl_out)
                .with_context(|| format!("cannot remove {}", xl_out.display()))?;
        }
        let started = Instant::now();
        run(Command::new(xlpatch)
            .env("ORT_DYLIB_PATH", ort)
            .arg("sweep")
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&xl_out))?;
        result.xl_command.push(started.elapsed().as_secs_f64());
        let timings = read_jsonl(&xl_out.join("timings.jsonl"))?;
        if timings.len() != opts.targets {
            bail!(
                "{}: {} units timed, expected {}",
                xl_out.join("timings.jsonl").display(),
                timings.len(),
                opts.targets
            );
        }
        for t in &timings {
            result
                .xl_target
                .push(t["seconds"].as_f64().context("timings.jsonl: no seconds")?);
        }
        let prompts = xl_out.join("prompts.jsonl");
        let work = flops::per_target(
            &shape,
            &read_jsonl(&prompts)?,
            &read_jsonl(&xl_out.join("results.jsonl"))?,
        )?;
        for t in &timings {
            let unit = t["unit"].as_str().context("timings.jsonl: no unit")?;
            let item = unit.split_once('/').map_or(unit, |(_, i)| i);
            let w = work
                .get(item)
                .with_context(|| format!("{}: no rows for {unit}", xl_out.display()))?;
            result
                .work
                .push((*w, t["seconds"].as_f64().unwrap_or(f64::NAN)));
        }
        // The machine's matrix-product rate now, under the load the two sides see.
        let peak = Command::new(python)
            .current_dir(root())
            .arg("bench/python/gemm_peak.py")
            .args(["--threads", &opts.threads.to_string()])
            .output()
            .context("cannot run bench/python/gemm_peak.py")?;
        if !peak.status.success() {
            bail!(
                "bench/python/gemm_peak.py failed: {}",
                String::from_utf8_lossy(&peak.stderr)
            );
        }
        let peak: Value = serde_json::from_slice(&peak.stdout)
            .context("bench/python/gemm_peak.py: not a JSON line")?;
        result.peak.push(
            peak["gflops_best"]
                .as_f64()
                .context("bench/python/gemm_peak.py: no gflops_best")?,
        );
        let text = std::fs::read_to_string(&prompts)
            .with_context(|| format!("cannot read {}", prompts.display()))?;
        match &prompts_seen {
            Some(first) if *first != text => {
                bail!(
                    "{}: the prompt set changed between repetitions",
                    prompts.display()
                )
            }
            _ => prompts_seen = Some(text),
        }

        // The reference pipeline on the same prompts.
        let py_out = dir.join(format!("python-{rep}.jsonl"));
        let started = Instant::now();
        run(Command::new(python)
            .current_dir(root())
            .arg("bench/python/reference.py")
            .arg("--model")
            .arg(&subject.hf)
            .arg("--tokenizer")
            .arg(&subject.tokenizer)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--out")
            .arg(&py_out)
            .args(["--threads", &opts.threads.to_string(), "--settings", "seen"]))?;
        result.py_command.push(started.elapsed().as_secs_f64());
        let py_rows = read_jsonl(&py_out)?;
        let mut py_by_key = BTreeMap::new();
        for r in &py_rows {
            if let Some(s) = r.get("seconds").and_then(Value::as_f64) {
                result.py_target.push(s);
            } else if r.get("start_layer").is_some() {
                let key = (
                    str_of(r, "item")?,
                    str_of(r, "setting")?,
                    r["start_layer"].as_u64().unwrap_or(u64::MAX),
                );
                py_by_key.insert(key, r);
            }
        }
        let xl_rows = read_jsonl(&xl_out.join("results.jsonl"))?;
        compare(&xl_rows, &py_by_key, &mut result.compare)
            .with_context(|| format!("comparing {} with {}", xl_out.display(), py_out.display()))?;
    }
    Ok(result)
}

fn str_of(row: &Value, key: &str) -> Result<String> {
    row[key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("a row without {key:?}: {row}"))
}

type Key = (String, String, u64);

fn compare(xl_rows: &[Value], py: &BTreeMap<Key, &Value>, c: &mut Comparison) -> Result<()> {
    if xl_rows.len() != py.len() {
        bail!(
            "{} xlpatch rows against {} Python rows",
            xl_rows.len(),
            py.len()
        );
    }
    for x in xl_rows {
        // A unit is `<checkpoint>/<item>`; the Python side keys rows by item.
        let unit = str_of(x, "unit")?;
        let item = unit
            .split_once('/')
            .map_or(unit.as_str(), |(_, i)| i)
            .to_string();
        let setting = str_of(x, "setting")?;
        let j = x["start_layer"]
            .as_u64()
            .context("a row without start_layer")?;
        let key = (item, setting, j);
        let p = py
            .get(&key)
            .with_context(|| format!("no Python row for {key:?}"))?;
        c.rows += 1;
        let columns = x
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("p_") && p.get(k.as_str()).is_some())
            .map(|(k, _)| k.clone());
        for col in columns {
            let (a, b) = (x[&col].as_f64(), p[&col].as_f64());
            let (Some(a), Some(b)) = (a, b) else {
                bail!("{key:?} {col}: not a number on one side");
            };
            let d = (a - b).abs();
            if d > c.max_diff || c.values == 0 {
                c.max_diff = d;
                c.max_at = format!("{} {} j={} {col}", key.0, key.1, key.2);
            }
            c.values += 1;
        }
        if let Some(missing) = COLUMNS.iter().find(|k| p.get(**k).is_none()) {
            bail!("{key:?}: the Python row has no {missing}");
        }
        let ids = |v: &Value| -> Vec<u64> {
            v["generation_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect()
        };
        let (xi, pi) = (ids(x), ids(p));
        if xi == pi {
            c.identical += 1;
        } else {
            let part = xi.iter().zip(&pi).take_while(|(a, b)| a == b).count();
            let gap = p["top2_gaps"]
                .as_array()
                .and_then(|g| g.get(part))
                .and_then(Value::as_f64);
            let at = format!("{} {} j={} (token {part})", key.0, key.1, key.2);
            // Both sides are deterministic: list a difference once, however many repetitions.
            if !c.differing.iter().any(|d| d.at == at) {
                c.differing.push(Differing {
                    at,
                    xlpatch: xi,
                    python: pi,
                    gap,
                });
            }
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))
        })
        .collect()
}

fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `/proc/loadavg`'s three averages, or a note that it is unreadable.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The machine in words: cores, CPU model, memory (no host names).
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown memory".to_string(), |kb| {
            format!("{:.0} GiB memory", kb / 1024.0 / 1024.0)
        });
    format!("{cores} cores available, {cpu}, {mem}")
}

fn summary(results: &[ModelResult], opts: &Options, before: &str, after: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# xlpatch against the Python reference pipeline\n");
    let _ = writeln!(
        s,
        "Machine: {}. Load average (1, 5, 15 min) before: {before}; after: {after}.",
        machine()
    );
    let _ = writeln!(
        s,
        "Both sides: CPU, float32, {} intra-op thread(s); fr→de targets, setting `seen`, \
         {} targets per model, {} repetitions, alternating.\n",
        opts.threads, opts.targets, opts.reps
    );
    let _ = writeln!(
        s,
        "| model | layers | xlpatch s/target | Python s/target | speed-up | xlpatch command s | Python command s | max abs Δp | identical generations |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let (xl, py) = (median(&r.xl_target), median(&r.py_target));
        let (xc, pc) = (median(&r.xl_command), median(&r.py_command));
        let c = &r.compare;
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} | {:.3} | {:.0}× | {:.2} | {:.1} | {:.1e} | {}/{} ({:.1}%) |",
            r.name,
            r.layers,
            xl,
            py,
            py / xl,
            xc,
            pc,
            c.max_diff,
            c.identical,
            c.rows,
            100.0 * c.identical as f64 / c.rows.max(1) as f64,
        );
    }
    let _ = writeln!(
        s,
        "\ns/target: the median over every target of every repetition of the wall time of the \
         target's whole work (source latents, probabilities and generations for every start \
         layer; model load excluded). Command: the median wall time of the whole command, \
         start-up and model load included. Δp: over every probability column of every row."
    );
    let _ = writeln!(
        s,
        "\n| model | GFLOP/target (blocks + head) | xlpatch GFLOP/s | per target (min–max) | f32 GEMM peak GFLOP/s | fraction of peak | per target (min–max) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let gflop = |w: &Work| w.total() / 1e9;
        let blocks = median(
            &r.work
                .iter()
                .map(|(w, _)| w.blocks / 1e9)
                .collect::<Vec<_>>(),
        );
        let head = median(&r.work.iter().map(|(w, _)| w.head / 1e9).collect::<Vec<_>>());
        let all: f64 = r.work.iter().map(|(w, _)| gflop(w)).sum();
        let secs: f64 = r.work.iter().map(|(_, t)| t).sum();
        let rates: Vec<f64> = r.work.iter().map(|(w, t)| gflop(w) / t).collect();
        let (lo, hi) = (
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        let peak = median(&r.peak);
        let _ = writeln!(
            s,
            "| {} | {:.2} ({:.2} + {:.2}) | {:.1} | {:.1}–{:.1} | {:.1} | {:.0}% | {:.0}–{:.0}% |",
            r.name,
            blocks + head,
            blocks,
            head,
            all / secs,
            lo,
            hi,
            peak,
            100.0 * all / secs / peak,
            100.0 * lo / peak,
            100.0 * hi / peak,
        );
    }
    let _ = writeln!(
        s,
        "\nGFLOP/target: the matrix products a target's work needs, counted from the model's \
         shapes, the prompts and the generations (xtask/src/flops.rs; medians). xlpatch GFLOP/s: \
         all targets' FLOPs over their summed wall time (s/target above). Peak: PyTorch's float32 \
         GEMM (2048², bench/python/gemm_peak.py) at the same threads, best of 7, measured once \
         per repetition in this run; the median of those."
    );
    for r in results {
        let c = &r.compare;
        let _ = writeln!(
            s,
            "\n{}: {} targets × {} repetitions, {} rows, {} probabilities compared; largest \
             difference at {}.",
            r.name, r.targets, r.reps, c.rows, c.values, c.max_at
        );
        for d in &c.differing {
            let gap = d.gap.map_or("n/a".to_string(), |g| format!("{g:.2e}"));
            let _ = writeln!(
                s,
                "- differs: {}: xlpatch {:?}, Python {:?}; Python's top-2 logit gap there {gap}",
                d.at, d.xlpatch, d.python
            );
        }
    }
    s
}
