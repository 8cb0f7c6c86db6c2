//! What the report counts and says about its input: unique generations (an unpatched
//! generation is written once per start layer), meaningful resample counts, sweeps that
//! generated nothing, units dropped from an interrupted run, and checkpoints with identical
//! weights.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use xlpatch_report::{Category, Options, build};

use crate::fixture::{self, concepts_dir};

fn results_dir(root: &Path) -> PathBuf {
    let results = root.join("results");
    fixture::write_results(&results, concepts_dir().to_str().unwrap());
    results
}

fn csv_records(path: &Path) -> Vec<csv::StringRecord> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap()
        .records()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Rewrites every row of `results.jsonl` with `edit`.
fn edit_rows(results: &Path, edit: impl Fn(&mut Value)) {
    let path = results.join("results.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        edit(&mut v);
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

/// The fixture has 2 checkpoints × 2 target pairs × 3 concept pairs = 12 target prompts, each
/// with setting `tgt` at 2 start layers and one unpatched generation (written at both).
const UNIQUE_GENERATIONS: usize = 12 * fixture::LAYERS + 12;

#[test]
fn an_unpatched_generation_is_counted_and_reviewed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let results = results_dir(tmp.path());
    let out = tmp.path().join("report");
    let written = build(&results, &out, &Options::default()).unwrap();
    assert_eq!(written.rows, fixture::n_rows());

    let total: usize = written.categories.iter().map(|(_, n)| n).sum();
    assert_eq!(total, UNIQUE_GENERATIONS, "{:?}", written.categories);

    // The review sheet asks for each human label once.
    let review = csv_records(&written.review);
    assert_eq!(review.len(), 1 + UNIQUE_GENERATIONS);
    let unpatched: Vec<_> = review.iter().filter(|r| &r[2] == "unpatched").collect();
    assert_eq!(unpatched.len(), 12);
    let mut keys: Vec<String> = unpatched
        .iter()
        .map(|r| format!("{}/{}-{}/{}>{}", &r[0], &r[4], &r[5], &r[6], &r[7]))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 12, "each unpatched generation once");

    // errors.csv: the unpatched generations of a checkpoint are one line, counted once.
    let errors = csv_records(&written.errors);
    let lines: Vec<_> = errors[1..]
        .iter()
        .filter(|r| &r[1] == "unpatched")
        .collect();
    assert_eq!(lines.len(), fixture::CHECKPOINTS.len(), "{errors:?}");
    for l in lines {
        let n: usize = l.iter().skip(3).map(|c| c.parse::<usize>().unwrap()).sum();
        assert_eq!(n, 6, "{l:?}");
    }

    // The page states what it counts.
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(
        html.contains(&format!("{UNIQUE_GENERATIONS} unique generations")),
        "the page does not state the count of unique generations"
    );
}

#[test]
fn resample_counts_without_an_interval_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let results = results_dir(tmp.path());
    for resamples in [0, 1] {
        let options = Options {
            resamples,
            ..Options::default()
        };
        let err = build(&results, &tmp.path().join("report"), &options)
            .expect_err("an interval from fewer than 2 resamples")
            .to_string();
        assert!(
            err.contains("--resamples") && err.contains(&resamples.to_string()),
            "{err}"
        );
    }
    // Two is the least that has a spread.
    let options = Options {
        resamples: 2,
        ..Options::default()
    };
    build(&results, &tmp.path().join("report"), &options).unwrap();
}

#[test]
fn a_sweep_without_generations_is_not_called_unparseable() {
    let tmp = tempfile::tempdir().unwrap();
    let results = results_dir(tmp.path());
    // What `max_new_tokens = 0` writes: no token, no text.
    edit_rows(&results, |v| {
        v["generation"] = "".into();
        v["generation_ids"] = Value::Array(Vec::new());
    });
    let written = build(&results, &tmp.path().join("report"), &Options::default()).unwrap();
    let count = |c: Category| {
        written
            .categories
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |x| x.1)
    };
    assert_eq!(count(Category::Unparseable), 0, "{:?}", written.categories);
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(
        html.contains("No generations were produced"),
        "the page does not say that nothing was generated"
    );
    assert!(html.contains("max_new_tokens"));
    let errors = std::fs::read_to_string(&written.errors).unwrap();
    assert!(
        errors.lines().next().unwrap().contains("not_generated"),
        "{errors}"
    );
    let review = csv_records(&written.review);
    assert!(review[1..].iter().all(|r| &r[11] == "not_generated"));
}

#[test]
fn a_torn_unit_is_reported_with_its_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let results = results_dir(tmp.path());
    // An interrupted run: 2 of the 4 rows of a unit, then half a line.
    let path = results.join("results.jsonl");
    let first = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut row: Value = serde_json::from_str(&first).unwrap();
    row["unit"] = "step_100/fr-de/cat>water".into();
    row["source"] = "cat".into();
    row["target"] = "water".into();
    let line = row.to_string();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(f, "{line}\n{line}\n{}", &line[..30]).unwrap();
    drop(f);

    let written = build(&results, &tmp.path().join("report"), &Options::default()).unwrap();
    assert_eq!(written.rows, fixture::n_rows(), "the torn unit is not used");
    let html = std::fs::read_to_string(&written.html).unwrap();
    for needle in ["step_100/fr-de/cat&gt;water", "2 of its 4 rows", "30 bytes"] {
        assert!(html.contains(needle), "the page does not say {needle:?}");
    }
    let notes = written.notes.join("\n");
    assert!(
        notes.contains("step_100/fr-de/cat>water") && notes.contains("2 of its 4 rows"),
        "{notes}"
    );
}

#[test]
fn checkpoints_with_identical_weights_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let results = results_dir(tmp.path());
    // What a hub series records (crates/series writes series.json beside the results).
    let series = serde_json::json!({
        "format_version": 1,
        "specs": ["hf://org/model"],
        "checkpoints": [
            {"checkpoint": "step_0", "duplicate_of": null},
            {"checkpoint": "step_100", "duplicate_of": "step_0"},
        ],
        "duplicates": [["step_0", "step_100"]],
        "skipped": [],
    });
    std::fs::write(results.join("series.json"), series.to_string()).unwrap();
    let written = build(&results, &tmp.path().join("report"), &Options::default()).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(
        html.contains("Identical weights: step 100 (step_100) is identical to step 0 (step_0)"),
        "the page does not name the duplicate checkpoints"
    );

    // Without series.json, equal content hashes in run.json say the same.
    std::fs::remove_file(results.join("series.json")).unwrap();
    let run = results.join("run.json");
    let text = std::fs::read_to_string(&run)
        .unwrap()
        .replace("hash-of-step_100", "hash-of-step_0");
    std::fs::write(&run, text).unwrap();
    let written = build(&results, &tmp.path().join("report2"), &Options::default()).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(
        html.contains("Identical weights: step 100 (step_100) is identical to step 0 (step_0)"),
        "the page does not name checkpoints with equal hashes"
    );
}
