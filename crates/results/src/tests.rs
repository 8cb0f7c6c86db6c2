//! The results files' round trips, crash repair, merge, and their compatibility with the
//! files earlier versions wrote.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

fn row(unit: &str, n: usize, j: usize) -> Row {
    Row {
        unit: unit.into(),
        unit_rows: n,
        checkpoint: "step_1".into(),
        step: Some(1),
        model_hash: "abc".into(),
        variant: Variant::FromLayer,
        setting: Setting::Tgt,
        in_lang: "fr".into(),
        out_lang: "de".into(),
        source: "book".into(),
        target: "tree".into(),
        start_layer: j,
        n_sources: 1,
        p_src_out: 0.25,
        p_tgt_out: 0.5,
        p_src_in: 0.0,
        p_tgt_in: 0.0,
        p_src_other: 0.0,
        p_tgt_other: 0.0,
        p_src_out_aug: 0.3,
        p_tgt_out_aug: 0.55,
        rank_src_out: 2,
        rank_tgt_out: 1,
        gen_src: false,
        gen_tgt: true,
        generation: "Baum\"\n, x".into(),
        generation_ids: vec![3, 4],
        per_lang: [("p_src_de".to_string(), 0.25f32)].into_iter().collect(),
    }
}

fn unit(name: &str, n: usize) -> Vec<Row> {
    (0..n).map(|j| row(name, n, j)).collect()
}

fn csv_records(dir: &Path) -> Vec<csv::StringRecord> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(dir.join(CSV_FILE))
        .unwrap()
        .records()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_directory_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = ResultsWriter::open(dir.path()).unwrap();
    let err = ResultsWriter::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("another sweep is writing"),
        "{err}"
    );
    drop(first);
    ResultsWriter::open(dir.path()).unwrap();
}

#[test]
fn rows_round_trip_and_the_csv_has_one_record_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ResultsWriter::open(dir.path()).unwrap();
    w.append_unit(&unit("a", 2)).unwrap();
    w.append_unit(&unit("b", 3)).unwrap();
    assert!(w.append_unit(&unit("a", 2)).is_err(), "no duplicate unit");
    drop(w);
    assert_eq!(
        read_rows(dir.path()).unwrap(),
        [unit("a", 2), unit("b", 3)].concat()
    );
    let records = csv_records(dir.path());
    assert_eq!(records.len(), 6);
    // The columns earlier versions wrote, in their order.
    let header: Vec<&str> = records[0].iter().collect();
    assert_eq!(
        header,
        [
            "unit",
            "unit_rows",
            "checkpoint",
            "step",
            "model_hash",
            "variant",
            "setting",
            "in_lang",
            "out_lang",
            "source",
            "target",
            "start_layer",
            "n_sources",
            "p_src_out",
            "p_tgt_out",
            "p_src_in",
            "p_tgt_in",
            "p_src_other",
            "p_tgt_other",
            "p_src_out_aug",
            "p_tgt_out_aug",
            "rank_src_out",
            "rank_tgt_out",
            "gen_src",
            "gen_tgt",
            "generation",
            "generation_ids",
            "p_src_de"
        ]
    );
    let first: Vec<&str> = records[1].iter().collect();
    assert_eq!(first[5..7], ["from_layer", "tgt"]);
    assert_eq!(first[13], "0.25");
    // The generation keeps its quote, line break and comma (RFC 4180 quoting).
    assert_eq!(first[25], "Baum\"\n, x");
    assert_eq!(first[26..], ["3 4", "0.25"]);
}

#[test]
fn a_torn_or_incomplete_unit_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ResultsWriter::open(dir.path()).unwrap();
    w.append_unit(&unit("a", 2)).unwrap();
    drop(w);
    // A kill in the middle of unit b: one whole row, then half a row.
    let b = unit("b", 3);
    let mut tail = serde_json::to_string(&b[0]).unwrap() + "\n";
    tail.push_str(&serde_json::to_string(&b[1]).unwrap()[..40]);
    let path = dir.path().join(JSONL_FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(tail.as_bytes()).unwrap();
    drop(f);
    let mut w = ResultsWriter::open(dir.path()).unwrap();
    assert!(w.is_done("a") && !w.is_done("b"));
    assert_eq!(read_rows(dir.path()).unwrap(), unit("a", 2));
    w.append_unit(&b).unwrap();
    drop(w);
    assert_eq!(read_rows(dir.path()).unwrap(), [unit("a", 2), b].concat());
    assert_eq!(csv_records(dir.path()).len(), 1 + 5);
}

#[test]
fn a_reader_is_told_what_was_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ResultsWriter::open(dir.path()).unwrap();
    w.append_unit(&unit("a", 2)).unwrap();
    drop(w);
    // Two rows of the three of unit b, a second copy of unit a, then half a row.
    let mut tail = String::new();
    for r in unit("b", 3).iter().take(2).chain(&unit("a", 2)) {
        tail.push_str(&(serde_json::to_string(r).unwrap() + "\n"));
    }
    tail.push_str(&serde_json::to_string(&row("c", 1, 0)).unwrap()[..25]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(JSONL_FILE))
        .unwrap()
        .write_all(tail.as_bytes())
        .unwrap();
    let (rows, dropped) = read_rows_noting_dropped(dir.path()).unwrap();
    assert_eq!(rows, unit("a", 2));
    assert_eq!(dropped.torn_tail_bytes, 25);
    assert_eq!(dropped.incomplete, [("b".to_string(), 2, Some(3))]);
    assert_eq!(dropped.repeated, ["a"]);
    assert!(!dropped.is_empty());
    // Once repaired, nothing is left to drop.
    drop(ResultsWriter::open(dir.path()).unwrap());
    let (rows, dropped) = read_rows_noting_dropped(dir.path()).unwrap();
    assert_eq!(rows, unit("a", 2));
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn merge_joins_shards_and_refuses_mismatches() {
    let root = tempfile::tempdir().unwrap();
    let (s0, s1, s2) = (
        root.path().join("s0"),
        root.path().join("s1"),
        root.path().join("s2"),
    );
    for (dir, units) in [(&s0, ["ckpt/a", "ckpt/c"]), (&s1, ["ckpt/b", "ckpt/c"])] {
        let mut w = ResultsWriter::open(dir).unwrap();
        for u in units {
            w.append_unit(&unit(u, 2)).unwrap();
        }
        std::fs::write(dir.join("config.toml"), "seed = 1\n").unwrap();
        plan_files(dir, &["a", "b", "c"], None);
    }
    let out = root.path().join("merged");
    assert_eq!(merge(&[s0.clone(), s1.clone()], &out).unwrap(), 6);
    assert_eq!(
        read_rows(&out).unwrap(),
        [unit("ckpt/a", 2), unit("ckpt/c", 2), unit("ckpt/b", 2)].concat()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("config.toml")).unwrap(),
        "seed = 1\n"
    );
    assert_eq!(csv_records(&out).len(), 1 + 6);
    assert!(
        merge(&[s0.clone(), s1.clone()], &out).is_err(),
        "no overwrite"
    );
    // Another config.
    let mut w = ResultsWriter::open(&s2).unwrap();
    w.append_unit(&unit("ckpt/d", 2)).unwrap();
    std::fs::write(s2.join("config.toml"), "seed = 2\n").unwrap();
    plan_files(&s2, &["a", "b", "c"], None);
    let err = merge(&[s0, s2], &root.path().join("m2")).unwrap_err();
    assert!(
        err.to_string().contains("config.toml differs") && err.to_string().contains("seed: 1 → 2"),
        "{err}"
    );
}

/// `run.json` (one checkpoint, `ckpt`) and `prompts.jsonl` (the targets `items`) of a
/// sweep, with its shard record.
fn plan_files(dir: &Path, items: &[&str], shard: Option<ShardRecord>) {
    let run = RunFile {
        format_version: RUN_FORMAT_VERSION,
        models: vec![ModelEntry {
            architecture: "Llama".into(),
            checkpoint: "ckpt".into(),
            hash: "h".into(),
            step: None,
        }],
        shard,
        study: None,
    };
    std::fs::write(dir.join(RUN_FILE), run.to_text()).unwrap();
    let prompts: String = items
        .iter()
        .map(|i| json!({"item": i, "role": "target"}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join(PROMPTS_FILE), prompts).unwrap();
}

#[test]
fn merge_refuses_a_missing_or_repeated_shard_and_an_incomplete_one() {
    let root = tempfile::tempdir().unwrap();
    let items = ["a", "b", "c"];
    let shard = |k: usize| {
        let dir = root.path().join(format!("s{k}"));
        let mut w = ResultsWriter::open(&dir).unwrap();
        for (i, item) in items.iter().enumerate() {
            if i % 2 == k {
                w.append_unit(&unit(&format!("ckpt/{item}"), 2)).unwrap();
            }
        }
        plan_files(&dir, &items, Some(ShardRecord { count: 2, index: k }));
        dir
    };
    let (s0, s1) = (shard(0), shard(1));
    let err = |inputs: &[PathBuf]| {
        let out = root.path().join("never");
        let e = merge(inputs, &out).unwrap_err().to_string();
        assert!(!out.exists(), "a refused merge writes nothing");
        e
    };
    // One shard of two.
    let e = err(std::slice::from_ref(&s0));
    assert!(e.contains("shard 1/2 of 2 is missing (given: 0/2)"), "{e}");
    // The same shard twice: as one directory, and as a copy.
    let e = err(&[s0.clone(), s0.clone()]);
    assert!(e.contains("the same directory"), "{e}");
    let copy = root.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(&s0).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let e = err(&[s0.clone(), copy.clone()]);
    assert!(e.contains("both hold shard 0/2"), "{e}");
    // Every shard: merged, and the merged run.json is a whole sweep's.
    let out = root.path().join("merged");
    assert_eq!(merge(&[s1.clone(), s0.clone()], &out).unwrap(), 6);
    assert_eq!(RunFile::read(&out).unwrap().shard, None);
    // A shard whose last unit is missing (killed before it was written).
    let units = std::fs::read_to_string(s0.join(JSONL_FILE)).unwrap();
    let cut: Vec<&str> = units.lines().collect();
    std::fs::write(s0.join(JSONL_FILE), cut[..2].join("\n") + "\n").unwrap();
    let e = err(&[s0.clone(), s1.clone()]);
    assert!(
        e.contains("1 of the sweep's 3 units are in no input (first: ckpt/c)")
            && e.contains("resume it"),
        "{e}"
    );
    // Results that record no shard (older ones, or a whole sweep): complete, they merge;
    // incomplete, they are refused.
    for d in [&s0, &s1] {
        let mut run = RunFile::read(d).unwrap();
        run.shard = None;
        std::fs::write(d.join(RUN_FILE), run.to_text()).unwrap();
    }
    std::fs::write(s0.join(JSONL_FILE), &units).unwrap();
    assert_eq!(
        merge(&[s0.clone(), s1.clone()], &root.path().join("old")).unwrap(),
        6
    );
    let e = err(std::slice::from_ref(&s0));
    assert!(e.contains("record no shard"), "{e}");
    // A whole sweep with shards.
    plan_files(&s1, &items, Some(ShardRecord { count: 2, index: 1 }));
    let e = err(&[s0, s1]);
    assert!(e.contains("shards of one sweep are split alike"), "{e}");
}

/// `run.json` as earlier versions wrote it (a `json!` map, keys sorted).
#[test]
fn run_json_keeps_the_bytes_earlier_versions_wrote() {
    let old = json!({
        "format_version": 1,
        "models": [{"checkpoint": "step_0", "step": 0, "hash": "h0", "architecture": "Llama"},
                   {"checkpoint": "x", "step": null, "hash": "h1", "architecture": "Llama"}],
    });
    let old = serde_json::to_string_pretty(&old).unwrap() + "\n";
    let models = vec![
        ModelEntry {
            architecture: "Llama".into(),
            checkpoint: "step_0".into(),
            hash: "h0".into(),
            step: Some(0),
        },
        ModelEntry {
            architecture: "Llama".into(),
            checkpoint: "x".into(),
            hash: "h1".into(),
            step: None,
        },
    ];
    let run = RunFile {
        format_version: RUN_FORMAT_VERSION,
        models,
        shard: None,
        study: Some(Study {
            concepts: "fixtures/concepts".into(),
            pairs: vec![["fr".into(), "de".into()]],
        }),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(RUN_FILE), &old).unwrap();
    // An old directory resumes: its run.json only lacks the study.
    run.write_or_check(dir.path(), &[]).unwrap();
    let other = RunFile {
        models: run.models[..1].to_vec(),
        ..run.clone()
    };
    let err = other.write_or_check(dir.path(), &[]).unwrap_err();
    // The refusal names what differs.
    assert!(
        err.to_string().contains("another sweep")
            && err
                .to_string()
                .contains("models[1].checkpoint: \"x\" → (absent)"),
        "{err}"
    );
    let read = RunFile::read(dir.path()).unwrap();
    assert_eq!(read.models, run.models);
    assert_eq!(read.study, None);
}

/// `prompts.jsonl` as earlier versions wrote it (a `json!` map per line, keys sorted).
#[test]
fn prompt_records_keep_the_bytes_earlier_versions_wrote() {
    let old = json!({
        "item": "fr-de/book>tree", "role": "target", "setting": null, "kind": "translation",
        "concept": "tree", "in_lang": "fr", "out_lang": "de", "word": "arbre", "answer": "Baum",
        "demos": ["day"], "text": "x \"arbre\" - Deutsch: \"", "word_span": [3, 8],
        "ids": [1, 2, 3], "word_end": 1, "merged": false, "prefix": 0, "prefix_len": 0,
        "metric_ids": {"p_src_out": [4], "p_tgt_out": [5]},
    })
    .to_string();
    let record: PromptRecord = serde_json::from_str(&old).unwrap();
    assert_eq!(record.kind, PromptKind::Translation);
    assert_eq!(record.role, Role::Target);
    assert_eq!(prompts_text(std::slice::from_ref(&record)), old + "\n");
    let source = json!({
        "item": "fr-de/book>tree", "role": "source", "setting": "self", "kind": "cut",
        "concept": "book", "in_lang": "de", "out_lang": "de", "word": "Buch", "answer": "Buch",
        "demos": [], "text": "Buch", "word_span": [0, 4], "ids": [1], "word_end": 0,
        "merged": false, "prefix": 0, "prefix_len": 0,
    })
    .to_string();
    let record: PromptRecord = serde_json::from_str(&source).unwrap();
    assert_eq!(record.setting, Some(Setting::SelfCopy));
    assert_eq!(prompts_text(&[record]), source + "\n");
}

/// The tokenizer's hash is written where it is known and keeps its alphabetical place; a
/// file without it (older, or another tool's) still reads.
#[test]
fn prompt_records_carry_the_tokenizer_hash() {
    let line = json!({
        "item": "fr-de/book>tree", "role": "source", "setting": "self", "kind": "cut",
        "concept": "book", "in_lang": "de", "out_lang": "de", "word": "Buch", "answer": "Buch",
        "demos": [], "text": "Buch", "word_span": [0, 4], "ids": [1], "word_end": 0,
        "merged": false, "prefix": 0, "prefix_len": 0, "tokenizer": "ab12",
    })
    .to_string();
    let record: PromptRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(record.tokenizer.as_deref(), Some("ab12"));
    assert_eq!(
        prompts_text(std::slice::from_ref(&record)),
        line.clone() + "\n"
    );
    let without = PromptRecord {
        tokenizer: None,
        ..record
    };
    assert!(!prompts_text(&[without]).contains("tokenizer"));
}

#[test]
fn a_source_prompt_names_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(PROMPTS_FILE);
    let line = json!({
        "item": "fr-de/book>tree", "role": "source", "setting": null, "kind": "cut",
        "concept": "book", "in_lang": "de", "out_lang": "de", "word": "Buch", "answer": "Buch",
        "demos": [], "text": "Buch", "word_span": [0, 4], "ids": [1], "word_end": 0,
        "merged": false,
    });
    std::fs::write(&path, format!("\n{line}\n")).unwrap();
    let err = read_prompts(&path).unwrap_err().to_string();
    assert!(
        err.contains("line 2") && err.contains("prompts.jsonl"),
        "{err}"
    );
}

#[test]
fn the_study_of_an_old_config_is_read_from_its_toml() {
    let text = "models = [\"a\"]\nconcepts = \"fixtures/concepts\"\npairs = [[\"fr\", \"de\"], \
                [\"de\", \"it\"]]\n\n[plugins]\nconcepts = \"no\"\n";
    let study = Study::from_config_toml(text).unwrap();
    assert_eq!(study.concepts, "fixtures/concepts");
    assert_eq!(
        study.pairs,
        [["fr", "de"], ["de", "it"]].map(|p| p.map(String::from))
    );
    assert_eq!(Study::from_config_toml("seed = 1\n"), None);
}

/// A row with NaN is refused, not written as null; a directory an older version wrote with a
/// null in a number column is refused naming the file, the line and the fix.
#[test]
fn non_finite_rows_are_not_written_and_old_nulls_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ResultsWriter::open(dir.path()).unwrap();
    w.append_unit(&unit("a", 2)).unwrap();
    let mut bad = unit("b", 2);
    bad[1].per_lang.insert("p_tgt_de".into(), f32::NAN);
    let err = w.append_unit(&bad).unwrap_err().to_string();
    assert!(
        err.contains("unit b") && err.contains("p_tgt_de") && err.contains("NaN"),
        "{err}"
    );
    bad[1].per_lang.remove("p_tgt_de");
    bad[0].p_src_out = f32::INFINITY;
    assert!(w.append_unit(&bad).is_err());
    drop(w);
    assert_eq!(read_rows(dir.path()).unwrap(), unit("a", 2));

    // What an older sweep left: NaN written as null in unit b's second row (line 4).
    let old = serde_json::to_string(&unit("b", 2)[1])
        .unwrap()
        .replace("\"p_src_out\":0.25", "\"p_src_out\":null");
    assert!(old.contains("null"), "{old}");
    let path = dir.path().join(JSONL_FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{}", serde_json::to_string(&unit("b", 2)[0]).unwrap()).unwrap();
    writeln!(f, "{old}").unwrap();
    drop(f);
    let err = read_rows(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("results.jsonl: line 4")
            && err.contains("unit \"b\"")
            && err.contains("resume"),
        "{err}"
    );
}
