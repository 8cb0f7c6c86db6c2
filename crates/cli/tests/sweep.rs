//! `xlpatch sweep` as a process: killed with SIGKILL in the middle of a run, it resumes
//! without losing or duplicating rows, and the result equals an uninterrupted run; shards
//! merged with `xlpatch merge` equal the whole run too.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn xlpatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlpatch"));
    cmd.env_remove("XLPATCH_PLUGIN_PATH");
    cmd
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("xlpatch runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rows of a results directory as (unit, setting, start layer) keys and full JSON values.
fn rows(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keys(rows: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} {}", r["unit"], r["setting"], r["start_layer"]))
        .collect();
    k.sort();
    k
}

/// Rows as a set of their full JSON text: equal sets mean equal rows, each once.
fn canonical(rows: &[Value]) -> BTreeSet<String> {
    rows.iter().map(|r| r.to_string()).collect()
}

#[test]
fn a_killed_sweep_resumes_without_losing_or_duplicating_rows() {
    let root = tempfile::tempdir().unwrap();
    let series = xlpatch_testkit::series(root.path());
    let concepts = xlpatch_testkit::repo_root().join("fixtures/concepts");
    let config = root.path().join("sweep.toml");
    std::fs::write(
        &config,
        format!(
            "models = [{:?}]\nconcepts = {:?}\nlanguages = {:?}\npairs = [[\"fr\", \"de\"], [\"es\", \"it\"]]\nconcept_pairs = 4\nmax_new_tokens = 4\nthreads = 1\nallow_beyond_context = true\n",
            series.join("step_*").display().to_string(),
            concepts.display().to_string(),
            xlpatch_testkit::LANGS,
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let whole = root.path().join("whole");
    run_ok(xlpatch().args(["sweep", "--config", cfg, "--out", whole.to_str().unwrap()]));
    let expected = rows(&whole);
    assert_eq!(keys(&expected).len(), canonical(&expected).len());

    // Kill the second run as soon as its first unit is on disk.
    let killed = root.path().join("killed");
    let mut child = xlpatch()
        .args(["sweep", "--config", cfg, "--out", killed.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let results = killed.join("results.jsonl");
    loop {
        let n = std::fs::read_to_string(&results)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep finished before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no rows after 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let partial = rows(&killed).len();
    assert!(
        partial < expected.len(),
        "the kill came too late to test anything ({partial} of {} rows)",
        expected.len()
    );

    // Resume: same rows as the uninterrupted run, none twice.
    run_ok(xlpatch().args(["sweep", "--config", cfg, "--out", killed.to_str().unwrap()]));
    let resumed = rows(&killed);
    assert_eq!(resumed.len(), expected.len(), "rows lost or duplicated");
    assert_eq!(keys(&resumed), keys(&expected));
    assert_eq!(canonical(&resumed), canonical(&expected));
    let csv = std::fs::read_to_string(killed.join("results.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        expected.len() + 1,
        "the CSV has a header and one line per row"
    );

    // Two shards merged equal the whole run.
    let mut shard_dirs = Vec::new();
    for k in 0..2 {
        let dir = root.path().join(format!("shard{k}"));
        run_ok(xlpatch().args([
            "sweep",
            "--config",
            cfg,
            "--out",
            dir.to_str().unwrap(),
            "--shard",
            &format!("{k}/2"),
        ]));
        shard_dirs.push(dir);
    }
    let merged = root.path().join("merged");
    run_ok(
        xlpatch()
            .arg("merge")
            .args(&shard_dirs)
            .args(["--out", merged.to_str().unwrap()]),
    );
    assert_eq!(canonical(&rows(&merged)), canonical(&expected));
}
