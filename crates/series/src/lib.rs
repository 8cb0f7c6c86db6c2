//! A checkpoint series from the hub through download, export and sweep, pipelined and within
//! a disk budget, resumable after a kill at any point.
//!
//! **Pipeline.** A producer thread downloads checkpoint k+1 into the hub cache, checks it,
//! exports it into the work directory and deletes the download, while the caller's thread
//! sweeps checkpoint k with the engine's public sweep ([`xlpatch_core::sweep::run`]) into a
//! results directory of its own (`work/runs/<checkpoint>`). When k's rows are durable, they
//! are appended unit by unit to the series' results directory and k's export and run are
//! deleted (unless `keep`). At most two exports and one download are on disk at once; a
//! budget too small for that runs one checkpoint at a time, and one too small for a single
//! checkpoint is refused before anything is downloaded.
//!
//! **Why one run per checkpoint.** The engine records the whole model list of a sweep in
//! `config.toml` and `run.json` and refuses a results directory whose list differs, and it
//! reads every manifest before it starts; a series whose checkpoints do not exist yet cannot
//! be one engine sweep. Each checkpoint is one engine sweep of one model instead, and the
//! series' directory gets the config (with its `hf://` specs), the prompt set (equal in every
//! run: checked), a `run.json` in the engine's format listing the checkpoints done, and
//! `series.json`, the series' record (revisions, commits, steps, tokens, weight hashes,
//! duplicates).
//!
//! **Resume.** Downloads resume from hf-hub's `.part` files and skip files already checked
//! in the cache; an export is written to `<name>.partial` and renamed when complete; an
//! engine run resumes by itself; appending skips units already in the series' results; the
//! state file marks a checkpoint done only after its rows are appended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::config::SweepConfig;
use xlpatch_core::results::{ResultsWriter, Row, read_rows};
use xlpatch_core::sweep::{Progress, Shard};
use xlpatch_export::{Dtype, ExportOptions};
use xlpatch_hub::{Checkpoint, Hub, HubError, Selection, SeriesSpec};

/// What can go wrong with a series.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeriesError {
    /// The hub.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// An export.
    #[error("cannot export {checkpoint}: {source}")]
    Export {
        /// The checkpoint.
        checkpoint: String,
        /// Why.
        source: xlpatch_export::ExportError,
    },
    /// The engine.
    #[error(transparent)]
    Core(#[from] xlpatch_core::Error),
    /// A results directory.
    #[error(transparent)]
    Results(#[from] xlpatch_results::Error),
    /// The disk budget cannot hold one checkpoint.
    #[error(
        "--disk-budget {budget} bytes cannot hold checkpoint {checkpoint}: it needs about {need} bytes on disk at once (download {download} + export {export}); raise the budget to at least {need} or free space"
    )]
    Budget {
        /// The budget.
        budget: u64,
        /// The largest checkpoint.
        checkpoint: String,
        /// What it needs.
        need: u64,
        /// Its download.
        download: u64,
        /// Its export (estimated).
        export: u64,
    },
    /// A file system error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Something that does not fit together.
    #[error("{0}")]
    Inconsistent(String),
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SeriesError {
    let path = path.into();
    move |source| SeriesError::Io { path, source }
}

/// One checkpoint of a series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Planned {
    /// The checkpoint's name in results (its revision, `/` as `_`).
    pub name: String,
    /// Where it comes from.
    pub checkpoint: Checkpoint,
    /// The earlier checkpoint of the series with the same weights, if any.
    pub duplicate_of: Option<String>,
}

/// A series: the specs, what each selected, and the checkpoints in step order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The specs as given.
    pub specs: Vec<String>,
    /// What each spec selected (skipped names included).
    pub selections: Vec<(SeriesSpec, Selection)>,
    /// The checkpoints, in series order.
    pub checkpoints: Vec<Planned>,
}

/// Lists and selects the series of `specs` (each `hf://…`).
pub fn plan(hub: &Hub, specs: &[String]) -> Result<Plan, SeriesError> {
    let mut selections = Vec::new();
    let mut checkpoints: Vec<Planned> = Vec::new();
    for text in specs {
        let spec = SeriesSpec::parse(text)?;
        let (sel, cks) = hub.resolve(&spec)?;
        for ck in cks {
            let name = ck.revision.replace('/', "_");
            if checkpoints.iter().any(|p| p.name == name) {
                return Err(SeriesError::Inconsistent(format!(
                    "two checkpoints are named {name:?} (results name checkpoints by revision); list each revision once"
                )));
            }
            checkpoints.push(Planned {
                name,
                checkpoint: ck,
                duplicate_of: None,
            });
        }
        selections.push((spec, sel));
    }
    // Series order across specs: by step where every checkpoint has one.
    if checkpoints.iter().all(|p| p.checkpoint.step.is_some()) {
        checkpoints.sort_by_key(|p| p.checkpoint.step);
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for p in &mut checkpoints {
        match seen.get(&p.checkpoint.weights_hash) {
            Some(first) => p.duplicate_of = Some(first.clone()),
            None => {
                seen.insert(p.checkpoint.weights_hash.clone(), p.name.clone());
            }
        }
    }
    Ok(Plan {
        specs: specs.to_vec(),
        selections,
        checkpoints,
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `series list`: what the specs select, by step, with what was skipped and why.
pub fn format_plan(plan: &Plan) -> String {
    let mut s = String::new();
    for (spec, sel) in &plan.selections {
        s.push_str(&format!("{spec}: {} selected", sel.selected.len()));
        if sel.thinned > 0 {
            s.push_str(&format!(", {} left out by the policy", sel.thinned));
        }
        if sel.out_of_range > 0 {
            s.push_str(&format!(", {} outside the step range", sel.out_of_range));
        }
        s.push('\n');
        if !sel.unparsed.is_empty() {
            s.push_str(&format!(
                "  skipped (no step in the name): {}\n",
                sel.unparsed.join(", ")
            ));
        }
    }
    s.push_str(&format!(
        "{:<36} {:>12} {:>10} {:<12} {:>12}  note\n",
        "revision", "step", "tokens", "commit", "download"
    ));
    for p in &plan.checkpoints {
        let ck = &p.checkpoint;
        let tokens = ck
            .tokens
            .map(|t| format!("{:.1}B", t as f64 / 1e9))
            .unwrap_or("-".into());
        let note = p
            .duplicate_of
            .as_ref()
            .map(|d| format!("same weights as {d}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "{:<36} {:>12} {:>10} {:<12} {:>12}  {note}\n",
            ck.revision,
            ck.step.map(|x| x.to_string()).unwrap_or("-".into()),
            tokens,
            &ck.commit[..ck.commit.len().min(12)],
            mb(ck.download_bytes()),
        ));
    }
    let total: u64 = plan
        .checkpoints
        .iter()
        .map(|p| p.checkpoint.download_bytes())
        .sum();
    s.push_str(&format!(
        "{} checkpoints, {} to download in all\n",
        plan.checkpoints.len(),
        mb(total)
    ));
    s
}

/// The groups of checkpoints with identical weights (by content hash), each in series order.
pub fn duplicates(plan: &Plan) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &plan.checkpoints {
        let first = p.duplicate_of.as_deref().unwrap_or(&p.name);
        groups.entry(first).or_default().push(p.name.clone());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort();
    out
}

/// `series fetch`: downloads (and checks) every checkpoint into the cache.
pub fn fetch(hub: &Hub, plan: &Plan, log: &(dyn Fn(&str) + Sync)) -> Result<(), SeriesError> {
    for p in &plan.checkpoints {
        hub.download(&p.checkpoint, &mut |m| log(m))?;
        log(&format!("fetched {}", p.name));
    }
    Ok(())
}

/// How a series sweep runs.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// Exports and per-checkpoint runs go here.
    pub work: PathBuf,
    /// Keep downloads and exports.
    pub keep: bool,
    /// The most bytes on disk at once (downloads plus exports), if bounded.
    pub disk_budget: Option<u64>,
    /// How exports store weights; none: the checkpoint's own precision where that is f16
    /// (computed in f32), else f32.
    pub dtype: Option<Dtype>,
    /// A tokenizer for revisions without `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
}

/// Disk needs of a series, estimated before starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The largest download of one checkpoint.
    pub download: u64,
    /// The largest export of one checkpoint (estimated from sizes and config).
    pub export: u64,
    /// One checkpoint at a time: its download and its export.
    pub sequential: u64,
    /// Pipelined: one export being swept, the next being downloaded and exported.
    pub pipelined: u64,
    /// Every download and export of the series kept.
    pub all: u64,
}

/// Bytes per element of a `config.json` dtype name.
fn elem_bytes(name: &str) -> u64 {
    match name {
        "float16" | "bfloat16" | "half" => 2,
        "float64" | "double" => 8,
        _ => 4,
    }
}

fn config_dtype(config: &serde_json::Value) -> String {
    config["torch_dtype"]
        .as_str()
        .or(config["dtype"].as_str())
        .or(config["text_config"]["torch_dtype"].as_str())
        .or(config["text_config"]["dtype"].as_str())
        .unwrap_or("float32")
        .to_string()
}

/// The export dtype of a checkpoint: f16 weights stay f16; bf16 (whose range f16 lacks) and
/// f32 become f32.
fn export_dtype(opts: &SeriesOptions, config: &serde_json::Value) -> Dtype {
    opts.dtype.unwrap_or(if config_dtype(config) == "float16" {
        Dtype::F16
    } else {
        Dtype::F32
    })
}

/// Estimates the export's bytes from the download's and the config.
fn export_estimate(ck: &Checkpoint, config: &serde_json::Value, dtype: Dtype) -> u64 {
    let src = elem_bytes(&config_dtype(config));
    let out = match dtype {
        Dtype::F16 => 2,
        _ => 4,
    };
    let c = if config["text_config"].is_object() {
        &config["text_config"]
    } else {
        config
    };
    let tied = c["tie_word_embeddings"]
        .as_bool()
        .or(config["tie_word_embeddings"].as_bool())
        .unwrap_or(false);
    let embed = c["vocab_size"].as_u64().unwrap_or(0) * c["hidden_size"].as_u64().unwrap_or(0);
    let tok: u64 = ck
        .files
        .iter()
        .filter(|f| f.path == "tokenizer.json")
        .map(|f| f.size)
        .sum();
    let weights = ck.weight_bytes() / src * out + if tied { embed * out } else { 0 };
    // Graph structure and manifest: a few percent.
    weights + weights / 20 + tok + (64 << 10)
}

fn read_json(path: &Path) -> Result<serde_json::Value, SeriesError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text)
        .map_err(|e| SeriesError::Inconsistent(format!("{}: {e}", path.display())))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|l| {
            l.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The disk the checkpoints of `plan` not in `done` need (downloads each one's
/// `config.json`, a few kB, unless its export is there already).
pub fn needs(
    hub: &Hub,
    plan: &Plan,
    opts: &SeriesOptions,
    done: &[String],
) -> Result<(Needs, String), SeriesError> {
    let mut n = Needs {
        download: 0,
        export: 0,
        sequential: 0,
        pipelined: 0,
        all: 0,
    };
    let mut largest = String::new();
    for p in plan.checkpoints.iter().filter(|p| !done.contains(&p.name)) {
        let export = opts.work.join("export").join(&p.name);
        let (dl, ex) = if export.join("manifest.json").is_file() {
            (0, dir_bytes(&export))
        } else {
            let config =
                read_json(&hub.download_file(&p.checkpoint, "config.json", &mut |_| {})?)?;
            let ex = export_estimate(&p.checkpoint, &config, export_dtype(opts, &config));
            (p.checkpoint.download_bytes(), ex)
        };
        if dl + ex > n.sequential {
            n.sequential = dl + ex;
            largest = p.name.clone();
        }
        n.download = n.download.max(dl);
        n.export = n.export.max(ex);
        n.all += dl + ex;
    }
    n.pipelined = n.download + 2 * n.export;
    Ok((n, largest))
}

/// What a series sweep did.
#[derive(Debug, Clone, Default)]
pub struct SeriesOutcome {
    /// Checkpoints swept now.
    pub swept: usize,
    /// Checkpoints found done.
    pub resumed: usize,
    /// Whether download and export overlapped the sweep.
    pub pipelined: bool,
    /// Groups of checkpoints with identical weights.
    pub duplicates: Vec<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    specs: Vec<String>,
    /// Checkpoints whose files were in the cache before the series started: never deleted.
    cached_before: Vec<String>,
    /// Checkpoints whose rows are in the series' results.
    done: Vec<String>,
    /// `run.json` entries of the checkpoints done, by name.
    models: BTreeMap<String, xlpatch_results::ModelEntry>,
    /// The study the engine recorded in every checkpoint's `run.json` (the same for all).
    #[serde(default)]
    study: Option<xlpatch_results::Study>,
}

fn write_atomic(path: &Path, text: &str) -> Result<(), SeriesError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes `text` to `path`, or checks that the file already holds it.
fn write_or_check(path: &Path, text: &str) -> Result<(), SeriesError> {
    match std::fs::read_to_string(path) {
        Ok(old) if old == text => Ok(()),
        Ok(_) => Err(SeriesError::Inconsistent(format!(
            "{}: belongs to another sweep (config, series or prompts differ); use another --out",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_atomic(path, text),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn remove_dir(path: &Path) -> Result<(), SeriesError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Downloads (unless exported already), exports, and deletes the download; returns the export.
fn prepare(
    hub: &Hub,
    p: &Planned,
    opts: &SeriesOptions,
    keep_download: bool,
    log: &(dyn Fn(&str) + Sync),
) -> Result<PathBuf, SeriesError> {
    let exports = opts.work.join("export");
    let out = exports.join(&p.name);
    if !out.join("manifest.json").is_file() {
        log(&format!("series: downloading {}", p.name));
        let snap = hub.download(&p.checkpoint, &mut |m| log(m))?;
        log(&format!("series: exporting {}", p.name));
        let partial = exports.join(format!("{}.partial", p.name));
        remove_dir(&partial)?;
        std::fs::create_dir_all(&exports).map_err(io_err(&exports))?;
        let config = read_json(&snap.join("config.json"))?;
        let tokenizer = if snap.join("tokenizer.json").is_file() {
            snap.join("tokenizer.json")
        } else if let Some(t) = &opts.tokenizer {
            t.clone()
        } else {
            return Err(SeriesError::Inconsistent(format!(
                "{}@{}: the revision has no tokenizer.json; give one with --tokenizer",
                p.checkpoint.repo, p.checkpoint.revision
            )));
        };
        let mut eo = ExportOptions::new(&snap, &partial);
        eo.tokenizer = Some(tokenizer);
        eo.dtype = export_dtype(opts, &config);
        eo.step = p.checkpoint.step;
        eo.revision = Some(p.checkpoint.revision.clone());
        xlpatch_export::export(&eo).map_err(|source| SeriesError::Export {
            checkpoint: p.name.clone(),
            source,
        })?;
        std::fs::rename(&partial, &out).map_err(io_err(&out))?;
    }
    if !keep_download {
        let freed = hub.remove(&p.checkpoint)?;
        if freed > 0 {
            log(&format!(
                "series: deleted the download of {} ({})",
                p.name,
                mb(freed)
            ));
        }
    }
    Ok(out)
}

/// Runs (or resumes) the sweep of `config` over the hub series of `plan` into `out`.
/// `config.models` are the series' specs; relative paths of the config are taken from
/// `base`.
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    hub: &Hub,
    plan: &Plan,
    config: &SweepConfig,
    registry: &Registry,
    base: &Path,
    out: &Path,
    opts: &SeriesOptions,
    log: &(dyn Fn(&str) + Sync),
    progress: &mut dyn FnMut(&Progress),
) -> Result<SeriesOutcome, SeriesError> {
    if plan.checkpoints.is_empty() {
        return Err(SeriesError::Inconsistent(format!(
            "{}: no checkpoint selected (see `xlpatch series list`)",
            plan.specs.join(" ")
        )));
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    std::fs::create_dir_all(&opts.work).map_err(io_err(&opts.work))?;
    let state_path = opts.work.join("state.json");
    let mut state: State = match std::fs::read_to_string(&state_path) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| SeriesError::Inconsistent(format!("{}: {e}", state_path.display())))?,
        Err(_) => State {
            specs: plan.specs.clone(),
            cached_before: plan
                .checkpoints
                .iter()
                .filter(|p| hub.is_cached(&p.checkpoint))
                .map(|p| p.name.clone())
                .collect(),
            ..State::default()
        },
    };
    if state.specs != plan.specs {
        return Err(SeriesError::Inconsistent(format!(
            "{}: the work directory belongs to another series ({}); use another --out",
            opts.work.display(),
            state.specs.join(" ")
        )));
    }
    let (needs, largest) = needs(hub, plan, opts, &state.done)?;
    let ahead = match opts.disk_budget {
        Some(budget) if budget < needs.sequential => {
            return Err(SeriesError::Budget {
                budget,
                checkpoint: largest,
                need: needs.sequential,
                download: needs.download,
                export: needs.export,
            });
        }
        Some(budget) if budget < needs.pipelined => {
            log(&format!(
                "series: --disk-budget {budget} holds one checkpoint ({}) but not two ({}): one at a time, no overlap",
                needs.sequential, needs.pipelined
            ));
            1
        }
        _ => 2,
    };
    write_atomic(
        &state_path,
        &serde_json::to_string_pretty(&state).expect("json"),
    )?;
    let stored = SweepConfig {
        threads: 0,
        target_batch: xlpatch_core::config::DEFAULT_TARGET_BATCH,
        ..config.clone()
    };
    write_or_check(&out.join("config.toml"), &stored.to_toml())?;
    let dups = duplicates(plan);
    let record = json!({
        "format_version": 1,
        "specs": plan.specs,
        "checkpoints": plan.checkpoints.iter().map(|p| json!({
            "checkpoint": p.name,
            "repo": p.checkpoint.repo,
            "revision": p.checkpoint.revision,
            "commit": p.checkpoint.commit,
            "step": p.checkpoint.step,
            "tokens": p.checkpoint.tokens,
            "weights_hash": p.checkpoint.weights_hash,
            "duplicate_of": p.duplicate_of,
        })).collect::<Vec<_>>(),
        "duplicates": dups,
        "skipped": plan.selections.iter().flat_map(|(_, s)| s.unparsed.clone()).collect::<Vec<_>>(),
    });
    write_or_check(
        &out.join("series.json"),
        &(serde_json::to_string_pretty(&record).expect("json") + "\n"),
    )?;
    for g in &dups {
        log(&format!(
            "series: identical weights (same content hash): {}",
            g.join(", ")
        ));
    }
    let mut writer = ResultsWriter::open(out)?;
    let todo: Vec<&Planned> = plan
        .checkpoints
        .iter()
        .filter(|p| !state.done.contains(&p.name))
        .collect();
    let mut outcome = SeriesOutcome {
        resumed: plan.checkpoints.len() - todo.len(),
        pipelined: ahead > 1,
        duplicates: dups,
        ..SeriesOutcome::default()
    };
    // Checkpoints done but not yet cleaned up (a kill between the two).
    for p in plan
        .checkpoints
        .iter()
        .filter(|p| state.done.contains(&p.name))
    {
        cleanup(hub, p, opts, &state, log)?;
    }
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(String, PathBuf), SeriesError>>();
    let (permit_tx, permit_rx) = mpsc::channel::<()>();
    for _ in 0..ahead {
        let _ = permit_tx.send(());
    }
    let cached_before = state.cached_before.clone();
    std::thread::scope(|scope| -> Result<(), SeriesError> {
        let producer_todo = todo.clone();
        scope.spawn(move || {
            for p in producer_todo {
                if permit_rx.recv().is_err() {
                    return;
                }
                let keep_download = opts.keep || cached_before.contains(&p.name);
                let r = prepare(hub, p, opts, keep_download, log).map(|d| (p.name.clone(), d));
                let failed = r.is_err();
                if ready_tx.send(r).is_err() || failed {
                    return;
                }
            }
        });
        let result = (|| -> Result<(), SeriesError> {
            for p in &todo {
                let (name, dir) = ready_rx.recv().map_err(|_| {
                    SeriesError::Inconsistent("the download thread stopped".into())
                })??;
                debug_assert_eq!(name, p.name);
                log(&format!("series: sweeping {name}"));
                let run_dir = opts.work.join("runs").join(&name);
                let mut one = config.clone();
                one.models = vec![dir.display().to_string()];
                xlpatch_core::sweep::run(
                    &one,
                    registry,
                    base,
                    &run_dir,
                    Shard::default(),
                    progress,
                )?;
                append(&mut writer, &run_dir, out)?;
                // The engine's own record of this checkpoint (one model) and of the study.
                let run = xlpatch_results::RunFile::read(&run_dir)?;
                let Some(entry) = run.models.into_iter().next() else {
                    return Err(SeriesError::Inconsistent(format!(
                        "{}: the sweep of {name} recorded no checkpoint",
                        run_dir.join(xlpatch_results::RUN_FILE).display()
                    )));
                };
                state.models.insert(name.clone(), entry);
                if state.study.is_none() {
                    state.study = run.study;
                }
                state.done.push(name.clone());
                write_atomic(
                    &state_path,
                    &serde_json::to_string_pretty(&state).expect("json"),
                )?;
                write_run_json(plan, &state, out)?;
                log(&format!("series: done {name}"));
                cleanup(hub, p, opts, &state, log)?;
                outcome.swept += 1;
                let _ = permit_tx.send(());
            }
            Ok(())
        })();
        drop(permit_tx);
        drop(ready_rx);
        result
    })?;
    write_run_json(plan, &state, out)?;
    Ok(outcome)
}

/// Deletes a done checkpoint's export, run and download (as the options allow).
fn cleanup(
    hub: &Hub,
    p: &Planned,
    opts: &SeriesOptions,
    state: &State,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(), SeriesError> {
    if opts.keep {
        return Ok(());
    }
    let export = opts.work.join("export").join(&p.name);
    if export.exists() {
        remove_dir(&export)?;
        log(&format!("series: deleted the export of {}", p.name));
    }
    remove_dir(&opts.work.join("runs").join(&p.name))?;
    if !state.cached_before.contains(&p.name) {
        hub.remove(&p.checkpoint)?;
    }
    Ok(())
}

/// `run.json` in the engine's format, listing the checkpoints done in series order.
fn write_run_json(plan: &Plan, state: &State, out: &Path) -> Result<(), SeriesError> {
    let run = xlpatch_results::RunFile {
        format_version: xlpatch_results::RUN_FORMAT_VERSION,
        models: plan
            .checkpoints
            .iter()
            .filter_map(|p| state.models.get(&p.name).cloned())
            .collect(),
        study: state.study.clone(),
    };
    write_atomic(&out.join(xlpatch_results::RUN_FILE), &run.to_text())
}

/// Appends a checkpoint run's units to the series' results (those not there yet) and checks
/// its prompt set against the series'.
fn append(writer: &mut ResultsWriter, run_dir: &Path, out: &Path) -> Result<(), SeriesError> {
    let prompts = std::fs::read_to_string(run_dir.join("prompts.jsonl"))
        .map_err(io_err(run_dir.join("prompts.jsonl")))?;
    write_or_check(&out.join("prompts.jsonl"), &prompts)?;
    let rows = read_rows(run_dir)?;
    let mut units: Vec<(String, Vec<Row>)> = Vec::new();
    for r in rows {
        match units.last_mut() {
            Some((u, list)) if *u == r.unit => list.push(r),
            _ => units.push((r.unit.clone(), vec![r])),
        }
    }
    for (unit, rows) in units {
        if !writer.is_done(&unit) {
            writer.append_unit(&rows)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xlpatch_hub::TreeEntry;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/series")
    }

    fn checkpoint(revision: &str, weights_hash: &str, files: Vec<TreeEntry>) -> Checkpoint {
        Checkpoint {
            repo: "o/n".into(),
            revision: revision.into(),
            commit: "0".repeat(40),
            step: xlpatch_hub::parse_ref(revision).map(|r| r.step),
            tokens: None,
            files,
            weights_hash: weights_hash.into(),
        }
    }

    fn entry(path: &str, size: u64) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            size,
            oid: String::new(),
            sha256: None,
        }
    }

    #[test]
    fn the_export_estimate_is_close_to_a_real_export_and_not_below_it_by_much() {
        let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
        let ck = checkpoint(
            "step_64",
            "h",
            vec![
                entry("config.json", size(fixture().join("step_64/config.json"))),
                entry(
                    "model.safetensors",
                    size(fixture().join("step_64/model.safetensors")),
                ),
                entry("tokenizer.json", size(fixture().join("tokenizer.json"))),
            ],
        );
        let config = read_json(&fixture().join("step_64/config.json")).unwrap();
        let opts = SeriesOptions {
            work: PathBuf::new(),
            keep: false,
            disk_budget: None,
            dtype: None,
            tokenizer: None,
        };
        // An f16 checkpoint stays f16, as the committed export of it is.
        assert_eq!(export_dtype(&opts, &config), Dtype::F16);
        let est = export_estimate(&ck, &config, Dtype::F16);
        let real = dir_bytes(&fixture().join("export/step_64"));
        let ratio = est as f64 / real as f64;
        assert!(
            (1.0..1.15).contains(&ratio),
            "estimate {est} against {real}"
        );
        // f32 graphs of f16 weights take twice the weights.
        let est32 = export_estimate(&ck, &config, Dtype::F32);
        assert!(
            est32 > est + ck.weight_bytes() * 9 / 10,
            "{est32} against {est}"
        );
        // bf16 and f32 checkpoints export as f32.
        let bf16 = serde_json::json!({"torch_dtype": "bfloat16"});
        assert_eq!(export_dtype(&opts, &bf16), Dtype::F32);
    }

    #[test]
    fn identical_weights_group_in_series_order() {
        let p = |name: &str, hash: &str, dup: Option<&str>| Planned {
            name: name.into(),
            checkpoint: checkpoint(name, hash, vec![entry("model.safetensors", 10)]),
            duplicate_of: dup.map(String::from),
        };
        let plan = Plan {
            specs: vec!["hf://o/n".into()],
            selections: Vec::new(),
            checkpoints: vec![
                p("step1", "a", None),
                p("step2", "a", Some("step1")),
                p("step3", "b", None),
                p("step4", "a", Some("step1")),
            ],
        };
        assert_eq!(duplicates(&plan), vec![vec!["step1", "step2", "step4"]]);
        let text = format_plan(&plan);
        assert!(
            text.lines()
                .any(|l| l.starts_with("step4 ") && l.ends_with("same weights as step1")),
            "{text}"
        );
    }
}
