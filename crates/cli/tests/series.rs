//! Hub series through the real `xlpatch` binary and a hub stand-in on 127.0.0.1:
//! listed, selected, downloaded, exported, swept and deleted, equal to a sweep over the same
//! checkpoints exported locally; killed with SIGKILL during a download, an export and a
//! sweep, and resumed without re-downloading finished files; a corrupt download refused;
//! identical checkpoints reported; a disk budget too small refused before downloading.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use xlpatch_hub_standin::{StandIn, checkpoint_files};

const REPO: &str = "xlpatch/fixture-series";
const STEPS: [u64; 4] = [0, 64, 256, 2000];

fn root() -> PathBuf {
    xlpatch_testkit::repo_root()
}

/// The stand-in with the four fixture checkpoints as branches `step_N`, plus `main`.
fn standin() -> StandIn {
    let dir = root().join("fixtures/series");
    let tok = dir.join("tokenizer.json");
    let hub = StandIn::start(REPO);
    for s in STEPS {
        hub.add(
            &format!("step_{s}"),
            false,
            checkpoint_files(&dir.join(format!("step_{s}")), Some(&tok)),
        );
    }
    hub.add(
        "main",
        false,
        checkpoint_files(&dir.join("step_2000"), Some(&tok)),
    );
    hub
}

/// A small sweep config over `models`.
fn config(dir: &Path, name: &str, models: &[String]) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "models = {models:?}\nconcepts = {:?}\nconcept_list = {:?}\npairs = [[\"fr\", \"de\"]]\nconcept_pairs = 2\nmax_new_tokens = 2\nthreads = 1\n",
        root().join("fixtures/concepts").display().to_string(),
        root()
            .join("fixtures/series/concepts.txt")
            .display()
            .to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn xlpatch(hub: &StandIn, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlpatch"));
    cmd.env_remove("XLPATCH_PLUGIN_PATH")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", home)
        .env("HF_HUB_CACHE", home.join("hub"));
    cmd
}

fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("xlpatch runs");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{so}\n{se}");
    (so, se)
}

fn rows(dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    let list: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
        .collect();
    let set: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(
        set.len(),
        list.len(),
        "a row is duplicated in {}",
        dir.display()
    );
    set
}

/// The sweep over the committed local exports of the same checkpoints (computed once).
fn local() -> &'static PathBuf {
    static LOCAL: OnceLock<PathBuf> = OnceLock::new();
    LOCAL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let models: Vec<String> = STEPS
            .iter()
            .map(|s| {
                root()
                    .join(format!("fixtures/series/export/step_{s}"))
                    .display()
                    .to_string()
            })
            .collect();
        let cfg = config(&dir, "local.toml", &models);
        let out = dir.join("local");
        let status = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
            .env_remove("XLPATCH_PLUGIN_PATH")
            .args([
                "sweep",
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "the local sweep failed");
        out
    })
}

/// The most bytes seen at once under some directories, sampled every millisecond on a thread
/// until [`DiskPeak::stop`].
struct DiskPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl DiskPeak {
    fn sample(dirs: Vec<PathBuf>) -> DiskPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = dirs.iter().map(|d| bytes_under(d)).sum();
                    peak.fetch_max(now, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        DiskPeak { stop, peak, thread }
    }

    /// Stops sampling; the peak in bytes.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

fn bytes_under(dir: &Path) -> u64 {
    let Ok(list) = std::fs::read_dir(dir) else {
        return 0;
    };
    list.flatten()
        .map(|e| match std::fs::symlink_metadata(e.path()) {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Body downloads (not the one-byte metadata probes) per `revision/file`, with their ranges.
fn body_gets(hub: &StandIn) -> Vec<(String, String)> {
    hub.log()
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains("/resolve/") && !l.ends_with("bytes=0-0"))
        .map(|l| {
            let url = l.split(' ').nth(1).unwrap();
            let file = url.split("/resolve/").nth(1).unwrap().to_string();
            let range = l.split(' ').nth(2).unwrap_or("").to_string();
            (file, range)
        })
        .collect()
}

#[test]
fn a_hub_series_is_listed_swept_pipelined_and_cleaned_up_and_equals_a_local_sweep() {
    let hub = standin();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");

    // `series list`: by step, `main` listed as skipped, nothing downloaded.
    let (list, _) = run_ok(xlpatch(&hub, &home).args(["series", "list", &format!("hf://{REPO}")]));
    let order: Vec<usize> = STEPS
        .iter()
        .map(|s| {
            list.find(&format!("step_{s} "))
                .unwrap_or_else(|| panic!("{list}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{list}");
    assert!(
        list.contains("skipped (no step in the name): main"),
        "{list}"
    );
    assert!(list.contains("4 checkpoints"), "{list}");
    assert!(body_gets(&hub).is_empty(), "listing downloads nothing");
    let (log3, _) =
        run_ok(xlpatch(&hub, &home).args(["series", "list", &format!("hf://{REPO}@step_*?log=3")]));
    assert!(
        log3.contains("3 checkpoints") && !log3.contains("step_256 "),
        "{log3}"
    );

    // The pipelined sweep, with the disk use under the cache and the work dir sampled.
    let spec = format!("hf://{REPO}@step_*");
    let cfg = config(tmp.path(), "hub.toml", std::slice::from_ref(&spec));
    let out = tmp.path().join("out");
    hub.corrupt("step_256", "model.safetensors", 1);
    let sampler = DiskPeak::sample(vec![home.clone(), out.join(".series")]);
    let start = Instant::now();
    let (so, se) = run_ok(xlpatch(&hub, &home).args([
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let secs = start.elapsed().as_secs_f64();
    let peak = sampler.stop();
    assert!(
        so.contains("4 checkpoints swept, 0 resumed (download and export overlapped the sweep)"),
        "{so}"
    );
    assert!(
        se.contains("step_256: model.safetensors refused (sha256"),
        "the corrupt download is refused: {se}"
    );

    // Equal to the sweep over the committed local exports: rows, prompts, run.json.
    let local = local();
    assert_eq!(rows(&out), rows(local));
    for f in ["prompts.jsonl", "run.json"] {
        assert_eq!(
            std::fs::read_to_string(out.join(f)).unwrap(),
            std::fs::read_to_string(local.join(f)).unwrap(),
            "{f}"
        );
    }
    let series: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("series.json")).unwrap()).unwrap();
    assert_eq!(series["checkpoints"].as_array().unwrap().len(), 4);
    assert_eq!(series["checkpoints"][1]["revision"], "step_64");

    // The report reads a series' results as any sweep's.
    let report = tmp.path().join("report");
    run_ok(xlpatch(&hub, &home).args([
        "report",
        out.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "--resamples",
        "20",
    ]));
    assert!(report.join("index.html").is_file());

    // Deleted: no blob, no export, no per-checkpoint run left.
    let blobs = home.join("hub/models--xlpatch--fixture-series/blobs");
    assert_eq!(bytes_under(&blobs), 0, "downloads deleted");
    assert_eq!(
        bytes_under(&out.join(".series/export")),
        0,
        "exports deleted"
    );
    assert_eq!(bytes_under(&out.join(".series/runs")), 0, "runs deleted");

    // Peak disk against keeping every checkpoint (download + export of each).
    let all: u64 = STEPS
        .iter()
        .map(|s| {
            bytes_under(&root().join(format!("fixtures/series/export/step_{s}")))
                + checkpoint_files(
                    &root().join(format!("fixtures/series/step_{s}")),
                    Some(&root().join("fixtures/series/tokenizer.json")),
                )
                .iter()
                .map(|f| f.bytes.len() as u64)
                .sum::<u64>()
        })
        .sum();
    eprintln!(
        "MEASURED pipelined series of 4: peak {peak} bytes on disk (cache + work), all checkpoints {all} bytes, {secs:.1} s"
    );
    assert!(
        peak > 0 && peak < all * 3 / 4,
        "peak {peak} against all {all}"
    );
}

/// Spawns a sweep and kills it (SIGKILL) once `ready` says so for a stderr line; returns the
/// lines seen.
fn kill_when(mut cmd: Command, what: &str, ready: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if ready(&line) {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no {what} after 300 s"
        );
    }
    let status = child.wait().unwrap();
    panic!("the sweep ended ({status}) before it could be killed {what}: {seen:#?}");
}

fn part_bytes(home: &Path) -> u64 {
    let blobs = home.join("hub/models--xlpatch--fixture-series/blobs");
    std::fs::read_dir(blobs)
        .map(|l| {
            l.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_series_killed_during_download_export_and_sweep_resumes_without_refetching() {
    let hub = standin();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let spec = format!("hf://{REPO}@step_*");
    let cfg = config(tmp.path(), "hub.toml", std::slice::from_ref(&spec));
    let out = tmp.path().join("out");
    let sweep = || {
        let mut c = xlpatch(&hub, &home);
        c.args([
            "sweep",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        c
    };
    let work = out.join(".series");

    // 1. During a download: step_64's weights come slowly; kill once part of them is on disk.
    hub.set_rate(Some(200_000));
    kill_when(sweep(), "during a download", &|line| {
        if line != "series: downloading step_64" {
            return false;
        }
        let start = Instant::now();
        while part_bytes(&home) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no partial download"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    });
    let partial = part_bytes(&home);
    assert!(
        partial > 0 && partial < 1_800_000,
        "killed mid-download ({partial} bytes)"
    );
    hub.set_rate(None);

    // 2. During an export.
    kill_when(sweep(), "during an export", &|line| {
        line == "series: exporting step_256"
    });
    assert!(
        !work.join("export/step_256/manifest.json").exists(),
        "the kill came after the export finished"
    );

    // 3. During a sweep, once some of its rows are written.
    kill_when(sweep(), "during a sweep", &|line| {
        if line != "series: sweeping step_2000" {
            return false;
        }
        let rows = work.join("runs/step_2000/results.jsonl");
        let start = Instant::now();
        while std::fs::read_to_string(&rows)
            .map(|t| t.lines().count())
            .unwrap_or(0)
            == 0
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no rows of step_2000"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    });
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("state.json")).unwrap()).unwrap();
    assert!(
        !state["done"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "step_2000")
    );

    // 4. The resumed run completes; the rows equal the local sweep, each once.
    let (so, _) = run_ok(&mut sweep());
    assert!(so.contains("1 checkpoints swept, 3 resumed"), "{so}");
    assert_eq!(rows(&out), rows(local()));

    // Every file was downloaded once, except step_64's weights, resumed from where the kill
    // left them (a range starting past 0).
    let gets = body_gets(&hub);
    for s in STEPS {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            let key = format!("step_{s}/{f}");
            let n: Vec<&String> = gets
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, r)| r)
                .collect();
            if key == "step_64/model.safetensors" {
                assert_eq!(n.len(), 2, "{key}: {n:?}");
                assert_eq!(n[0], "bytes=0-");
                let from: u64 = n[1]
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap();
                assert!(
                    from >= partial,
                    "{key} resumed from {from}, {partial} were on disk"
                );
            } else {
                assert_eq!(n.len(), 1, "{key} downloaded {} times: {n:?}", n.len());
            }
        }
    }
}

#[test]
fn identical_checkpoints_are_reported_and_a_small_budget_is_refused_up_front() {
    let dir = root().join("fixtures/series");
    let tok = dir.join("tokenizer.json");
    let hub = StandIn::start(REPO);
    hub.add(
        "step_0",
        false,
        checkpoint_files(&dir.join("step_0"), Some(&tok)),
    );
    hub.add(
        "step_16",
        false,
        checkpoint_files(&dir.join("step_0"), Some(&tok)),
    );
    hub.add(
        "step_64",
        false,
        checkpoint_files(&dir.join("step_64"), Some(&tok)),
    );
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let spec = format!("hf://{REPO}");

    let (list, _) = run_ok(xlpatch(&hub, &home).args(["series", "list", &spec]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("step_16 ") && l.contains("same weights as step_0")),
        "{list}"
    );

    let cfg = config(tmp.path(), "hub.toml", std::slice::from_ref(&spec));
    let out = tmp.path().join("out");
    let sweep = |extra: &[&str]| {
        let mut c = xlpatch(&hub, &home);
        c.args([
            "sweep",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        c.args(extra);
        c
    };
    let refused = sweep(&["--disk-budget", "1M"]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("--disk-budget 1000000 bytes cannot hold checkpoint"),
        "{err}"
    );
    assert!(err.contains("raise the budget to at least"), "{err}");
    assert!(
        !body_gets(&hub)
            .iter()
            .any(|(f, _)| f.ends_with("model.safetensors")),
        "nothing large was downloaded before refusing"
    );

    // A budget for one checkpoint but not two: one at a time; the duplicates in the record.
    let sampler = DiskPeak::sample(vec![home.clone(), out.join(".series")]);
    let (so, se) = run_ok(&mut sweep(&["--disk-budget", "5M"]));
    let peak = sampler.stop();
    eprintln!("MEASURED one-at-a-time series of 3 under --disk-budget 5M: peak {peak} bytes");
    assert!(peak <= 5_000_000, "the budget held: peak {peak}");
    assert!(se.contains("one at a time, no overlap"), "{se}");
    assert!(
        so.contains("identical weights (same content hash): step_0, step_16"),
        "{so}"
    );
    let series: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("series.json")).unwrap()).unwrap();
    assert_eq!(
        series["duplicates"],
        serde_json::json!([["step_0", "step_16"]])
    );
    assert_eq!(series["checkpoints"][1]["duplicate_of"], "step_0");
}

#[test]
fn a_fetched_series_runs_offline_with_the_hub_gone() {
    let hub = standin();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let spec = format!("hf://{REPO}@step_0,step_2000");
    let (so, _) = run_ok(xlpatch(&hub, &home).args(["series", "fetch", &spec]));
    assert!(so.contains("fetched 2 checkpoints"), "{so}");
    let mut offline = xlpatch(&hub, &home);
    drop(hub); // nothing listens there any more

    let (list, _) = run_ok(offline.env("HF_HUB_OFFLINE", "1").args([
        "series",
        "list",
        &format!("hf://{REPO}@step_*"),
    ]));
    assert!(list.contains("2 checkpoints"), "the cache's refs: {list}");
    let cfg = config(tmp.path(), "hub.toml", std::slice::from_ref(&spec));
    let out = tmp.path().join("out");
    let mut sweep = Command::new(env!("CARGO_BIN_EXE_xlpatch"));
    sweep
        .env_remove("XLPATCH_PLUGIN_PATH")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", &home)
        .env("HF_HUB_CACHE", home.join("hub"))
        .args([
            "sweep",
            "--offline",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
    let (so, _) = run_ok(&mut sweep);
    assert!(so.contains("2 checkpoints swept"), "{so}");
    let all = rows(local());
    let want: BTreeSet<String> = all
        .iter()
        .filter(|r| {
            r.contains("\"checkpoint\":\"step_0\"") || r.contains("\"checkpoint\":\"step_2000\"")
        })
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(rows(&out), want);
    // A fetched cache is the user's: kept.
    assert!(
        bytes_under(&home.join("hub/models--xlpatch--fixture-series/blobs")) > 3_000_000,
        "the fetched files stay in the cache"
    );
}

#[test]
fn a_local_megatron_folder_gives_its_step_to_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("fixtures/series/step_64");
    let dir = tmp.path().join("iter_0000064");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let out = tmp.path().join("export");
    let status = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args([
            "export",
            "--model",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["step"], 64);
}
