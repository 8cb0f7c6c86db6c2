//! The job table: a study's checkpoints and tasks, where everything lives, and the status of
//! each task from the results on disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xlpatch_core::config::{DEFAULT_TARGET_BATCH, SweepConfig};

use crate::{Error, io, script};

/// The job table's file in a study directory.
pub(crate) const STUDY_FILE: &str = "study.json";
/// The job table as the array scripts read it: `index, checkpoint, shard, config, out`,
/// tab-separated, one task a line.
pub(crate) const TASKS_FILE: &str = "tasks.tsv";
/// Submitted jobs, one submission a line.
pub(crate) const JOBS_FILE: &str = "jobs.jsonl";
/// The merged results, inside the study directory.
pub(crate) const RESULTS_DIR: &str = "results";

/// How the study runs on the cluster: the resources of each task and how the sweep is cut.
/// Read from a TOML file (every key optional, unknown keys refused); flags override it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// Tasks per checkpoint (each runs shard `k/shards` of that checkpoint's targets).
    pub shards: usize,
    /// Array tasks running at once (`%M` of `--array`).
    pub concurrency: usize,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` of each task (and of the merge job).
    pub time: Option<String>,
    /// `--mem` of each task.
    pub mem: Option<String>,
    /// `--cpus-per-task`; the sweep runs as many backend threads.
    pub cpus_per_task: usize,
    /// `--gpus` of each task (none when absent).
    pub gpus: Option<u32>,
    /// Further `#SBATCH` options, verbatim (e.g. `--qos=normal`).
    pub extra: Vec<String>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            shards: 1,
            concurrency: 8,
            partition: None,
            account: None,
            time: None,
            mem: None,
            cpus_per_task: 1,
            gpus: None,
            extra: Vec::new(),
        }
    }
}

impl SlurmConfig {
    /// Reads a cluster config file.
    pub fn read(path: &Path) -> Result<SlurmConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    fn validate(&self) -> Result<(), Error> {
        if self.shards == 0 || self.concurrency == 0 || self.cpus_per_task == 0 {
            return Err(Error::Config(
                "shards, concurrency and cpus_per_task must be at least 1".into(),
            ));
        }
        let fields = [&self.partition, &self.account, &self.time, &self.mem];
        let texts = fields.into_iter().flatten().chain(&self.extra);
        if let Some(bad) = texts.into_iter().find(|t| t.contains(['\n', '\r'])) {
            return Err(Error::Config(format!(
                "the Slurm option {bad:?} spans lines; give one option per entry"
            )));
        }
        Ok(())
    }
}

/// What the tasks run: the `xlpatch` binary, its plugin directories and ONNX Runtime's
/// library, all absolute (compute nodes see the shared filesystem, not the submitting shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The `xlpatch` executable.
    pub xlpatch: PathBuf,
    /// Plugin directories passed as `--plugin-dir`.
    pub plugin_dirs: Vec<PathBuf>,
    /// `ORT_DYLIB_PATH` exported to the tasks, if set.
    pub ort_dylib: Option<PathBuf>,
}

/// A checkpoint of the study.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its directory name (the `checkpoint` column of the results).
    pub name: String,
    /// Its model directory.
    pub dir: PathBuf,
    /// The training step of its manifest.
    pub step: Option<u64>,
    /// The content hash of its manifest when the study was planned.
    pub hash: String,
}

/// One array task: shard `shard` of `shards` of one checkpoint's targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its index in the job table (the array index plus its array's offset).
    pub index: usize,
    /// The checkpoint's name.
    pub checkpoint: String,
    /// Which shard.
    pub shard: usize,
    /// Of how many.
    pub shards: usize,
    /// Its units (targets of the checkpoint in the shard).
    pub units: usize,
    /// The config it runs.
    pub config: PathBuf,
    /// Its results directory.
    pub out: PathBuf,
}

impl Task {
    /// `checkpoint shard k/n`, for messages.
    pub fn describe(&self) -> String {
        format!("{} shard {}/{}", self.checkpoint, self.shard, self.shards)
    }
}

/// One array job: the tasks `offset .. offset + len` of the table, as array indices `0..len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Array {
    /// Its sbatch script.
    pub script: PathBuf,
    /// The job-table index of its array index 0.
    pub offset: usize,
    /// How many tasks.
    pub len: usize,
}

/// A planned study: the job table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    /// The format of this file.
    pub format_version: u32,
    /// The study directory (absolute).
    pub dir: PathBuf,
    /// The job name of its jobs.
    pub name: String,
    /// What the tasks run.
    pub runtime: Runtime,
    /// Resources and cut.
    pub slurm: SlurmConfig,
    /// The cluster's `MaxArraySize` when planned.
    pub max_array_size: usize,
    /// Targets per checkpoint.
    pub targets: usize,
    /// The study's config (every path absolute).
    pub config: SweepConfig,
    /// The checkpoints, by training step.
    pub checkpoints: Vec<Checkpoint>,
    /// The tasks.
    pub tasks: Vec<Task>,
    /// The array jobs.
    pub arrays: Vec<Array>,
    /// The merge job's script.
    pub merge_script: PathBuf,
}

/// How far a task is, from its results on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task.
    pub task: Task,
    /// Its complete units on disk.
    pub done: usize,
}

impl TaskStatus {
    /// Whether every unit of the task is on disk.
    pub fn complete(&self) -> bool {
        self.done >= self.task.units
    }
}

/// The config as a task stores it beside its results: the thread count and the target batch
/// do not change results, so `xlpatch sweep` stores them as defaults.
pub(crate) fn stored(config: &SweepConfig) -> SweepConfig {
    SweepConfig {
        threads: 0,
        target_batch: DEFAULT_TARGET_BATCH,
        ..config.clone()
    }
}

/// Plans `config` (relative paths taken from `base`) as a study in `dir`: one task per
/// checkpoint and shard, split into arrays of at most `max_array_size` tasks. Nothing is
/// written (see [`Study::write`]).
pub fn plan(
    config: &SweepConfig,
    base: &Path,
    dir: &Path,
    slurm: &SlurmConfig,
    runtime: &Runtime,
    max_array_size: usize,
) -> Result<Study, Error> {
    config.validate()?;
    slurm.validate()?;
    if max_array_size == 0 {
        return Err(Error::Config("MaxArraySize must be at least 1".into()));
    }
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let text_ok = |p: &Path| !p.to_string_lossy().contains(['\t', '\n', '\r']);
    if !text_ok(&dir) {
        return Err(Error::Config(format!(
            "the study directory {:?} has a tab or a line break in its path",
            dir.display()
        )));
    }
    // Paths as `xlpatch sweep` stores them, so a task's stored config is the study's.
    let config = config.resolved(base);
    let targets = match &config.prompts {
        // A replayed prompt set has one target record per target.
        Some(file) => {
            let path = Path::new(file);
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            let mut n = 0;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Io {
                    path: path.to_path_buf(),
                    what: format!("line {}: {e}", i + 1),
                })?;
                n += usize::from(v.get("role").and_then(|r| r.as_str()) == Some("target"));
            }
            n
        }
        // Every target pair draws exactly `concept_pairs` pairs (or the sweep fails).
        None => config.pairs.len() * config.concept_pairs,
    };
    if targets == 0 {
        return Err(Error::Config("the study has no target prompt".into()));
    }
    let mut checkpoints = Vec::new();
    let mut names = BTreeSet::new();
    for model in config.model_dirs(Path::new("/"))? {
        let manifest = xlpatch_model::Manifest::read(&model)?;
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !names.insert(name.clone()) || !text_ok(&model) || name.is_empty() {
            return Err(Error::Config(format!(
                "checkpoint {}: names must be unique directory names without tabs or line breaks \
                 (results name checkpoints by directory)",
                model.display()
            )));
        }
        checkpoints.push(Checkpoint {
            name,
            dir: model,
            step: manifest.step,
            hash: manifest.content_hash(),
        });
    }
    if checkpoints.is_empty() {
        return Err(Error::Config("the study has no checkpoint".into()));
    }
    let shards = slurm.shards.min(targets);
    let mut tasks = Vec::new();
    for c in &checkpoints {
        for k in 0..shards {
            tasks.push(Task {
                index: tasks.len(),
                checkpoint: c.name.clone(),
                shard: k,
                shards,
                // `xlpatch sweep --shard k/n` of a one-checkpoint config takes the targets
                // whose index is k modulo n.
                units: (targets - k).div_ceil(shards),
                config: dir.join("configs").join(format!("{}.toml", c.name)),
                out: dir
                    .join("tasks")
                    .join(&c.name)
                    .join(format!("shard-{k}-of-{shards}")),
            });
        }
    }
    let arrays = (0..tasks.len())
        .step_by(max_array_size)
        .enumerate()
        .map(|(i, offset)| Array {
            script: dir.join(format!("array-{i}.sbatch")),
            offset,
            len: max_array_size.min(tasks.len() - offset),
        })
        .collect();
    let name = format!(
        "xlpatch-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "study".into())
    );
    let mut slurm = slurm.clone();
    slurm.shards = shards;
    Ok(Study {
        format_version: 1,
        merge_script: dir.join("merge.sbatch"),
        dir,
        name,
        runtime: runtime.clone(),
        slurm,
        max_array_size,
        targets,
        config,
        checkpoints,
        tasks,
        arrays,
    })
}

impl Study {
    /// Writes the job table, the configs and the scripts into the study directory. A
    /// directory whose study was submitted already is refused.
    pub fn write(&self) -> Result<(), Error> {
        if self.dir.join(JOBS_FILE).exists() {
            return Err(Error::Config(format!(
                "{} was submitted already; use `xlpatch slurm status` and `xlpatch slurm \
                 resubmit`, or plan the study into another directory",
                self.dir.display()
            )));
        }
        for sub in ["configs", "logs", "tasks"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        let write = |path: &Path, text: &str| std::fs::write(path, text).map_err(io(path));
        write(&self.dir.join("config.toml"), &self.config.to_toml())?;
        for c in &self.checkpoints {
            let one = SweepConfig {
                models: vec![c.dir.display().to_string()],
                ..self.config.clone()
            };
            write(
                &self.dir.join("configs").join(format!("{}.toml", c.name)),
                &one.to_toml(),
            )?;
        }
        let mut table = String::new();
        for t in &self.tasks {
            table.push_str(&format!(
                "{}\t{}\t{}/{}\t{}\t{}\n",
                t.index,
                t.checkpoint,
                t.shard,
                t.shards,
                t.config.display(),
                t.out.display()
            ));
        }
        write(&self.dir.join(TASKS_FILE), &table)?;
        for a in &self.arrays {
            write(&a.script, &script::array(self, a))?;
        }
        write(&self.merge_script, &script::merge(self))?;
        let json = serde_json::to_string_pretty(self).expect("a study serializes") + "\n";
        write(&self.dir.join(STUDY_FILE), &json)
    }

    /// Reads the job table of the study in `dir`.
    pub fn read(dir: &Path) -> Result<Study, Error> {
        let path = dir.join(STUDY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
            path: path.clone(),
            what: format!("{e} (is this a study directory written by `xlpatch slurm submit`?)"),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Io {
            path,
            what: e.to_string(),
        })
    }

    /// Where the merged results go.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join(RESULTS_DIR)
    }

    /// How far every task is, from the results on disk.
    pub fn status(&self) -> Result<Vec<TaskStatus>, Error> {
        self.tasks
            .iter()
            .map(|t| {
                let done = if t.out.join(xlpatch_core::results::JSONL_FILE).exists() {
                    let rows = xlpatch_core::results::read_rows(&t.out)?;
                    rows.iter()
                        .map(|r| r.unit.as_str())
                        .collect::<BTreeSet<_>>()
                        .len()
                } else {
                    0
                };
                Ok(TaskStatus {
                    task: t.clone(),
                    done,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> Runtime {
        Runtime {
            xlpatch: "/opt/xlpatch/bin/xlpatch".into(),
            plugin_dirs: vec!["/opt/xlpatch/bin/plugins".into()],
            ort_dylib: None,
        }
    }

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn tasks_cover_every_checkpoint_and_shard_and_arrays_respect_max_array_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = SweepConfig {
            concept_pairs: 5,
            ..SweepConfig::default()
        };
        let slurm = SlurmConfig {
            shards: 3,
            concurrency: 2,
            ..SlurmConfig::default()
        };
        let study = plan(&config, &repo(), dir.path(), &slurm, &runtime(), 4).unwrap();
        // 7 checkpoints of the fixture series, 2 pairs × 5 concept pairs = 10 targets each.
        assert_eq!(study.checkpoints.len(), 7);
        assert_eq!(study.targets, 10);
        assert_eq!(study.tasks.len(), 21);
        let units: Vec<usize> = study.tasks[..3].iter().map(|t| t.units).collect();
        assert_eq!(units, [4, 3, 3]);
        let steps: Vec<_> = study.checkpoints.iter().map(|c| c.step).collect();
        let mut sorted = steps.clone();
        sorted.sort();
        assert_eq!(steps, sorted, "checkpoints by training step");
        let arrays: Vec<(usize, usize)> = study.arrays.iter().map(|a| (a.offset, a.len)).collect();
        assert_eq!(arrays, [(0, 4), (4, 4), (8, 4), (12, 4), (16, 4), (20, 1)]);
        study.write().unwrap();
        let table = std::fs::read_to_string(dir.path().join(TASKS_FILE)).unwrap();
        assert_eq!(table.lines().count(), 21);
        assert!(
            table
                .lines()
                .nth(4)
                .unwrap()
                .starts_with("4\tstep_16\t1/3\t")
        );
        assert_eq!(Study::read(dir.path()).unwrap(), study);
        let one = SweepConfig::read(&dir.path().join("configs/step_16.toml")).unwrap();
        assert_eq!(one.models.len(), 1);
        assert!(Path::new(&one.models[0]).is_absolute());
        assert!(Path::new(&one.concepts).is_absolute());
        // Nothing ran: every task is at 0.
        assert!(
            study
                .status()
                .unwrap()
                .iter()
                .all(|s| s.done == 0 && !s.complete())
        );
        // Submitted studies are not overwritten.
        std::fs::write(dir.path().join(JOBS_FILE), "").unwrap();
        assert!(
            study
                .write()
                .unwrap_err()
                .to_string()
                .contains("submitted already")
        );
    }

    #[test]
    fn more_shards_than_targets_are_capped_and_bad_options_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = SweepConfig {
            pairs: vec![["fr".into(), "de".into()]],
            concept_pairs: 2,
            ..SweepConfig::default()
        };
        let slurm = SlurmConfig {
            shards: 5,
            ..SlurmConfig::default()
        };
        let study = plan(&config, &repo(), dir.path(), &slurm, &runtime(), 1001).unwrap();
        assert!(study.tasks.iter().all(|t| t.shards == 2 && t.units == 1));
        let bad = SlurmConfig {
            concurrency: 0,
            ..SlurmConfig::default()
        };
        let err = plan(&config, &repo(), dir.path(), &bad, &runtime(), 1001).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let bad = SlurmConfig {
            extra: vec!["--qos=a\n#SBATCH --x".into()],
            ..SlurmConfig::default()
        };
        let err = plan(&config, &repo(), dir.path(), &bad, &runtime(), 1001).unwrap_err();
        assert!(err.to_string().contains("spans lines"), "{err}");
        let text = "shards = 2\ncpus = 4\n";
        let file = dir.path().join("cluster.toml");
        std::fs::write(&file, text).unwrap();
        let err = SlurmConfig::read(&file).unwrap_err().to_string();
        assert!(
            err.contains("unknown field") && err.contains("cluster.toml"),
            "{err}"
        );
    }
}
