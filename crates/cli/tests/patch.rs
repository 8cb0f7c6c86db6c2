//! `xlpatch patch` on the fixture series' last checkpoint: its numbers equal the sweep's row
//! for the same case (the target and source prompts of a sweep's `prompts.jsonl`), and a
//! patch that replaces everything the next token is read from gives the source's prediction.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn xlpatch(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(args)
        .env_remove("XLPATCH_PLUGIN_PATH")
        .output()
        .expect("the xlpatch binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "xlpatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The forms of `concept` in `lang` in the fixture concept table, comma-separated.
fn forms(concept: &str, lang: &str) -> String {
    let text =
        std::fs::read_to_string(xlpatch_testkit::repo_root().join("fixtures/concepts/nouns.tsv"))
            .unwrap();
    let mut rows = text.lines().map(|l| l.split('\t').collect::<Vec<_>>());
    let header = rows.next().unwrap();
    let col = header.iter().position(|h| *h == lang).unwrap();
    let row = rows.find(|r| r[0] == concept).unwrap();
    row[col].replace('|', ",")
}

fn close(a: &Value, b: &Value, what: &str) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((a - b).abs() <= 1e-5, "{what}: {a} against {b}");
}

#[test]
fn a_patched_prediction_equals_the_sweeps_row() {
    let root = xlpatch_testkit::repo_root();
    let model = root.join("fixtures/series/export/step_2000");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("study.toml");
    std::fs::write(
        &config,
        format!(
            "models = [{:?}]\nconcepts = {:?}\nconcept_list = {:?}\npairs = [[\"fr\", \"de\"]]\n\
             settings = [\"self\", \"unpatched\"]\nconcept_pairs = 2\nthreads = 1\n",
            model.display().to_string(),
            root.join("fixtures/concepts").display().to_string(),
            root.join("fixtures/series/concepts.txt")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let results = dir.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(["sweep", "--config", config.to_str().unwrap(), "--out"])
        .arg(&results)
        .env_remove("XLPATCH_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows = lines(&results.join("results.jsonl"));
    let prompts = lines(&results.join("prompts.jsonl"));
    let target = prompts.iter().find(|p| p["role"] == "target").unwrap();
    let source = prompts
        .iter()
        .find(|p| p["item"] == target["item"] && p["setting"] == "self")
        .unwrap();
    let row = |setting: &str, layer: u64| {
        rows.iter()
            .find(|r| {
                r["unit"]
                    .as_str()
                    .unwrap()
                    .ends_with(target["item"].as_str().unwrap())
                    && r["setting"] == setting
                    && r["start_layer"] == layer
            })
            .unwrap()
    };
    let first = row("self", 0);
    let (src, tgt) = (
        first["source"].as_str().unwrap(),
        first["target"].as_str().unwrap(),
    );
    let (src_forms, tgt_forms) = (forms(src, "de"), forms(tgt, "de"));
    for layer in 0..4u64 {
        let got = xlpatch(&[
            "patch",
            "--model",
            model.to_str().unwrap(),
            "--raw",
            "--prompt",
            target["text"].as_str().unwrap(),
            "--word",
            target["word"].as_str().unwrap(),
            "--source",
            source["text"].as_str().unwrap(),
            "--layer",
            &layer.to_string(),
            "--watch",
            &src_forms,
            "--watch",
            &tgt_forms,
            "--threads",
            "1",
            "--json",
        ]);
        // The same patched token and the same token sets as the sweep's columns.
        assert_eq!(got["position"], target["word_end"]);
        assert_eq!(got["watch"][0]["ids"], target["metric_ids"]["p_src_out"]);
        assert_eq!(got["watch"][1]["ids"], target["metric_ids"]["p_tgt_out"]);
        let (patched, unpatched) = (row("self", layer), row("unpatched", layer));
        close(
            &got["patched"]["watch"][0],
            &patched["p_src_out"],
            "p_src_out",
        );
        close(
            &got["patched"]["watch"][1],
            &patched["p_tgt_out"],
            "p_tgt_out",
        );
        assert_eq!(got["patched"]["generation"], patched["generation"]);
        assert_eq!(got["patched"]["generated_ids"], patched["generation_ids"]);
        close(
            &got["unpatched"]["watch"][0],
            &unpatched["p_src_out"],
            "unpatched p_src_out",
        );
        close(
            &got["unpatched"]["watch"][1],
            &unpatched["p_tgt_out"],
            "unpatched p_tgt_out",
        );
        assert_eq!(got["unpatched"]["generation"], unpatched["generation"]);
    }
}

#[test]
fn replacing_what_the_next_token_is_read_from_gives_the_sources_prediction() {
    let model = xlpatch_testkit::repo_root().join("fixtures/series/export/step_2000");
    let model = model.to_str().unwrap();
    let target = r#"Français: "cheval" - Deutsch: "Pferd"\nFrançais: "poisson" - Deutsch: ""#;
    let source = r#"Français: "cheval" - Deutsch: "Pferd"\nFrançais: "pain" - Deutsch: ""#;
    // The source prompt's own prediction.
    let own = xlpatch(&["predict", "--model", model, "--prompt", source, "--json"]);
    // single_layer at the last block, at the last token: the head reads exactly the
    // source's last residual.
    let got = xlpatch(&[
        "patch",
        "--model",
        model,
        "--prompt",
        target,
        "--source",
        source,
        "--variant",
        "single_layer",
        "--layer",
        "3",
        "--watch",
        "Brot",
        "--watch",
        "Fisch",
        "--json",
    ]);
    let top = |v: &Value| v["top"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(top(&got["unpatched"]), "Fisch");
    assert_eq!(top(&got["patched"]), "Brot");
    for k in 0..10 {
        assert_eq!(
            got["patched"]["top"][k]["id"], own["top"][k]["id"],
            "rank {k}"
        );
        close(
            &got["patched"]["top"][k]["prob"],
            &own["top"][k]["prob"],
            "prob",
        );
    }
    assert!(got["patched"]["watch"][0].as_f64().unwrap() > 0.9, "{got}");
    assert!(got["patched"]["watch"][1].as_f64().unwrap() < 0.01, "{got}");
    assert!(
        got["patched"]["generation"]
            .as_str()
            .unwrap()
            .starts_with("Brot")
    );
    assert!(
        got["unpatched"]["generation"]
            .as_str()
            .unwrap()
            .starts_with("Fisch")
    );

    // The identity (tgt_tgt) changes nothing; a start layer outside the model is refused.
    let same = xlpatch(&[
        "patch",
        "--model",
        model,
        "--prompt",
        target,
        "--identity",
        "--layer",
        "1",
        "--json",
    ]);
    for k in 0..10 {
        let (a, b) = (&same["patched"]["top"][k], &same["unpatched"]["top"][k]);
        assert_eq!(a["id"], b["id"], "rank {k}");
        close(&a["prob"], &b["prob"], "identity");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args([
            "patch",
            "--model",
            model,
            "--prompt",
            target,
            "--identity",
            "--layer",
            "4",
        ])
        .env_remove("XLPATCH_PLUGIN_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("4 layers"), "{err}");
}
