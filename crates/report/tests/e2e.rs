//! A report built from the small results directory of `fixture.rs`: every file is written,
//! the plots are valid PNG and SVG, the page holds the plots, the tables, the config and the
//! model hashes, and the review sheet is well-formed CSV with one record per generation.

use std::path::Path;

use xlpatch_report::{Category, Options, build};

use crate::fixture::{self, concepts_dir};

/// Splits RFC 4180 CSV into records of fields (quoted fields may hold commas, quotes and
/// line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "the CSV ends inside a quoted field");
    assert!(
        field.is_empty() && record.is_empty(),
        "the CSV does not end with a newline"
    );
    records
}

pub(crate) fn build_small(root: &Path) -> xlpatch_report::Written {
    let results = root.join("results");
    fixture::write_results(&results, concepts_dir().to_str().unwrap());
    build(&results, &root.join("report"), &Options::default()).unwrap()
}

#[test]
fn a_report_holds_plots_tables_config_and_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let written = build_small(tmp.path());
    assert_eq!(written.rows, fixture::n_rows());

    // 1 emergence plot, 1 heatmap and, per target pair of setting tgt, 2 layer-curve plots
    // (P(C_S in out_T) alone, every metric), each as SVG and PNG.
    assert_eq!(written.plots.len(), 2 * 6, "{:?}", written.plots);
    for p in &written.plots {
        let bytes = std::fs::read(p).unwrap();
        match p.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                assert!(
                    bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                    "{} is not a PNG",
                    p.display()
                );
                assert!(bytes.len() > 5_000, "{} is nearly empty", p.display());
            }
            Some("svg") => {
                let text = String::from_utf8(bytes).unwrap();
                assert!(
                    text.contains("<svg") && text.trim_end().ends_with("</svg>"),
                    "{}",
                    p.display()
                );
                assert!(
                    text.contains("P(C_S in out_T)"),
                    "{} has no metric label",
                    p.display()
                );
            }
            _ => panic!("unexpected plot file {}", p.display()),
        }
    }

    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 6, "every plot inline");
    // Self-contained: no script, nothing fetched (SVG's xmlns URL is a name, not a fetch).
    for banned in [
        "<script",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(!html.contains(banned), "the page holds {banned:?}");
    }
    for needle in [
        "Emergence across training",
        "Checkpoint × start-layer heatmaps",
        "Layer curves: setting tgt, French → German",
        "Numbers behind this plot",
        "hash-of-step_100",
        "LlamaForCausalLM",
        "concept_pairs = 3",
        "right concept, wrong language",
        "At a glance",
        "data:font/ttf;base64,",
    ] {
        assert!(html.contains(needle), "the page lacks {needle:?}");
    }
    // The table behind the step-100 layer curve of fr→de: the mean of p_src_out at j = 0
    // over the three concept pairs is 0.4 + 0.02 (0 + 1 + 2) / 3 = 0.42.
    assert!(
        html.contains("<td>step 100</td><td>0</td><td>0.4200 ["),
        "no 0.42 row"
    );

    // The review sheet: one record per generation (an unpatched one once, not once per start
    // layer), 14 columns, human_label empty.
    let review = std::fs::read_to_string(&written.review).unwrap();
    let records = parse_csv(&review);
    assert_eq!(records[0].len(), 14);
    assert_eq!(records[0][8], "prompt");
    assert_eq!(records[0][13], "human_label");
    assert_eq!(records.len(), 1 + fixture::n_generations());
    assert!(
        records[1..]
            .iter()
            .all(|r| r.len() == 14 && r[13].is_empty())
    );
    // The prompt text keeps its line break and quotes.
    let copy = records
        .iter()
        .find(|r| r[11] == "copy")
        .expect("a copied input word");
    assert!(copy[8].contains("\" - Deutsch: \"Tag\"\n"), "{:?}", copy[8]);

    let count = |c: Category| written.categories.iter().find(|(k, _)| *k == c).unwrap().1;
    // step_0 never closes its quote; at step_100, the first concept pair of each target pair
    // answers C_S and the second copies its input word, under setting tgt at both layers.
    assert_eq!(count(Category::Unparseable), fixture::n_generations() / 2);
    assert_eq!(count(Category::CorrectSource), 2 * fixture::LAYERS);
    assert_eq!(count(Category::Copy), 2 * fixture::LAYERS);
    let total: usize = written.categories.iter().map(|(_, n)| n).sum();
    assert_eq!(total, fixture::n_generations());

    let errors = std::fs::read_to_string(&written.errors).unwrap();
    assert!(errors.starts_with("checkpoint,setting,start_layer,correct_src,"));
    assert!(
        errors.contains("\nstep_100,tgt,0,2,0,0,0,2,0,0,0,2,0\n"),
        "{errors}"
    );
    let stats = std::fs::read_to_string(&written.stats).unwrap();
    let line = stats
        .lines()
        .find(|l| l.starts_with("step_100,100,tgt,fr,de,0,p_src_out,"))
        .expect("a stats line for step_100, tgt, fr-de, j = 0");
    let mean: f64 = line.split(',').nth(7).unwrap().parse().unwrap();
    assert!((mean - 0.42).abs() < 1e-6, "{line}");
}

#[test]
fn a_report_is_reproducible() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (wa, wb) = (build_small(a.path()), build_small(b.path()));
    for (x, y) in [(&wa.stats, &wb.stats), (&wa.review, &wb.review)] {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
    for (x, y) in wa.plots.iter().zip(&wb.plots) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
}

#[test]
fn bad_input_is_a_clear_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    // Not a results directory.
    let err = build(tmp.path(), &out, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("results.jsonl") && err.contains("missing"),
        "{err}"
    );
    // A concept table that is not where the config says.
    let results = tmp.path().join("results");
    fixture::write_results(&results, "no/such/table");
    let err = build(&results, &out, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.toml") && err.contains("--concepts"),
        "{err}"
    );
    // ... unless it is given.
    let options = Options {
        concepts: Some(concepts_dir()),
        ..Options::default()
    };
    build(&results, &out, &options).unwrap();
    // A damaged run.json.
    std::fs::write(results.join("run.json"), "{").unwrap();
    let err = build(&results, &out, &options).unwrap_err().to_string();
    assert!(err.contains("run.json"), "{err}");
}

#[test]
fn results_whose_run_json_predates_the_study_still_report() {
    let tmp = tempfile::tempdir().unwrap();
    let new = build_small(tmp.path());
    // run.json as earlier versions wrote it: no study, which is then read from config.toml.
    let results = tmp.path().join("results");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("run.json")).unwrap()).unwrap();
    let old = serde_json::json!({"format_version": 1, "models": run["models"]});
    std::fs::write(
        results.join("run.json"),
        serde_json::to_string_pretty(&old).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("old");
    let old = build(&results, &out, &Options::default()).unwrap();
    assert_eq!(
        std::fs::read(&new.stats).unwrap(),
        std::fs::read(&old.stats).unwrap()
    );
    // Neither in run.json nor in the config: an error naming the config.
    std::fs::write(results.join("config.toml"), "seed = 0\n").unwrap();
    let err = build(&results, &out, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.toml") && err.contains("study"),
        "{err}"
    );
}

/// `stats.csv` and `errors.csv` of the fixed results of `fixture.rs`, as insta snapshots
/// (`tests/snapshots/`): any change to a number, a column or the quoting shows in review.
#[test]
fn stats_and_errors_of_a_fixed_run_are_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let written = build_small(tmp.path());
    insta::assert_snapshot!(
        "stats_csv",
        std::fs::read_to_string(&written.stats).unwrap()
    );
    insta::assert_snapshot!(
        "errors_csv",
        std::fs::read_to_string(&written.errors).unwrap()
    );
}
