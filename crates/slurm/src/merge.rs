//! Joining the tasks' results into the study's, as one sweep of the whole config would have
//! written them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use xlpatch_core::config::SweepConfig;
use xlpatch_core::results::{ResultsWriter, Row, TIMINGS_FILE, read_rows};

use crate::plan::{Study, stored};
use crate::{Error, io};

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Merges the results of every task of `study` into its `results/` directory (written
/// beside and renamed into place when complete). Refuses when a task is incomplete, when a
/// task ran another config, another prompt set or a checkpoint whose content hash is not the
/// job table's, and when the study was merged already. Returns the number of rows.
pub fn merge(study: &Study) -> Result<usize, Error> {
    let out = study.results_dir();
    if out.exists() {
        return Err(Error::Config(format!(
            "{} exists: the study is merged already",
            out.display()
        )));
    }
    let status = study.status()?;
    let missing: Vec<(usize, String)> = status
        .iter()
        .filter(|s| !s.complete())
        .map(|s| {
            (
                s.task.index,
                format!(
                    "{}, {} of {} units",
                    s.task.describe(),
                    s.done,
                    s.task.units
                ),
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(Error::Incomplete {
            study: study.dir.clone(),
            total: study.tasks.len(),
            missing,
        });
    }
    let hashes: BTreeMap<&str, &str> = study
        .checkpoints
        .iter()
        .map(|c| (c.name.as_str(), c.hash.as_str()))
        .collect();
    let first = &study.tasks[0].out;
    let prompts = read(&first.join("prompts.jsonl"))?;
    let mut units: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut models: BTreeMap<String, Value> = BTreeMap::new();
    let mut run_json: Option<Value> = None;
    let mut timings = String::new();
    for t in &study.tasks {
        let mismatch = |what: String| Error::Mismatch {
            path: t.out.clone(),
            what,
        };
        let config = SweepConfig::read(&t.out.join("config.toml"))?;
        let expected = SweepConfig {
            models: vec![
                study
                    .checkpoints
                    .iter()
                    .find(|c| c.name == t.checkpoint)
                    .map(|c| c.dir.display().to_string())
                    .unwrap_or_default(),
            ],
            ..stored(&study.config)
        };
        if config != expected {
            return Err(mismatch(format!(
                "its config.toml is not the study's config for {} ({}): the task ran another \
                 sweep; remove the directory and resubmit the task",
                t.checkpoint,
                t.config.display()
            )));
        }
        if read(&t.out.join("prompts.jsonl"))? != prompts {
            return Err(mismatch(format!(
                "its prompt set differs from {}'s",
                first.display()
            )));
        }
        let run: Value = serde_json::from_str(&read(&t.out.join("run.json"))?)
            .map_err(|e| mismatch(format!("run.json: {e}")))?;
        let model = run["models"]
            .as_array()
            .filter(|m| m.len() == 1)
            .map(|m| m[0].clone())
            .ok_or_else(|| mismatch("run.json does not describe one checkpoint".into()))?;
        // A task runs shard k/n of its checkpoint (a whole one records none).
        let want_shard = (t.shards > 1).then(|| json!({"count": t.shards, "index": t.shard}));
        if run.get("shard") != want_shard.as_ref() {
            let found = run.get("shard").map_or("no shard".to_string(), |s| {
                format!("shard {}/{}", s["index"], s["count"])
            });
            return Err(mismatch(format!(
                "it holds {found} of {}, but the job table gives it shard {}/{}: remove the \
                 directory and resubmit the task",
                t.checkpoint, t.shard, t.shards
            )));
        }
        let hash = model["hash"].as_str().unwrap_or("");
        let want = hashes.get(t.checkpoint.as_str()).copied().unwrap_or("");
        if hash != want {
            return Err(mismatch(format!(
                "checkpoint {} has model hash {hash} here but {want} in the job table: it \
                 changed after the study was planned; plan a new study (or restore the \
                 checkpoint) rather than mix two models",
                t.checkpoint
            )));
        }
        models.insert(t.checkpoint.clone(), model);
        run_json.get_or_insert(run);
        for row in read_rows(&t.out)? {
            units.entry(row.unit.clone()).or_default().push(row);
        }
        if let Ok(text) = std::fs::read_to_string(t.out.join(TIMINGS_FILE)) {
            timings.push_str(&text);
        }
    }
    // A single sweep's order: checkpoints by step, then the prompt set's targets.
    let mut items = Vec::new();
    for line in prompts.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| Error::Mismatch {
            path: first.join("prompts.jsonl"),
            what: e.to_string(),
        })?;
        if v["role"] == "target" {
            items.push(v["item"].as_str().unwrap_or_default().to_string());
        }
    }
    let tmp = study.dir.join(".results-merging");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let mut writer = ResultsWriter::open(&tmp)?;
    let mut n = 0;
    for c in &study.checkpoints {
        for item in &items {
            let key = format!("{}/{item}", c.name);
            let rows = units.remove(&key).ok_or_else(|| Error::Mismatch {
                path: study.dir.join("tasks").join(&c.name),
                what: format!("no task holds unit {key}"),
            })?;
            n += rows.len();
            writer.append_unit(&rows)?;
        }
    }
    drop(writer);
    if let Some(extra) = units.keys().next() {
        return Err(Error::Mismatch {
            path: study.dir.join("tasks"),
            what: format!("unit {extra} is not in the study's plan"),
        });
    }
    let mut run = run_json.expect("a study has a task");
    // The merge is the whole study, not the first task's shard.
    if let Some(fields) = run.as_object_mut() {
        fields.remove("shard");
    }
    run["models"] = Value::Array(
        study
            .checkpoints
            .iter()
            .map(|c| models[&c.name].clone())
            .collect(),
    );
    let write = |name: &str, text: &str| {
        let p = tmp.join(name);
        std::fs::write(&p, text).map_err(io(&p))
    };
    write("config.toml", &stored(&study.config).to_toml())?;
    write(
        "run.json",
        &(serde_json::to_string_pretty(&run).expect("json") + "\n"),
    )?;
    write("prompts.jsonl", &prompts)?;
    write(TIMINGS_FILE, &timings)?;
    std::fs::rename(&tmp, &out).map_err(io(&out))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde_json::json;
    use xlpatch_core::config::SweepConfig;
    use xlpatch_core::results::{ResultsWriter, Row};

    use super::merge;
    use crate::plan::{Runtime, SlurmConfig, Study, plan, stored};

    fn row(unit: &str, checkpoint: &str, j: usize) -> Row {
        Row {
            unit: unit.into(),
            unit_rows: 2,
            checkpoint: checkpoint.into(),
            step: None,
            model_hash: "h".into(),
            variant: xlpatch_results::Variant::FromLayer,
            setting: xlpatch_results::Setting::Tgt,
            in_lang: "fr".into(),
            out_lang: "de".into(),
            source: "s".into(),
            target: "t".into(),
            start_layer: j,
            n_sources: 1,
            p_src_out: 0.5,
            p_tgt_out: 0.25,
            p_src_in: 0.0,
            p_tgt_in: 0.0,
            p_src_other: 0.0,
            p_tgt_other: 0.0,
            p_src_out_aug: 0.5,
            p_tgt_out_aug: 0.25,
            rank_src_out: 1,
            rank_tgt_out: 2,
            gen_src: false,
            gen_tgt: true,
            generation: "x".into(),
            generation_ids: vec![1],
            per_lang: BTreeMap::new(),
        }
    }

    /// A study of two checkpoints with two targets each, one task per checkpoint, whose
    /// results are written by hand (units in reverse order), as a task would leave them.
    fn study(dir: &Path) -> Study {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = SweepConfig {
            models: vec![
                "fixtures/series/export/step_16".into(),
                "fixtures/series/export/step_0".into(),
            ],
            pairs: vec![["fr".into(), "de".into()]],
            concept_pairs: 2,
            ..SweepConfig::default()
        };
        let runtime = Runtime {
            xlpatch: "/x".into(),
            plugin_dirs: Vec::new(),
            ort_dylib: None,
        };
        let study = plan(&config, &repo, dir, &SlurmConfig::default(), &runtime, 1001).unwrap();
        let items = ["fr-de/a>b", "fr-de/c>d"];
        let prompts: String = items
            .iter()
            .map(|i| json!({"item": i, "role": "target"}).to_string() + "\n")
            .collect();
        for (t, c) in study.tasks.iter().zip(&study.checkpoints) {
            let mut w = ResultsWriter::open(&t.out).unwrap();
            for item in items.iter().rev() {
                let unit = format!("{}/{item}", c.name);
                w.append_unit(&[row(&unit, &c.name, 0), row(&unit, &c.name, 1)])
                    .unwrap();
            }
            let one = SweepConfig {
                models: vec![c.dir.display().to_string()],
                ..stored(&study.config)
            };
            std::fs::write(t.out.join("config.toml"), one.to_toml()).unwrap();
            std::fs::write(t.out.join("prompts.jsonl"), &prompts).unwrap();
            let run =
                json!({"format_version": 1, "models": [{"checkpoint": c.name, "hash": c.hash}]});
            std::fs::write(t.out.join("run.json"), run.to_string()).unwrap();
        }
        study
    }

    fn units(dir: &Path) -> Vec<String> {
        let mut u: Vec<String> = xlpatch_core::results::read_rows(dir)
            .unwrap()
            .into_iter()
            .map(|r| r.unit)
            .collect();
        u.dedup();
        u
    }

    #[test]
    fn merge_orders_units_as_one_sweep_and_refuses_another_config() {
        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path());
        assert_eq!(merge(&s).unwrap(), 8);
        // Checkpoints by step, then the prompt set's order.
        assert_eq!(
            units(&s.results_dir()),
            [
                "step_0/fr-de/a>b",
                "step_0/fr-de/c>d",
                "step_16/fr-de/a>b",
                "step_16/fr-de/c>d"
            ]
        );
        let run: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(s.results_dir().join("run.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(run["models"][1]["checkpoint"], "step_16");
        let err = merge(&s).unwrap_err().to_string();
        assert!(err.contains("merged already"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path());
        let file = s.tasks[1].out.join("config.toml");
        let other = std::fs::read_to_string(&file)
            .unwrap()
            .replace("seed = 0", "seed = 1");
        std::fs::write(&file, other).unwrap();
        let err = merge(&s).unwrap_err().to_string();
        assert!(
            err.contains("is not the study's config for step_16"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path());
        std::fs::remove_file(s.tasks[0].out.join("results.jsonl")).unwrap();
        let err = merge(&s).unwrap_err().to_string();
        assert!(
            err.contains("1 of 2 tasks are incomplete (0: step_0 shard 0/1, 0 of 2 units)"),
            "{err}"
        );
        assert!(!s.results_dir().exists());

        // A task directory holding another shard than the job table gives it.
        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path());
        let c = &s.checkpoints[1];
        let run = json!({"format_version": 1, "models": [{"checkpoint": c.name, "hash": c.hash}],
            "shard": {"count": 2, "index": 1}});
        std::fs::write(s.tasks[1].out.join("run.json"), run.to_string()).unwrap();
        let err = merge(&s).unwrap_err().to_string();
        assert!(
            err.contains("holds shard 1/2") && err.contains("job table gives it shard 0/1"),
            "{err}"
        );
        assert!(!s.results_dir().exists());
    }
}
