//! Sweeps end to end on a two-checkpoint "series" (the tiny Gemma 3 at steps 1 and 2,
//! exported with a character-level tokenizer): rows, the identity
//! control, the naive method agreeing with the incremental one, resuming after a kill,
//! sharding and merging.

use std::path::{Path, PathBuf};

use xlpatch_core::Error;
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::config::{Method, Setting, SweepConfig};
use xlpatch_core::results::{JSONL_FILE, Row, merge, read_rows};
use xlpatch_core::sweep::{Outcome, Shard, format_summary, run, summarize};

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
        // The character tokenizer makes 5-shot prompts of ~200 tokens; the tiny models
        // (random weights) declare 128 positions.
        allow_beyond_context: true,
        ..SweepConfig::default()
    }
}

/// Runs (or resumes) the whole sweep of `config` into `out`, paths taken as written.
fn sweep_into(config: &SweepConfig, registry: &Registry, out: &Path) -> Result<Outcome, Error> {
    run(
        config,
        registry,
        Path::new("/"),
        out,
        Shard::default(),
        &mut |_| {},
    )
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
    let sweep = |config: &SweepConfig, dir: &Path| sweep_into(config, &registry, dir).unwrap();

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
    // 3 concept pairs x 6 settings x (6 layers + 6 layers).
    assert_eq!(rows.len(), 3 * 6 * (6 + 6));
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
    // same). The fixture's unembedding is too small for shared head calls to batch more.
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
    let err = sweep_into(&other, &registry, &full).unwrap_err();
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
    let sweep = |config: &SweepConfig, dir: &Path| sweep_into(config, &registry, dir).unwrap();
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
    let err = sweep_into(&more, &registry, &root.path().join("x"))
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
    let err = sweep_into(&broken, &registry, &root.path().join("y"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("torn.jsonl") && err.contains("line "), "{err}");
}

/// A series shares architecture, sizes and tokenizer: a checkpoint of another architecture,
/// of another width, or with another tokenizer is refused before anything is written, with
/// its directory, the field, both values and the fix named.
#[test]
fn a_series_of_mixed_models_is_refused() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let refused = |what: &str, dir: &Path| {
        let out = root.path().join(format!("out-{what}"));
        let err = sweep_into(&config(&series), &registry, &out)
            .unwrap_err()
            .to_string();
        assert!(
            !out.exists(),
            "{what}: the refused sweep wrote {}",
            out.display()
        );
        assert!(
            err.contains(&dir.display().to_string())
                && err.contains("does not belong to the series of")
                && err.contains("move it out of the series"),
            "{what}: {err}"
        );
        err
    };

    // Another architecture (the tiny Llama among tiny Gemma 3 checkpoints).
    let odd = series.join("step_3");
    xlpatch_testkit::export_into(
        "llama",
        &odd,
        &xlpatch_testkit::char_tokenizer(&xlpatch_testkit::alphabet()),
        3,
    );
    let err = refused("architecture", &odd);
    assert!(
        err.contains("its architecture is LlamaForCausalLM, not Gemma3ForCausalLM"),
        "{err}"
    );
    std::fs::remove_dir_all(&odd).unwrap();

    // Another width: the same architecture with d 128 instead of 64 (the manifest is what
    // the plan reads; no model is opened before the check).
    std::fs::create_dir_all(&odd).unwrap();
    for entry in std::fs::read_dir(series.join("step_2")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), odd.join(entry.file_name())).unwrap();
    }
    let manifest = odd.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"hidden_size\": 64"), "{text}");
    std::fs::write(
        &manifest,
        text.replace("\"hidden_size\": 64", "\"hidden_size\": 128"),
    )
    .unwrap();
    let err = refused("width", &odd);
    assert!(err.contains("its hidden_size is 128, not 64"), "{err}");
    std::fs::remove_dir_all(&odd).unwrap();

    // Another tokenizer (one more character, so other ids).
    let other = xlpatch_testkit::char_tokenizer(&(xlpatch_testkit::alphabet() + "@"));
    xlpatch_testkit::export_into("gemma3", &odd, &other, 3);
    let err = refused("tokenizer", &odd);
    assert!(err.contains("its tokenizer is sha256 "), "{err}");
}

/// A prompt longer than a checkpoint's context length is refused, naming its length, the
/// limit, the checkpoint and the fix; `allow_beyond_context` runs it with a warning. A
/// manifest that records no context length (an older export) is said once, not refused.
#[test]
fn prompts_beyond_the_context_length_are_refused_unless_allowed() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let small = SweepConfig {
        settings: vec![Setting::Tgt, Setting::Unpatched],
        concept_pairs: 1,
        max_new_tokens: 2,
        ..config(&series)
    };
    let strict = SweepConfig {
        allow_beyond_context: false,
        ..small.clone()
    };
    let out = root.path().join("strict");
    let err = sweep_into(&strict, &registry, &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokens (+1 generated) but ")
            && err.contains(&series.join("step_1").display().to_string())
            && err.contains("trained on 128 positions")
            && err.contains("fewer shots")
            && err.contains("allow_beyond_context"),
        "{err}"
    );
    assert!(!out.exists(), "the refused sweep wrote {}", out.display());

    let outcome = sweep_into(&small, &registry, &root.path().join("allowed")).unwrap();
    assert_eq!(outcome.ran, 2);
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(
        outcome.warnings[0].contains("trained on 128 positions"),
        "{:?}",
        outcome.warnings
    );

    // Manifests written before the field existed: not checked, and said so once.
    for step in ["step_1", "step_2"] {
        let path = series.join(step).join("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"context_length\": 128,"), "{text}");
        std::fs::write(&path, text.replace("\"context_length\": 128,", "")).unwrap();
    }
    let outcome = sweep_into(&strict, &registry, &root.path().join("old")).unwrap();
    assert_eq!(outcome.ran, 2);
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(
        outcome.warnings[0].contains("step_1 and 1 other checkpoints")
            && outcome.warnings[0].contains("records no context length"),
        "{:?}",
        outcome.warnings
    );
}

/// A checkpoint with NaN weights fails its first unit with an error naming the checkpoint, the
/// prompt and the layer; no row with a non-finite value is written, and the results directory
/// stays readable: the rows of the sound checkpoint read back, and a resume fails the same
/// way (it said "invalid type: null, expected f32", naming nothing).
#[test]
fn nan_weights_fail_the_unit_naming_checkpoint_prompt_and_layer() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = root.path().join("series");
    let tok = xlpatch_testkit::char_tokenizer(&xlpatch_testkit::alphabet());
    xlpatch_testkit::export_into("gemma3", &series.join("step_1"), &tok, 1);
    xlpatch_testkit::export_with_nan(
        "gemma3",
        "model.layers.4.mlp.down_proj.weight",
        &series.join("step_2"),
        &tok,
        2,
    );
    let config = SweepConfig {
        settings: vec![Setting::Tgt, Setting::Unpatched],
        concept_pairs: 2,
        ..config(&series)
    };
    let out = root.path().join("out");
    for attempt in ["first run", "resume"] {
        let err = sweep_into(&config, &registry, &out)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("step_2: ")
                && err.contains("NaN")
                && err.contains("for prompt fr-de/")
                && err.contains("at layer ")
                && err.contains("export the checkpoint again"),
            "{attempt}: {err}"
        );
        let rows = read_rows(&out).unwrap();
        assert_eq!(rows.len(), 2 * 2 * 6, "{attempt}: the rows of step_1");
        assert!(rows.iter().all(|r| r.checkpoint == "step_1"));
        let text = std::fs::read_to_string(out.join(JSONL_FILE)).unwrap();
        assert!(!text.contains("null"), "a null was written");
    }
}

/// The records of a `prompts.jsonl` as JSON values.
fn prompt_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A replay uses each target's own `metric_ids` (not the concept table's sets), validates
/// none of the keys that only build prompts, says in the stored config that it replayed, and
/// checks the tokenizer hash the records carry (refused when another, a warning when none).
#[test]
fn a_replay_uses_the_files_metric_ids_and_checks_its_tokenizer() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let config = SweepConfig {
        settings: vec![Setting::Tgt, Setting::Unpatched],
        concept_pairs: 2,
        ..config(&series)
    };
    let sweep = |config: &SweepConfig, dir: &Path| sweep_into(config, &registry, dir);
    let first = root.path().join("first");
    sweep(&config, &first).unwrap();
    let lines = prompt_lines(&first.join("prompts.jsonl"));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(series.join("step_1/manifest.json")).unwrap(),
    )
    .unwrap();
    let tok_file = manifest["tokenizer"].as_str().unwrap();
    let hash = manifest["files"][tok_file].as_str().unwrap();
    assert!(
        lines.iter().all(|l| l["tokenizer"] == hash),
        "every record names the series' tokenizer"
    );

    // p_src_out's token set replaced by p_tgt_out's: the replay must measure that set.
    let swapped: Vec<serde_json::Value> = lines
        .iter()
        .cloned()
        .map(|mut l| {
            if l["role"] == "target" {
                l["metric_ids"]["p_src_out"] = l["metric_ids"]["p_tgt_out"].clone();
            }
            l
        })
        .collect();
    let file = root.path().join("swapped.jsonl");
    write_lines(&file, &swapped);
    // Written as a user would: only what the replay needs. The default `pairs` (fr-de, de-it)
    // do not fit these languages, and are not used.
    let toml = format!(
        "models = [{:?}]\nconcepts = {:?}\nlanguages = [\"en\", \"de\", \"fr\", \"es\"]\n\
         settings = [\"tgt\", \"unpatched\"]\nprompts = {:?}\nmax_new_tokens = 4\nthreads = 1\n\
         allow_beyond_context = true\n",
        config.models[0],
        config.concepts,
        file.display().to_string()
    );
    let replay = SweepConfig::from_toml(&toml).unwrap();
    let second = root.path().join("second");
    let outcome = sweep(&replay, &second).unwrap();
    assert!(
        !outcome.warnings.iter().any(|w| w.contains("tokenizer")),
        "{:?}",
        outcome.warnings
    );
    let (a, b) = (read_rows(&first).unwrap(), read_rows(&second).unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.unit, x.setting, x.start_layer),
            (&y.unit, y.setting, y.start_layer)
        );
        assert_eq!(y.p_src_out, x.p_tgt_out, "{y:?}");
        assert_eq!(y.rank_src_out, x.rank_tgt_out);
        assert_eq!(y.p_tgt_out, x.p_tgt_out);
    }
    assert!(
        a.iter().zip(&b).any(|(x, y)| x.p_src_out != y.p_src_out),
        "the table's set and the file's differ somewhere"
    );
    assert_eq!(prompt_lines(&second.join("prompts.jsonl")), swapped);
    let stored = std::fs::read_to_string(second.join("config.toml")).unwrap();
    assert!(
        stored.starts_with("# replayed_from: the prompt set") && stored.contains("swapped.jsonl"),
        "{stored}"
    );
    let run_json = std::fs::read_to_string(second.join("run.json")).unwrap();
    assert!(
        run_json.contains("\"fr\",\n        \"de\"") && !run_json.contains("\"it\""),
        "{run_json}"
    );

    // Another tokenizer's ids are refused, naming the line and the fix.
    let other: Vec<serde_json::Value> = lines
        .iter()
        .cloned()
        .map(|mut l| {
            l["tokenizer"] = serde_json::json!("0".repeat(64));
            l
        })
        .collect();
    let file = root.path().join("other.jsonl");
    write_lines(&file, &other);
    let err = sweep(
        &SweepConfig {
            prompts: Some(file.display().to_string()),
            ..replay.clone()
        },
        &root.path().join("x"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("other.jsonl: line 1") && err.contains("tokenizer") && err.contains(hash),
        "{err}"
    );
    assert!(!root.path().join("x").join("config.toml").exists());

    // A file without hashes (an older one, or another tool's) replays with a warning.
    let bare: Vec<serde_json::Value> = lines
        .iter()
        .cloned()
        .map(|mut l| {
            l.as_object_mut().unwrap().remove("tokenizer");
            l
        })
        .collect();
    let file = root.path().join("bare.jsonl");
    write_lines(&file, &bare);
    let outcome = sweep(
        &SweepConfig {
            prompts: Some(file.display().to_string()),
            ..replay.clone()
        },
        &root.path().join("y"),
    )
    .unwrap();
    // One warning for the missing hashes (the other is the context length, allowed here).
    let about: Vec<&String> = outcome
        .warnings
        .iter()
        .filter(|w| !w.contains("allow_beyond_context"))
        .collect();
    assert_eq!(about.len(), 1, "{:?}", outcome.warnings);
    assert!(about[0].contains("bare.jsonl"), "{:?}", outcome.warnings);

    // metric_ids naming an unknown column, or an id outside the vocabulary, are refused.
    for (column, ids, expected) in [
        (
            "p_src_elsewhere",
            serde_json::json!([1]),
            "not one of p_src_out",
        ),
        (
            "p_src_in",
            serde_json::json!([100000]),
            "outside the vocabulary",
        ),
    ] {
        let mut bad = lines.clone();
        bad[0]["metric_ids"][column] = ids;
        let file = root.path().join("bad.jsonl");
        write_lines(&file, &bad);
        let err = sweep(
            &SweepConfig {
                prompts: Some(file.display().to_string()),
                ..replay.clone()
            },
            &root.path().join(format!("z-{column}")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(expected) && err.contains("bad.jsonl"), "{err}");
    }
}

/// Each stop rule, naive and incremental alike: `max_new_tokens` generates exactly that many
/// tokens; `eos` stops only at an end-of-sequence token; `quote` at the first token holding a
/// quote. Greedy decoding is the same until a stop, so each rule's generation is a prefix of
/// the next one's.
#[test]
fn generation_stops_as_configured() {
    use xlpatch_core::config::Stop;
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let max = 8;
    let mut by_rule = Vec::new();
    for stop in [Stop::Quote, Stop::Eos, Stop::MaxNewTokens] {
        let mut per_method = Vec::new();
        for method in [Method::Incremental, Method::Naive] {
            let config = SweepConfig {
                settings: vec![Setting::Tgt, Setting::Unpatched],
                concept_pairs: 2,
                max_new_tokens: max,
                stop,
                method,
                ..config(&series)
            };
            assert_eq!(SweepConfig::from_toml(&config.to_toml()).unwrap(), config);
            let dir = root.path().join(format!("{stop:?}-{method:?}"));
            sweep_into(&config, &registry, &dir).unwrap();
            per_method.push(sorted(read_rows(&dir).unwrap()));
        }
        assert_same_rows(&per_method[1], &per_method[0]);
        by_rule.push(per_method.swap_remove(0));
    }
    let eos: Vec<u32> = ["step_1", "step_2"]
        .iter()
        .flat_map(|c| {
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(series.join(c).join("manifest.json")).unwrap(),
            )
            .unwrap();
            match &m["eos_token_id"] {
                serde_json::Value::Array(a) => {
                    a.iter().map(|v| v.as_u64().unwrap() as u32).collect()
                }
                serde_json::Value::Number(n) => vec![n.as_u64().unwrap() as u32],
                _ => Vec::new(),
            }
        })
        .collect();
    let (quote, eos_rows, exact) = (&by_rule[0], &by_rule[1], &by_rule[2]);
    let mut stopped_at_quote = 0;
    for ((q, e), x) in quote.iter().zip(eos_rows).zip(exact) {
        assert_eq!(x.generation_ids.len(), max, "{x:?}");
        assert!(x.generation_ids.starts_with(&e.generation_ids));
        assert!(e.generation_ids.starts_with(&q.generation_ids));
        if e.generation_ids.len() < max {
            assert!(eos.contains(e.generation_ids.last().unwrap()), "{e:?}");
        }
        if q.generation_ids.len() < e.generation_ids.len() {
            stopped_at_quote += 1;
            assert!(
                q.generation.ends_with('"') || q.generation.contains('"'),
                "{q:?}"
            );
        }
    }
    assert!(stopped_at_quote > 0, "some generation reached a quote");
}

/// `start_layers` selects rows (equal to the whole sweep's at those layers) and is checked
/// against every checkpoint; `[plugins.<kind>_params]` reach their plugins, TOML numbers
/// included.
#[test]
fn start_layers_and_plugin_params() {
    let registry = registry();
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let config = SweepConfig {
        settings: vec![Setting::SelfCopy, Setting::Unpatched],
        concept_pairs: 2,
        ..config(&series)
    };
    let sweep = |config: &SweepConfig, dir: &str| {
        sweep_into(config, &registry, &root.path().join(dir))
            .map(|_| sorted(read_rows(&root.path().join(dir)).unwrap()))
    };
    let all = sweep(&config, "all").unwrap();
    // The series' checkpoints have 6 layers each; "1..3" is in both.
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
    // A layer the checkpoints lack is refused before anything runs, naming the first.
    let over = SweepConfig::from_toml(&text.replace("\"1..3\"", "[1, 6]")).unwrap();
    let err = sweep(&over, "over").unwrap_err().to_string();
    assert!(err.contains("layer 6") && err.contains("step_1"), "{err}");
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
