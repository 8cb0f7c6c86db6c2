//! Sweeps end to end on a two-checkpoint "series" (the tiny Llama at step 1 and the tiny
//! Gemma 3 at step 2, both exported with a character-level tokenizer): rows, the identity
//! control, the naive method agreeing with the incremental one, resuming after a kill,
//! sharding and merging.

use std::path::{Path, PathBuf};

use xlpatch_core::config::{Method, Setting, SweepConfig};
use xlpatch_core::results::{JSONL_FILE, Row, merge, read_rows};
use xlpatch_core::sweep::{Shard, format_summary, run, summarize};

use xlpatch_testkit::{LANGS, series};

use crate::support::{registry, repo_root};

fn config(series: &Path) -> SweepConfig {
    SweepConfig {
        models: vec![series.join("step_*").display().to_string()],
        concepts: repo_root().join("fixtures/concepts").display().to_string(),
        concept_list: None,
        languages: LANGS.map(String::from).to_vec(),
        pairs: vec![["fr".into(), "de".into()]],
        concept_pairs: 3,
        max_new_tokens: 4,
        threads: 1,
        ..SweepConfig::default()
    }
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| {
        (&a.unit, &a.setting, a.start_layer).cmp(&(&b.unit, &b.setting, b.start_layer))
    });
    rows
}

/// The same rows in the same order: equal generations, probabilities within 1e-5.
fn assert_same_rows(got: &[Row], want: &[Row]) {
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(want) {
        assert_eq!(
            (&a.unit, &a.setting, a.start_layer, &a.generation_ids),
            (&b.unit, &b.setting, b.start_layer, &b.generation_ids)
        );
        for (x, y) in [
            (a.p_src_out, b.p_src_out),
            (a.p_tgt_out, b.p_tgt_out),
            (a.p_src_in, b.p_src_in),
            (a.p_tgt_in, b.p_tgt_in),
            (a.p_src_other, b.p_src_other),
            (a.p_tgt_other, b.p_tgt_other),
            (a.p_src_out_aug, b.p_src_out_aug),
            (a.p_tgt_out_aug, b.p_tgt_out_aug),
        ] {
            assert!((x - y).abs() <= 1e-5, "{a:?} {b:?}");
        }
    }
}

#[test]
fn a_sweep_writes_rows_resumes_and_shards() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let config = config(&series);
    let base = Path::new("/");
    // The whole sweep of `config` into `dir`.
    let sweep = |config: &SweepConfig, dir: &Path| {
        run(config, &registry, base, dir, Shard::default(), &mut |_| {}).unwrap()
    };

    // The whole sweep.
    let full = root.path().join("full");
    let mut seen = Vec::new();
    let outcome = run(
        &config,
        &registry,
        base,
        &full,
        Shard::default(),
        &mut |p| seen.push(p.done),
    )
    .unwrap();
    assert_eq!((outcome.ran, outcome.resumed, outcome.total), (6, 0, 6));
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    let rows = read_rows(&full).unwrap();
    // 3 concept pairs x 6 settings x (3 layers + 6 layers).
    assert_eq!(rows.len(), 3 * 6 * (3 + 6));
    for r in &rows {
        assert!(r.rank_src_out >= 1 && r.rank_tgt_out >= 1);
        assert!((0.0..=1.0 + 1e-6).contains(&r.p_src_out), "{r:?}");
        assert!(!r.generation_ids.is_empty() && r.generation_ids.len() <= 4);
        assert_ne!(r.source, r.target);
        assert_eq!(r.per_lang.len(), 2 * LANGS.len());
        assert_eq!(r.per_lang["p_src_de"], r.p_src_out);
        assert_eq!(r.per_lang["p_tgt_fr"], r.p_tgt_in);
        // The augmented sets contain the first-token sets.
        assert!(r.p_src_out_aug >= r.p_src_out - 1e-6, "{r:?}");
        assert!(r.p_tgt_out_aug >= r.p_tgt_out - 1e-6, "{r:?}");
    }
    // tgt_tgt under patch-replace is the identity: every row equals the unpatched one.
    let find = |r: &Row, setting: Setting| {
        rows.iter()
            .find(|o| o.unit == r.unit && o.start_layer == r.start_layer && o.setting == setting)
            .unwrap()
    };
    for r in rows.iter().filter(|r| r.setting == Setting::TgtTgt) {
        let u = find(r, Setting::Unpatched);
        assert!((r.p_tgt_out - u.p_tgt_out).abs() < 1e-6, "{r:?} {u:?}");
        assert!((r.p_src_out - u.p_src_out).abs() < 1e-6);
        assert_eq!(r.generation_ids, u.generation_ids);
    }
    assert!(
        rows.iter()
            .filter(|r| r.setting == Setting::Seen)
            .all(|r| r.n_sources == 2)
    );
    let prompts = std::fs::read_to_string(full.join("prompts.jsonl")).unwrap();
    // Per item: the target, tgt 1, seen 2, en_en 1, self 1.
    assert_eq!(prompts.lines().count(), 3 * 6);
    // Targets carry the token sets behind every probability column; a target and its `tgt`
    // source share their demonstrations (one set per language pair).
    let records: Vec<serde_json::Value> = prompts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for t in records.iter().filter(|r| r["role"] == "target") {
        let ids = |k: &str| t["metric_ids"][k].as_array().unwrap().clone();
        assert!(
            !ids("p_src_out").is_empty() && !ids("p_tgt_other").is_empty(),
            "{t}"
        );
        assert!(
            ids("p_src_out")
                .iter()
                .all(|i| ids("p_src_out_aug").contains(i))
        );
        let tgt = records
            .iter()
            .find(|r| r["item"] == t["item"] && r["setting"] == "tgt")
            .unwrap();
        assert_eq!(tgt["demos"], t["demos"]);
    }
    let summary = summarize(&rows);
    assert_eq!(summary.len(), 2 * 6);
    println!("{}", format_summary(&summary));

    // The naive method gives the same rows (to float tolerance).
    let naive_dir = root.path().join("naive");
    let naive_config = SweepConfig {
        method: Method::Naive,
        ..config.clone()
    };
    sweep(&naive_config, &naive_dir);
    assert_same_rows(&read_rows(&naive_dir).unwrap(), &rows);

    // Targets computed together (batches of 2 and 1 per checkpoint) give the same rows, and
    // a batched sweep resumes one that ran one target at a time (the stored config is the
    // same).
    let batched_dir = root.path().join("batched");
    let batched_config = SweepConfig {
        target_batch: 2,
        ..config.clone()
    };
    sweep(&batched_config, &batched_dir);
    assert_same_rows(&read_rows(&batched_dir).unwrap(), &rows);
    let timings = std::fs::read_to_string(batched_dir.join("timings.jsonl")).unwrap();
    let batches: Vec<u64> = timings
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["batch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(batches, [2, 2, 1, 2, 2, 1]);
    let resumed_batched = sweep(&batched_config, &full);
    assert_eq!((resumed_batched.ran, resumed_batched.resumed), (0, 6));

    // A rerun finds everything done.
    let again = sweep(&config, &full);
    assert_eq!((again.ran, again.resumed), (0, 6));
    assert_eq!(read_rows(&full).unwrap(), rows);

    // Killed in the middle of a unit: the torn unit is dropped and rerun, nothing doubles.
    let killed = root.path().join("killed");
    std::fs::create_dir_all(&killed).unwrap();
    for f in ["config.toml", "run.json", "prompts.jsonl", JSONL_FILE] {
        std::fs::copy(full.join(f), killed.join(f)).unwrap();
    }
    let jsonl = std::fs::read(full.join(JSONL_FILE)).unwrap();
    std::fs::write(killed.join(JSONL_FILE), &jsonl[..jsonl.len() * 3 / 5]).unwrap();
    let resumed = sweep(&config, &killed);
    assert!(resumed.resumed >= 2 && resumed.ran >= 1 && resumed.ran + resumed.resumed == 6);
    assert_eq!(read_rows(&killed).unwrap(), rows);
    let csv = std::fs::read_to_string(killed.join("results.csv")).unwrap();
    assert_eq!(
        csv,
        std::fs::read_to_string(full.join("results.csv")).unwrap()
    );

    // Two shards merged equal the whole sweep.
    let shards: Vec<PathBuf> = (0..2)
        .map(|k| root.path().join(format!("shard{k}")))
        .collect();
    for (k, dir) in shards.iter().enumerate() {
        let o = run(
            &config,
            &registry,
            base,
            dir,
            Shard { index: k, count: 2 },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(o.total, 3);
    }
    let merged = root.path().join("merged");
    assert_eq!(merge(&shards, &merged).unwrap(), rows.len());
    assert_eq!(sorted(read_rows(&merged).unwrap()), sorted(rows.clone()));

    // Another config in the same directory is refused.
    let other = SweepConfig {
        seed: 1,
        ..config.clone()
    };
    let err = run(
        &other,
        &registry,
        base,
        &full,
        Shard::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("another sweep"), "{err}");
}

/// A sweep replaying another sweep's `prompts.jsonl` (with another seed, which then decides
/// nothing) gives the same rows; a broken prompt set is refused with its file and line.
#[test]
fn a_prompt_set_replays_exactly() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let config = SweepConfig {
        settings: vec![Setting::Tgt, Setting::Seen, Setting::Unpatched],
        concept_pairs: 2,
        ..config(&series)
    };
    let base = Path::new("/");
    let sweep = |config: &SweepConfig, dir: &Path| {
        run(config, &registry, base, dir, Shard::default(), &mut |_| {}).unwrap()
    };
    let first = root.path().join("first");
    sweep(&config, &first);
    let prompts = first.join("prompts.jsonl");
    let replay = SweepConfig {
        seed: 7,
        prompts: Some(prompts.display().to_string()),
        ..config.clone()
    };
    let second = root.path().join("second");
    sweep(&replay, &second);
    assert_eq!(read_rows(&second).unwrap(), read_rows(&first).unwrap());
    assert_eq!(
        std::fs::read_to_string(second.join("prompts.jsonl")).unwrap(),
        std::fs::read_to_string(&prompts).unwrap()
    );

    // A setting without its source prompts, and a torn line, are refused.
    let more = SweepConfig {
        settings: vec![Setting::Tgt, Setting::EnEn],
        ..replay.clone()
    };
    let err = run(
        &more,
        &registry,
        base,
        &root.path().join("x"),
        Shard::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no source prompt of setting en_en"), "{err}");
    let torn = root.path().join("torn.jsonl");
    let text = std::fs::read_to_string(&prompts).unwrap();
    std::fs::write(&torn, &text[..text.len() / 2]).unwrap();
    let broken = SweepConfig {
        prompts: Some(torn.display().to_string()),
        ..replay
    };
    let err = run(
        &broken,
        &registry,
        base,
        &root.path().join("y"),
        Shard::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("torn.jsonl") && err.contains("line "), "{err}");
}

/// `start_layers` selects rows (equal to the whole sweep's at those layers) and is checked
/// against every checkpoint; `[plugins.<kind>_params]` reach their plugins, TOML numbers
/// included.
#[test]
fn start_layers_and_plugin_params() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let base = Path::new("/");
    let config = SweepConfig {
        settings: vec![Setting::SelfCopy, Setting::Unpatched],
        concept_pairs: 2,
        ..config(&series)
    };
    let sweep = |config: &SweepConfig, dir: &str| {
        run(
            config,
            &registry,
            base,
            &root.path().join(dir),
            Shard::default(),
            &mut |_| {},
        )
        .map(|_| sorted(read_rows(&root.path().join(dir)).unwrap()))
    };
    let all = sweep(&config, "all").unwrap();
    // The series' checkpoints have 3 and 6 layers; "1..3" is in both.
    let text = format!("start_layers = \"1..3\"\n{}", config.to_toml());
    let some_config = SweepConfig::from_toml(&text).unwrap();
    let some = sweep(&some_config, "some").unwrap();
    let want: Vec<Row> = all
        .iter()
        .filter(|r| (1..3).contains(&r.start_layer))
        .cloned()
        .collect();
    assert_eq!(
        some.len(),
        2 * 2 * 2 * 2,
        "2 checkpoints, targets, settings, layers"
    );
    assert!(some.iter().all(|r| r.unit_rows == 4));
    let strip = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .map(|r| Row {
                unit_rows: 0,
                ..r.clone()
            })
            .collect()
    };
    assert_same_rows(&strip(&some), &strip(&want));
    // Without start layer 0, the summary says so instead of printing NaN.
    let table = format_summary(&summarize(&some));
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[5], "-", "{table}");
        assert!(["1", "2"].contains(&cols[4]), "{table}");
    }
    // A layer the 3-layer checkpoint lacks is refused before anything runs, naming it.
    let over = SweepConfig::from_toml(&text.replace("\"1..3\"", "[1, 4]")).unwrap();
    let err = sweep(&over, "over").unwrap_err().to_string();
    assert!(err.contains("layer 4") && err.contains("step_1"), "{err}");
    assert!(!root.path().join("over/results.jsonl").exists());

    // patch-add with alpha = 0 (a TOML integer) adds nothing: its self rows equal the
    // unpatched ones, which they do not under the default alpha.
    let with = |params: &str| {
        let text = format!(
            "{}\n[plugins]\npatch = \"patch-add\"\n{params}\n",
            config.to_toml().split("[plugins]").next().unwrap()
        );
        SweepConfig::from_toml(&text).unwrap()
    };
    let zero = sweep(&with("[plugins.patch_params]\nalpha = 0"), "zero").unwrap();
    let one = sweep(&with("[plugins.patch_params]\nalpha = 1.0"), "one").unwrap();
    let differs = |rows: &[Row]| {
        rows.iter()
            .filter(|r| r.setting == Setting::SelfCopy)
            .any(|r| {
                let u = rows
                    .iter()
                    .find(|o| {
                        o.unit == r.unit
                            && o.start_layer == r.start_layer
                            && o.setting == Setting::Unpatched
                    })
                    .unwrap();
                (r.p_tgt_out - u.p_tgt_out).abs() > 1e-4
            })
    };
    assert!(!differs(&zero));
    assert!(differs(&one));
    // Extractor and metric parameters reach their plugins, which refuse what they do not
    // take, by name.
    for table in ["extractor_params", "metric_params"] {
        let c = with(&format!("[plugins.{table}]\nwindow = 3"));
        let err = sweep(&c, table).unwrap_err().to_string();
        assert!(
            err.contains("unknown parameter \"window\""),
            "{table}: {err}"
        );
    }
}
