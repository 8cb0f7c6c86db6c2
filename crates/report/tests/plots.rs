//! The plots on data at the edges: probabilities far below 1 (an untrained model) and a series
//! of one checkpoint.

use std::path::Path;

use serde_json::Value;
use xlpatch_report::{Options, build};

use crate::fixture::{self, concepts_dir};

/// Rewrites every line of `path` that `keep` keeps with `edit`.
fn edit_lines(path: &Path, keep: impl Fn(&Value) -> bool, edit: impl Fn(&mut Value)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if keep(&v) {
            edit(&mut v);
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
}

/// The texts of an SVG's `<text>` elements, trimmed.
fn texts(svg: &str) -> Vec<String> {
    svg.split("</text>")
        .filter_map(|part| part.rsplit_once('>'))
        .map(|(_, t)| t.trim().to_string())
        .collect()
}

/// A PNG's (width, height), from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", path.display());
    let at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (at(16), at(20))
}

#[test]
fn layer_curves_of_tiny_probabilities_fill_their_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    fixture::write_results(&results, concepts_dir().to_str().unwrap());
    // Every probability 10⁴ times smaller: the largest is about 5e-5.
    edit_lines(
        &results.join("results.jsonl"),
        |_| true,
        |v| {
            for (k, x) in v.as_object_mut().unwrap() {
                if k.starts_with("p_") {
                    *x = (x.as_f64().unwrap() * 1e-4).into();
                }
            }
        },
    );
    let written = build(&results, &tmp.path().join("report"), &Options::default()).unwrap();
    let svg = written
        .plots
        .iter()
        .find(|p| p.ends_with("layers_tgt_fr-de.svg"))
        .unwrap();
    let texts = texts(&std::fs::read_to_string(svg).unwrap());
    // The y axis runs to just above 5e-5 (not to 1e-3, where the curves would lie flat on
    // the floor), its ticks written as such.
    assert!(
        texts.iter().any(|t| t == "4.0e-5"),
        "no tick at 4e-5: the axis is not scaled to the data: {texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t == "0.0010"),
        "the axis runs to 1e-3: {texts:?}"
    );
}

#[test]
fn p_src_out_has_layer_curves_on_its_own_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    fixture::write_results(&results, concepts_dir().to_str().unwrap());
    // As in a trained model: P(C_S in out_T) about 1e-3 of P(C_T in out_T) (about 0.4).
    edit_lines(
        &results.join("results.jsonl"),
        |_| true,
        |v| {
            let p = v["p_src_out"].as_f64().unwrap();
            v["p_src_out"] = (p * 1e-3).into();
        },
    );
    let written = build(&results, &tmp.path().join("report"), &Options::default()).unwrap();
    let ticks = |stem: &str| {
        let path = written
            .plots
            .iter()
            .find(|p| p.ends_with(format!("{stem}.svg")))
            .unwrap_or_else(|| panic!("no plot {stem}: {:?}", written.plots));
        texts(&std::fs::read_to_string(path).unwrap())
    };
    // Every metric: the axis reaches P(C_T in out_T)'s 0.48.
    assert!(ticks("layers_tgt_fr-de").iter().any(|t| t == "0.4"));
    // P(C_S in out_T) alone: its largest value is 4.4e-4, and the axis just above it.
    let alone = ticks("layers_src_tgt_fr-de");
    assert!(alone.iter().any(|t| t == "4.0e-4"), "{alone:?}");
    assert!(!alone.iter().any(|t| t == "0.4" || t == "P(C_T in out_T)"));
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(html.contains("P(C_S in out_T): setting tgt, French → German"));
}

#[test]
fn one_checkpoint_gets_a_readable_colour_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    fixture::write_results(&results, concepts_dir().to_str().unwrap());
    edit_lines(
        &results.join("results.jsonl"),
        |v| v["checkpoint"] == "step_100",
        |_| {},
    );
    let written = build(&results, &tmp.path().join("report"), &Options::default()).unwrap();
    let png = written
        .plots
        .iter()
        .find(|p| p.ends_with("heatmap_tgt.png"))
        .unwrap();
    let (_, h) = png_size(png);
    // Title (64) + colour bar with its margins (at least 40 + 200 + 60) + bottom (20); a
    // panel of one checkpoint alone is 124 high.
    assert!(
        h >= 384,
        "the heatmap is {h} px high: its colour bar is squeezed"
    );
    // The emergence plot of one checkpoint has its point and its label.
    let texts = texts(
        &std::fs::read_to_string(
            written
                .plots
                .iter()
                .find(|p| p.ends_with("emergence.svg"))
                .unwrap(),
        )
        .unwrap(),
    );
    assert!(
        texts.iter().any(|t| t == "100"),
        "no step label at the one checkpoint: {texts:?}"
    );
}
