//! The pipelined sweep: download and export k+1 while k is swept, append, clean up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::config::SweepConfig;
use xlpatch_core::results::{ResultsWriter, Row, read_rows};
use xlpatch_core::sweep::{Progress, Shard};
use xlpatch_export::ExportOptions;
use xlpatch_hub::Hub;

use crate::budget::*;
use crate::error::*;
use crate::options::*;
use crate::plan::*;

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
pub(crate) struct State {
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

pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), SeriesError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes `text` to `path`, or checks that the file already holds it.
pub(crate) fn write_or_check(path: &Path, text: &str) -> Result<(), SeriesError> {
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

pub(crate) fn remove_dir(path: &Path) -> Result<(), SeriesError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Downloads (unless exported already), exports, and deletes the download; returns the export.
pub(crate) fn prepare(
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
                let swept = xlpatch_core::sweep::run(
                    &one,
                    registry,
                    base,
                    &run_dir,
                    Shard::default(),
                    progress,
                )?;
                for w in &swept.warnings {
                    log(&format!("series: warning: {w}"));
                }
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
pub(crate) fn cleanup(
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
pub(crate) fn write_run_json(plan: &Plan, state: &State, out: &Path) -> Result<(), SeriesError> {
    let run = xlpatch_results::RunFile {
        format_version: xlpatch_results::RUN_FORMAT_VERSION,
        models: plan
            .checkpoints
            .iter()
            .filter_map(|p| state.models.get(&p.name).cloned())
            .collect(),
        shard: None,
        study: state.study.clone(),
    };
    write_atomic(&out.join(xlpatch_results::RUN_FILE), &run.to_text())
}

/// Appends a checkpoint run's units to the series' results (those not there yet) and checks
/// its prompt set against the series'.
pub(crate) fn append(
    writer: &mut ResultsWriter,
    run_dir: &Path,
    out: &Path,
) -> Result<(), SeriesError> {
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
