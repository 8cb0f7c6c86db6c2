//! `xlpatch slurm`: a sweep as a Slurm job array (plan, submit, status, resubmit, merge).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use xlpatch_core::config::SweepConfig;
use xlpatch_slurm::{Runtime, Slurm, SlurmConfig, Study, plan, submit};

#[derive(Debug, Subcommand)]
pub(crate) enum SlurmCommand {
    /// Plan a sweep as tasks (one per checkpoint and shard), write the job table and the
    /// sbatch scripts into the study directory, and submit the arrays and the merge job.
    Submit(Box<SubmitArgs>),
    /// Show which tasks are done, from the results on the shared filesystem.
    Status(StudyArgs),
    /// Submit the incomplete tasks again (they resume), with a new merge job.
    Resubmit(ResubmitArgs),
    /// Join the tasks' results into `<study>/results` (what the merge job runs).
    Merge(StudyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The sweep's TOML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The study directory, on a filesystem the compute nodes share.
    #[arg(long, value_name = "DIR")]
    study: PathBuf,
    /// A TOML file of Slurm settings (keys: shards, concurrency, partition, account, time,
    /// mem, cpus_per_task, gpus, extra); the flags below override it.
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Tasks per checkpoint.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Array tasks running at once (`%M`).
    #[arg(long, value_name = "M")]
    concurrency: Option<usize>,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm account.
    #[arg(long)]
    account: Option<String>,
    /// Time limit per task (Slurm's format, e.g. 02:00:00).
    #[arg(long)]
    time: Option<String>,
    /// Memory per task (e.g. 16G).
    #[arg(long)]
    mem: Option<String>,
    /// CPUs per task (the sweep's backend threads).
    #[arg(long, value_name = "N")]
    cpus_per_task: Option<usize>,
    /// GPUs per task.
    #[arg(long, value_name = "N")]
    gpus: Option<u32>,
    /// The cluster's MaxArraySize (default: read from `scontrol show config`; 1001, Slurm's
    /// default, for a dry run without Slurm).
    #[arg(long, value_name = "N")]
    max_array_size: Option<usize>,
    /// Write the job table and scripts and print the sbatch commands, submit nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StudyArgs {
    /// The study directory.
    #[arg(long, value_name = "DIR")]
    study: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ResubmitArgs {
    /// The study directory.
    #[arg(long, value_name = "DIR")]
    study: PathBuf,
    /// Print the sbatch commands, submit nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(cmd: SlurmCommand, plugin_dirs: &[PathBuf]) -> Result<()> {
    match cmd {
        SlurmCommand::Submit(args) => submit_study(*args, plugin_dirs),
        SlurmCommand::Status(args) => status(&args.study),
        SlurmCommand::Resubmit(args) => resubmit(&args.study, args.dry_run),
        SlurmCommand::Merge(args) => {
            let study = Study::read(&args.study)?;
            let n = xlpatch_slurm::merge(&study)?;
            println!(
                "merged {} tasks, {n} rows, into {}",
                study.tasks.len(),
                study.results_dir().display()
            );
            Ok(())
        }
    }
}

/// The binary, plugin directories and ONNX Runtime library the tasks use, absolute.
fn runtime(plugin_dirs: &[PathBuf]) -> Result<Runtime> {
    let exe = std::env::current_exe().context("cannot find the xlpatch executable")?;
    let (dirs, _, _) = xlpatch_core::plugins::discover(plugin_dirs);
    let plugin_dirs = dirs
        .into_iter()
        .filter(|d| d.is_dir())
        .map(|d| std::path::absolute(&d).with_context(|| format!("{}", d.display())))
        .collect::<Result<_>>()?;
    let ort_dylib = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) => Some(std::path::absolute(PathBuf::from(p)).context("ORT_DYLIB_PATH")?),
        None => None,
    };
    Ok(Runtime {
        xlpatch: exe,
        plugin_dirs,
        ort_dylib,
    })
}

fn submit_study(args: SubmitArgs, plugin_dirs: &[PathBuf]) -> Result<()> {
    let config = SweepConfig::read(&args.config)?;
    let base = args
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut slurm = match &args.cluster {
        Some(file) => SlurmConfig::read(file)?,
        None => SlurmConfig::default(),
    };
    let set = |field: &mut Option<String>, v: &Option<String>| {
        if v.is_some() {
            field.clone_from(v);
        }
    };
    set(&mut slurm.partition, &args.partition);
    set(&mut slurm.account, &args.account);
    set(&mut slurm.time, &args.time);
    set(&mut slurm.mem, &args.mem);
    slurm.shards = args.shards.unwrap_or(slurm.shards);
    slurm.concurrency = args.concurrency.unwrap_or(slurm.concurrency);
    slurm.cpus_per_task = args.cpus_per_task.unwrap_or(slurm.cpus_per_task);
    slurm.gpus = args.gpus.or(slurm.gpus);
    // The plugins the sweep names must load here, as the tasks will load them.
    let (_, registry, refused) = xlpatch_core::plugins::discover(plugin_dirs);
    let p = &config.plugins;
    for name in [&p.backend, &p.patch, &p.extractor, &p.metric] {
        if registry.get(name).is_err() {
            bail!(
                "plugin {name} is not found (refused: {refused:?}); build the plugins or pass \
                 --plugin-dir"
            );
        }
    }
    let cluster = Slurm;
    let max_array_size = match (args.max_array_size, args.dry_run) {
        (Some(n), _) => n,
        (None, true) => 1001,
        (None, false) => cluster.max_array_size()?,
    };
    let study = plan(
        &config,
        &base,
        &args.study,
        &slurm,
        &runtime(plugin_dirs)?,
        max_array_size,
    )?;
    study.write()?;
    let all: Vec<usize> = (0..study.tasks.len()).collect();
    let sub = submit(&study, &all, (!args.dry_run).then_some(&cluster))?;
    println!(
        "{} tasks ({} checkpoints × {} shards, {} targets each) in {} array job(s) of at most \
         {max_array_size}, {} at once; job table and scripts in {}",
        study.tasks.len(),
        study.checkpoints.len(),
        study.slurm.shards,
        study.targets,
        sub.arrays.len(),
        study.slurm.concurrency,
        study.dir.display()
    );
    report(&sub, args.dry_run);
    Ok(())
}

fn report(sub: &xlpatch_slurm::Submission, dry_run: bool) {
    if dry_run {
        println!("dry run; would run:");
        for c in &sub.commands {
            println!("  {c}");
        }
    } else {
        println!("arrays {}, merge job {}", sub.arrays.join(" "), sub.merge);
    }
}

fn status(dir: &Path) -> Result<()> {
    let study = Study::read(dir)?;
    let status = study.status()?;
    let (mut units, mut done_units, mut done) = (0, 0, 0);
    for s in &status {
        units += s.task.units;
        done_units += s.done.min(s.task.units);
        done += usize::from(s.complete());
        let state = if s.complete() {
            "done"
        } else if s.done > 0 {
            "partial"
        } else {
            "missing"
        };
        println!(
            "{:>5}  {:<8} {:<24} {}/{} units",
            s.task.index,
            state,
            s.task.describe(),
            s.done,
            s.task.units
        );
    }
    let merged = study.results_dir().join("results.jsonl").exists();
    println!(
        "{done}/{} tasks done, {done_units}/{units} units; {}",
        status.len(),
        if merged {
            format!("merged into {}", study.results_dir().display())
        } else {
            "not merged".to_string()
        }
    );
    Ok(())
}

fn resubmit(dir: &Path, dry_run: bool) -> Result<()> {
    let study = Study::read(dir)?;
    let missing: Vec<usize> = study
        .status()?
        .iter()
        .filter(|s| !s.complete())
        .map(|s| s.task.index)
        .collect();
    if missing.is_empty() {
        bail!(
            "every task of {} is complete; `xlpatch slurm merge --study {}` merges them",
            study.dir.display(),
            study.dir.display()
        );
    }
    let cluster = Slurm;
    let subs = study.submissions()?;
    if !dry_run && !subs.is_empty() {
        let arrays: Vec<String> = subs.iter().flat_map(|s| s.arrays.clone()).collect();
        let queued = cluster.queued(&arrays)?;
        if !queued.is_empty() {
            let list: Vec<String> = queued
                .iter()
                .map(|(id, st, _)| format!("{id} {st}"))
                .collect();
            bail!(
                "tasks of this study are still queued or running ({}); wait for them or scancel \
                 them, then resubmit",
                list.join(", ")
            );
        }
        // Earlier merge jobs wait on arrays that failed; they would never run.
        let merges: Vec<String> = subs.iter().map(|s| s.merge.clone()).collect();
        let waiting: Vec<String> = cluster
            .queued(&merges)?
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        cluster.cancel(&waiting)?;
    }
    let sub = submit(&study, &missing, (!dry_run).then_some(&cluster))?;
    println!(
        "{} incomplete task(s) resubmitted: {}",
        missing.len(),
        xlpatch_slurm::array_spec(&missing)
    );
    report(&sub, dry_run);
    Ok(())
}
