//! `xlpatch slurm` on a real Slurm: a study over the committed fixture series runs
//! as job arrays (split at the cluster's `MaxArraySize`, at most 2 tasks at once) with a merge
//! job that depends on them, and its merged results equal a single-process sweep byte for
//! byte; a task cancelled with `scancel` in the middle of its units resumes on resubmission
//! without lost or duplicated rows; and a merge refuses a task whose checkpoint changed.
//!
//! The Slurm tests need the one-node cluster of `cargo xtask slurm-up` (`cargo xtask test`
//! brings it up before the tests and down after); `SLURM_CONF` names it, or the tests look
//! where `slurm-up` writes it. Without it they fail and say how to start it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The Slurm tests share one 2-CPU node; run them one at a time so that each one's tasks
/// are scheduled as it expects.
static CLUSTER: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn slurm_conf() -> PathBuf {
    let conf = std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("xlpatch-slurm/slurm.conf"));
    let idle = Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .env("SLURM_CONF", &conf)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert!(
        matches!(idle.as_deref(), Ok("idle" | "mix" | "alloc")),
        "no Slurm cluster answers at {} (sinfo: {idle:?}): start one with `cargo xtask \
         slurm-up` (it installs Debian's slurmctld, slurmd, slurm-client and munge if missing) \
         and export SLURM_CONF as it says; `cargo xtask test` does both",
        conf.display()
    );
    conf
}

fn xlpatch(conf: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlpatch"));
    cmd.env_remove("XLPATCH_PLUGIN_PATH");
    if let Some(conf) = conf {
        cmd.env("SLURM_CONF", conf);
    }
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn plugins_built() {
    let dir = Path::new(env!("CARGO_BIN_EXE_xlpatch"))
        .parent()
        .unwrap()
        .join("plugins");
    assert!(
        dir.is_dir(),
        "{} is missing: run `cargo xtask build-plugins` (`cargo xtask test` does)",
        dir.display()
    );
}

/// A study config over `models` (absolute), fr→de and more, small.
fn write_config(dir: &Path, models: &str, pairs: &str, concept_pairs: usize) -> PathBuf {
    let r = std::path::absolute(repo()).unwrap();
    let path = dir.join("study.toml");
    std::fs::write(
        &path,
        format!(
            "models = [{models:?}]\nconcepts = {:?}\nconcept_list = {:?}\n\
             languages = [\"en\", \"de\", \"fr\", \"es\", \"it\", \"pt\", \"nl\", \"pl\"]\n\
             pairs = {pairs}\nconcept_pairs = {concept_pairs}\nmax_new_tokens = 4\n",
            r.join("fixtures/concepts").display().to_string(),
            r.join("fixtures/series/concepts.txt").display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn squeue(conf: &Path) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T|%r"])
        .env("SLURM_CONF", conf)
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids of the last submission in `jobs.jsonl`: (arrays, merge).
fn last_jobs(study: &Path) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(study.join("jobs.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let arrays = last["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (arrays, last["merge"].as_str().unwrap().to_string())
}

fn logs(study: &Path) -> String {
    let mut out = String::new();
    if let Ok(dir) = std::fs::read_dir(study.join("logs")) {
        for e in dir.flatten() {
            out.push_str(&format!("--- {}\n", e.path().display()));
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

/// Waits until none of `jobs` (or their array tasks) is queued or running; returns the most
/// array tasks seen running at once.
fn wait_gone(conf: &Path, study: &Path, jobs: &[String], limit: Duration) -> usize {
    let start = Instant::now();
    let mut most = 0;
    loop {
        let queue = squeue(conf);
        let ours: Vec<&str> = queue
            .lines()
            .filter(|l| jobs.iter().any(|j| l.split(['_', '|']).next() == Some(j)))
            .collect();
        if ours.is_empty() {
            return most;
        }
        let running = ours
            .iter()
            .filter(|l| l.contains('_') && l.contains("|RUNNING|"))
            .count();
        most = most.max(running);
        assert!(
            !ours.iter().any(|l| l.contains("DependencyNeverSatisfied")),
            "a job can never run: {ours:?}\n{}",
            logs(study)
        );
        assert!(
            start.elapsed() < limit,
            "still queued after {limit:?}: {ours:?}\n{}",
            logs(study)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A single-process sweep of the study's config, compared file by file with the merge.
fn assert_merged_equals_single_sweep(study: &Path) {
    let single = study.with_extension("single");
    ok(xlpatch(None).args([
        "sweep",
        "--config",
        study.join("config.toml").to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
        "--threads",
        "1",
    ]));
    let merged = study.join("results");
    for file in [
        "results.jsonl",
        "results.csv",
        "config.toml",
        "run.json",
        "prompts.jsonl",
    ] {
        let a = std::fs::read_to_string(single.join(file)).unwrap();
        let b = std::fs::read_to_string(merged.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", merged.join(file).display(), logs(study)));
        assert!(
            a == b,
            "{file} of the merge differs from the single sweep's"
        );
    }
    let rows = std::fs::read_to_string(merged.join("results.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(rows > 0);
}

#[test]
fn a_study_runs_as_split_job_arrays_and_merges_into_the_single_process_sweep() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let conf = slurm_conf();
    plugins_built();
    let root = tempfile::tempdir().unwrap();
    let series = std::path::absolute(repo().join("fixtures/series/export/step_*")).unwrap();
    let config = write_config(
        root.path(),
        series.to_str().unwrap(),
        r#"[["fr", "de"]]"#,
        2,
    );
    let study = root.path().join("study");
    let start = Instant::now();
    let out = ok(xlpatch(Some(&conf)).args([
        "slurm",
        "submit",
        "--config",
        config.to_str().unwrap(),
        "--study",
        study.to_str().unwrap(),
        "--concurrency",
        "2",
    ]));
    // 7 checkpoints, one task each; the test cluster's MaxArraySize of 5 splits them.
    assert!(
        out.contains("7 tasks (7 checkpoints × 1 shards") && out.contains("in 2 array job(s)"),
        "{out}"
    );
    let script = std::fs::read_to_string(study.join("array-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-4%2"), "{script}");
    assert!(script.contains("export HF_HUB_OFFLINE=1"), "{script}");
    let (arrays, merge) = last_jobs(&study);
    assert_eq!(arrays.len(), 2);
    let mut all = arrays.clone();
    all.push(merge);
    let most = wait_gone(&conf, &study, &all, Duration::from_secs(600));
    let wall = start.elapsed();
    assert!(most <= 2, "{most} tasks ran at once, the limit is 2");
    let status = ok(xlpatch(None).args(["slurm", "status", "--study", study.to_str().unwrap()]));
    assert!(
        status.contains("7/7 tasks done, 14/14 units; merged"),
        "{status}\n{}",
        logs(&study)
    );
    assert_merged_equals_single_sweep(&study);
    eprintln!(
        "array test: submit to merged results in {:.1} s",
        wall.as_secs_f64()
    );
}

#[test]
fn a_cancelled_task_resumes_on_resubmission_without_lost_or_duplicated_rows() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let conf = slurm_conf();
    plugins_built();
    let root = tempfile::tempdir().unwrap();
    let series = std::path::absolute(repo().join("fixtures/series/export")).unwrap();
    // Two checkpoints (step_0, step_2000), three shards each: 6 tasks of 6 or 7 units.
    let models = series.join("step_*0").display().to_string();
    let config = write_config(root.path(), &models, r#"[["fr", "de"], ["en", "nl"]]"#, 10);
    let study = root.path().join("study");
    let out = ok(xlpatch(Some(&conf)).args([
        "slurm",
        "submit",
        "--config",
        config.to_str().unwrap(),
        "--study",
        study.to_str().unwrap(),
        "--shards",
        "3",
        "--concurrency",
        "2",
    ]));
    assert!(
        out.contains("6 tasks (2 checkpoints × 3 shards, 20 targets each)"),
        "{out}"
    );
    let (arrays, merge) = last_jobs(&study);
    // Cancel task 0 as soon as its first unit is on disk.
    let results = study.join("tasks/step_0/shard-0-of-3/results.jsonl");
    let start = Instant::now();
    loop {
        let rows = std::fs::read_to_string(&results)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if rows > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "task 0 wrote nothing in 300 s\n{}",
            logs(&study)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    ok(Command::new("scancel")
        .arg(format!("{}_0", arrays[0]))
        .env("SLURM_CONF", &conf));
    wait_gone(&conf, &study, &arrays, Duration::from_secs(600));
    let status = ok(xlpatch(None).args(["slurm", "status", "--study", study.to_str().unwrap()]));
    let first = status.lines().next().unwrap();
    assert!(
        first.contains(" partial "),
        "task 0 should have some of its units, not all: {status}"
    );
    assert!(
        status.contains("5/6 tasks done"),
        "{status}\n{}",
        logs(&study)
    );
    // The merge job waits on a cancelled task: it can never run.
    let queue = squeue(&conf);
    assert!(
        queue
            .lines()
            .any(|l| l.starts_with(&format!("{merge}|PENDING"))),
        "the merge job should still wait: {queue}"
    );
    let out =
        ok(xlpatch(Some(&conf)).args(["slurm", "resubmit", "--study", study.to_str().unwrap()]));
    assert!(out.contains("1 incomplete task(s) resubmitted: 0"), "{out}");
    let (arrays2, merge2) = last_jobs(&study);
    assert_eq!(arrays2.len(), 1);
    assert!(
        !squeue(&conf)
            .lines()
            .any(|l| l.starts_with(&format!("{merge}|"))),
        "the old merge job is cancelled"
    );
    let mut all = arrays2;
    all.push(merge2);
    wait_gone(&conf, &study, &all, Duration::from_secs(600));
    let status = ok(xlpatch(None).args(["slurm", "status", "--study", study.to_str().unwrap()]));
    assert!(
        status.contains("6/6 tasks done, 40/40 units; merged"),
        "{status}\n{}",
        logs(&study)
    );
    assert_merged_equals_single_sweep(&study);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn fails(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("the command runs");
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Without Slurm: a dry run writes the scripts, the array script run by hand (as a task) does
/// the work, and both merges refuse a checkpoint that changed between tasks.
#[test]
fn merges_refuse_tasks_whose_checkpoint_changed() {
    plugins_built();
    let root = tempfile::tempdir().unwrap();
    let fixtures = repo().join("fixtures/series/export");
    let series = root.path().join("series");
    copy_dir(&fixtures.join("step_0"), &series.join("step_0"));
    copy_dir(&fixtures.join("step_16"), &series.join("step_16"));
    let config = write_config(
        root.path(),
        series.join("step_*").to_str().unwrap(),
        r#"[["fr", "de"]]"#,
        2,
    );
    let study = root.path().join("study");
    let out = ok(xlpatch(None).args([
        "slurm",
        "submit",
        "--dry-run",
        "--config",
        config.to_str().unwrap(),
        "--study",
        study.to_str().unwrap(),
        "--shards",
        "2",
        "--max-array-size",
        "3",
    ]));
    assert!(
        !out.contains("--array=")
            && out.contains("--dependency=afterany:<array 0>")
            && out.contains("sbatch --parsable --dependency=afterok:<array 0>:<array 1>"),
        "{out}"
    );
    assert!(
        !study.join("jobs.jsonl").exists(),
        "a dry run submits nothing"
    );
    let task = |script: &str, index: usize| {
        ok(Command::new("bash")
            .arg(study.join(script))
            .env("SLURM_ARRAY_TASK_ID", index.to_string())
            .env_remove("XLPATCH_PLUGIN_PATH"));
    };
    task("array-0.sbatch", 0);
    task("array-0.sbatch", 1);
    task("array-0.sbatch", 2);
    // The checkpoint is re-exported (here: replaced by another) before the last task runs.
    std::fs::remove_dir_all(series.join("step_16")).unwrap();
    copy_dir(&fixtures.join("step_64"), &series.join("step_16"));
    task("array-1.sbatch", 0);
    let status = ok(xlpatch(None).args(["slurm", "status", "--study", study.to_str().unwrap()]));
    assert!(status.contains("4/4 tasks done"), "{status}");
    let err = fails(xlpatch(None).args(["slurm", "merge", "--study", study.to_str().unwrap()]));
    assert!(
        err.contains("checkpoint step_16 has model hash") && err.contains("in the job table"),
        "{err}"
    );
    assert!(!study.join("results").exists());
    // `xlpatch merge` of the two shards of that checkpoint refuses them too.
    let shard = |k: usize| study.join(format!("tasks/step_16/shard-{k}-of-2"));
    let err = fails(xlpatch(None).args([
        "merge",
        shard(0).to_str().unwrap(),
        shard(1).to_str().unwrap(),
        "--out",
        root.path().join("m").to_str().unwrap(),
    ]));
    assert!(err.contains("differs"), "{err}");
}
