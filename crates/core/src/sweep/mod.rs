//! A sweep (docs/method.md): for every checkpoint of a series, every target language pair,
//! every concept pair, every setting and every start layer, the patched next-token
//! distribution, its metrics and the greedy generation, written as result rows through
//! `xlpatch-results`.
//!
//! The plan ([`plan`]) is fixed before any model runs and written as `prompts.jsonl` beside
//! the results. Work is divided into *units*: one target prompt on one checkpoint, every
//! setting and start layer ([`units`]). A unit runs the target once unpatched (shared by
//! every setting and by the `unpatched` rows), computes every source latent of the unit in
//! left-padded batches, patches from the unpatched run incrementally, and generates for the
//! rows of all settings in one batch; [`rows`] turns its results into rows.
//!
//! `tgt_tgt` uses the target's own residuals at the patched position as its latent, which
//! makes it an exact identity control under `patch-replace`.
//!
//! Modules: `item` (the plan's prompts and their records) ← `replay` (a prompt set read back)
//! ← `plan`; `context` (what a checkpoint's units share) ← `rows` ← `units`; `shard`,
//! `summary`. No module uses one that uses it.

use std::path::Path;

use xlpatch_abi::loader::Registry;
use xlpatch_results::{
    CONFIG_FILE, ModelEntry, PROMPTS_FILE, PromptRecord, RUN_FORMAT_VERSION, ResultsWriter, Role,
    RunFile, ShardRecord, Study, Timing, prompts_text, store_or_check,
};

use crate::Error;
use crate::config::SweepConfig;
use crate::model::{BackendOptions, Model};
use crate::patch::stops_from;
use crate::prefix::PrefixCache;

mod context;
mod item;
mod plan;
mod replay;
mod rows;
mod shard;
mod summary;
mod units;

use context::{Checkpoint, UnitRef, Units, plugins};
use item::Item;
pub use item::RecordError;
use plan::{Plan, checkpoint_name, metric_sets, plan};
pub use replay::ReplayError;
pub use shard::Shard;
pub use summary::{SummaryLine, format_summary, summarize};
use units::units_per_batch;

/// What a sweep reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Units finished in this shard, including those found done.
    pub done: usize,
    /// Units in this shard.
    pub total: usize,
    /// Units found done when the sweep started.
    pub resumed: usize,
    /// The checkpoint being run.
    pub checkpoint: String,
}

/// What a finished sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Units run now.
    pub ran: usize,
    /// Units found done.
    pub resumed: usize,
    /// Units in this shard.
    pub total: usize,
    /// What the user should be told (a replayed prompt set without tokenizer hashes, a
    /// limit not checked, or relaxed).
    pub warnings: Vec<String>,
}

/// Runs (or resumes) the sweep of `config` into `out`; relative paths of the config are
/// taken from `base`. Only the units of `shard` run. `progress` is called after every unit.
pub fn run(
    config: &SweepConfig,
    registry: &Registry,
    base: &Path,
    out: &Path,
    shard: Shard,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, Error> {
    // Everything that can be refused is checked before the results directory is touched:
    // files written for a study that is then refused would make its corrected config
    // "another sweep".
    let plan = plan(config, base)?;
    let plugins = plugins(config, registry)?;
    let options = BackendOptions {
        plugin: config.plugins.backend.clone(),
        threads: config.threads,
        verify: true,
        params: config.plugins.backend_params.clone(),
    };

    // The units of this shard, by checkpoint.
    let mut units: Vec<UnitRef> = Vec::new();
    let mut index = 0;
    for (m, (dir, _)) in plan.models.iter().enumerate() {
        for (i, item) in plan.items.iter().enumerate() {
            if index % shard.count == shard.index {
                units.push(UnitRef {
                    model: m,
                    item: i,
                    key: format!("{}/{}", checkpoint_name(dir), item.key()),
                });
            }
            index += 1;
        }
    }
    // A new sweep opens its first checkpoint (the backend and its parameters) before
    // writing anything; a resume was checked so when it started.
    let mut opened: Option<(usize, Model)> = None;
    if !out.join(CONFIG_FILE).exists()
        && let Some(first) = units.first()
    {
        let (dir, manifest) = &plan.models[first.model];
        if config.verify {
            // Every byte read now; the backend's own check then finds the hashes just made.
            manifest.verify_full(dir)?;
        }
        let model = Model::open(registry, dir, &options)?;
        opened = Some((first.model, model));
    }

    let mut writer = ResultsWriter::open(out)?;
    // The stored config identifies the sweep, its paths resolved (the same study spelled
    // with relative or absolute paths is one sweep; results written before paths were
    // resolved hold them as written); the thread count and the target batch do not change
    // results (beyond float rounding), so a resume or a shard on another machine may use
    // others.
    let as_written = SweepConfig {
        threads: 0,
        target_batch: crate::config::DEFAULT_TARGET_BATCH,
        verify: false,
        ..config.clone()
    };
    let stored = as_written.resolved(base);
    store_or_check(
        out,
        CONFIG_FILE,
        &stored.to_toml(),
        &[&as_written.to_toml()],
    )?;
    run_file(&stored, &plan, shard).write_or_check(out, &[run_file(&as_written, &plan, shard)])?;
    let records = prompt_records(&plan);
    // Results directories written before prompts recorded their tokenizer still resume.
    let legacy: Vec<PromptRecord> = records
        .iter()
        .map(|r| PromptRecord {
            tokenizer: None,
            ..r.clone()
        })
        .collect();
    store_or_check(
        out,
        PROMPTS_FILE,
        &prompts_text(&records),
        &[&prompts_text(&legacy)],
    )?;
    let total = units.len();
    let resumed = units.iter().filter(|u| writer.is_done(&u.key)).count();
    let mut done = resumed;
    let mut ran = 0;
    for (m, (dir, manifest)) in plan.models.iter().enumerate() {
        let todo: Vec<&UnitRef> = units
            .iter()
            .filter(|u| u.model == m && !writer.is_done(&u.key))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let mut model = match opened.take() {
            Some((first, model)) if first == m => model,
            _ => {
                if config.verify {
                    // Every byte read now; the backend's own check then finds the hashes
                    // just made.
                    manifest.verify_full(dir)?;
                }
                Model::open(registry, dir, &options)?
            }
        };
        let mut prefixes = PrefixCache::new();
        let stops = stops_from(&plan.pieces, &model, config.stop);
        let per_batch = units_per_batch(config, &model, &plan, &todo);
        let ctx = Units {
            config,
            plan: &plan,
            plugins: &plugins,
            checkpoint: Checkpoint {
                name: checkpoint_name(dir),
                step: manifest.step,
                hash: manifest.content_hash(),
                stops,
            },
        };
        for group in todo.chunks(per_batch) {
            let started = std::time::Instant::now();
            let items: Vec<(&Item, &str)> = group
                .iter()
                .map(|u| (&plan.items[u.item], u.key.as_str()))
                .collect();
            let unit_rows = ctx.run(&mut model, &mut prefixes, &items)?;
            // The batch's compute, shared evenly by its units.
            let computed = started.elapsed().as_secs_f64();
            for (unit, rows) in group.iter().zip(unit_rows) {
                let written = std::time::Instant::now();
                writer.append_unit(&rows)?;
                Timing {
                    batch: group.len(),
                    seconds: computed / group.len() as f64,
                    unit: unit.key.clone(),
                    write_seconds: written.elapsed().as_secs_f64(),
                }
                .append(out)?;
                done += 1;
                ran += 1;
                progress(&Progress {
                    done,
                    total,
                    resumed,
                    checkpoint: ctx.checkpoint.name.clone(),
                });
            }
        }
    }
    Ok(Outcome {
        ran,
        resumed,
        total,
        warnings: plan.warnings.clone(),
    })
}

/// `run.json` of a sweep, or of its shard `shard`.
fn run_file(config: &SweepConfig, plan: &Plan, shard: Shard) -> RunFile {
    RunFile {
        format_version: RUN_FORMAT_VERSION,
        shard: (shard.count > 1).then_some(ShardRecord {
            count: shard.count,
            index: shard.index,
        }),
        models: plan
            .models
            .iter()
            .map(|(d, m)| ModelEntry {
                architecture: m.architecture.clone(),
                checkpoint: checkpoint_name(d),
                hash: m.content_hash(),
                step: m.step,
            })
            .collect(),
        study: Some(Study {
            concepts: config.concepts.clone(),
            pairs: match config.prompts {
                // The pairs the prompt set holds, in its order (the config's are not used).
                Some(_) => {
                    let mut pairs: Vec<[String; 2]> = Vec::new();
                    for item in &plan.items {
                        let pair = [item.in_lang.to_string(), item.out_lang.to_string()];
                        if !pairs.contains(&pair) {
                            pairs.push(pair);
                        }
                    }
                    pairs
                }
                None => config.pairs.clone(),
            },
        }),
    }
}

/// The records of `prompts.jsonl`: each target with the token sets behind its probability
/// columns, then its sources by setting.
fn prompt_records(plan: &Plan) -> Vec<PromptRecord> {
    let mut records = Vec::new();
    for item in &plan.items {
        let key = item.key();
        let mut target = item.target.record(&key, Role::Target, None);
        target.tokenizer = Some(plan.tokenizer.clone());
        target.metric_ids = Some(
            metric_sets(&plan.study, &plan.tokens, item)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        records.push(target);
        for (setting, list) in &item.sources {
            for p in list {
                let mut record = p.record(&key, Role::Source, Some(*setting));
                record.tokenizer = Some(plan.tokenizer.clone());
                records.push(record);
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// What a sweep fixes before any model runs: the series, the concepts, the config as
    /// stored, the run description and every prompt.
    fn resolved(config: &SweepConfig, base: &Path) -> (Vec<PathBuf>, Vec<String>, String, String) {
        let plan = plan(config, base).unwrap();
        let concepts = plan.table.concepts().iter().map(|c| c.id.clone()).collect();
        let dirs = plan.models.iter().map(|(d, _)| d.clone()).collect();
        let prompts = prompts_text(&prompt_records(&plan));
        let run = run_file(config, &plan, Shard::default()).to_text();
        (dirs, concepts, config.to_toml(), run + &prompts)
    }

    #[test]
    fn an_empty_config_file_is_the_study_of_no_config_file() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty.toml");
        std::fs::write(&file, "").unwrap();
        let empty = resolved(&SweepConfig::read(&file).unwrap(), &repo);
        let none = resolved(&SweepConfig::default(), &repo);
        // The fixture series is studied on the concepts it was trained on.
        let listed = SweepConfig::default().concept_ids(&repo).unwrap().unwrap();
        assert_eq!(none.1.len(), listed.len());
        assert_eq!(empty, none);
    }
}
