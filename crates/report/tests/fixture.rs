//! A small results directory written by hand: two checkpoints, two target pairs, three
//! concept pairs each, settings `tgt` and `unpatched`, two start layers, with generations
//! chosen to fall in several error categories.

use std::path::{Path, PathBuf};

use serde_json::json;
use xlpatch_results::{
    ModelEntry, PromptKind, PromptRecord, ResultsWriter, Role, Row, RunFile, Setting, Study,
    prompts_text,
};

/// The project's concept table.
pub fn concepts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/concepts")
}

/// (in, out, [(C_S, C_T, target word, source word, C_S's preferred form in out)]).
type Pair = (
    &'static str,
    &'static str,
    [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ); 3],
);

const PAIRS: [Pair; 2] = [
    (
        "fr",
        "de",
        [
            ("book", "tree", "arbre", "livre", "Buch"),
            ("dog", "house", "maison", "chien", "Hund"),
            ("friend", "duck", "canard", "ami", "Freund"),
        ],
    ),
    (
        "de",
        "it",
        [
            ("bread", "cat", "Katze", "Brot", "pane"),
            ("lake", "tree", "Baum", "See", "lago"),
            ("water", "dog", "Hund", "Wasser", "acqua"),
        ],
    ),
];

pub const CHECKPOINTS: [(&str, u64); 2] = [("step_0", 0), ("step_100", 100)];
pub const LAYERS: usize = 2;

/// Writes the results directory into `dir` (created); `concepts` is written into its
/// config as the concept table's path.
pub fn write_results(dir: &Path, concepts: &str) {
    let pairs = vec![["fr".into(), "de".into()], ["de".into(), "it".into()]];
    let mut writer = ResultsWriter::open(dir).unwrap();
    // The report shows the config's text; what it needs of it is in run.json.
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "concepts = {concepts:?}\nlanguages = [\"en\", \"de\", \"fr\", \"it\"]\n\
             pairs = [[\"fr\", \"de\"], [\"de\", \"it\"]]\nsettings = [\"tgt\", \"unpatched\"]\n\
             concept_pairs = 3\n"
        ),
    )
    .unwrap();
    let run = RunFile {
        format_version: 1,
        models: CHECKPOINTS
            .iter()
            .map(|(c, s)| ModelEntry {
                architecture: "LlamaForCausalLM".into(),
                checkpoint: c.to_string(),
                hash: format!("hash-of-{c}"),
                step: Some(*s),
            })
            .collect(),
        shard: None,
        study: Some(Study {
            concepts: concepts.to_string(),
            pairs,
        }),
    };
    std::fs::write(dir.join("run.json"), run.to_text()).unwrap();

    let mut prompts = Vec::new();
    let record = |item: &str,
                  role,
                  setting,
                  concept: &str,
                  in_l: &str,
                  out_l: &str,
                  word: &str,
                  text: String| {
        let start = text.rfind(word).unwrap();
        PromptRecord {
            answer: String::new(),
            concept: concept.to_string(),
            demos: Vec::new(),
            ids: vec![1, 2],
            in_lang: in_l.to_string(),
            item: item.to_string(),
            kind: PromptKind::Translation,
            merged: false,
            metric_ids: None,
            out_lang: out_l.to_string(),
            prefix: 0,
            prefix_len: 0,
            role,
            setting,
            tokenizer: None,
            word: word.to_string(),
            word_end: 1,
            word_span: [start, start + word.len()],
            text,
        }
    };
    for (in_l, out_l, items) in PAIRS {
        for (src, tgt, word, src_word, _) in items {
            let item = format!("{in_l}-{out_l}/{src}>{tgt}");
            let text =
                format!("Français: \"jour\" - Deutsch: \"Tag\"\n{in_l}: \"{word}\" - {out_l}: \"");
            prompts.push(record(
                &item,
                Role::Target,
                None,
                tgt,
                in_l,
                out_l,
                word,
                text,
            ));
            let text = format!("{in_l}: \"{src_word}");
            prompts.push(record(
                &item,
                Role::Source,
                Some(Setting::Tgt),
                src,
                in_l,
                out_l,
                src_word,
                text,
            ));
        }
    }
    std::fs::write(dir.join("prompts.jsonl"), prompts_text(&prompts)).unwrap();

    for (ci, (ck, step)) in CHECKPOINTS.iter().enumerate() {
        for (in_l, out_l, items) in PAIRS {
            for (k, (src, tgt, word, _, src_out)) in items.iter().enumerate() {
                let unit = format!("{ck}/{in_l}-{out_l}/{src}>{tgt}");
                let mut rows = Vec::new();
                for setting in ["tgt", "unpatched"] {
                    for j in 0..LAYERS {
                        // The patch works better later in training and from lower layers.
                        let patched = setting == "tgt";
                        let p_src = if patched {
                            0.1 + 0.3 * ci as f64 - 0.05 * j as f64 + 0.02 * k as f64
                        } else {
                            0.01
                        };
                        let generation = match (patched, ci, k) {
                            (true, 1, 0) => format!("{src_out}\""),
                            (true, 1, 1) => format!("{word}\""),
                            (_, 0, _) => "Blulago Deutsch".to_string(),
                            _ => "Uhr\"\n".to_string(),
                        };
                        let row = json!({
                            "unit": unit, "unit_rows": 2 * LAYERS, "checkpoint": ck,
                            "step": step, "model_hash": format!("hash-of-{ck}"),
                            "variant": "from_layer", "setting": setting, "in_lang": in_l,
                            "out_lang": out_l, "source": src, "target": tgt, "start_layer": j,
                            "n_sources": usize::from(patched), "p_src_out": p_src,
                            "p_tgt_out": 0.5 - p_src, "p_src_in": 0.01, "p_tgt_in": 0.02,
                            "p_src_other": 0.03, "p_tgt_other": 0.04,
                            "p_src_out_aug": p_src + 0.01, "p_tgt_out_aug": 0.51 - p_src,
                            "rank_src_out": 2, "rank_tgt_out": 1, "gen_src": false,
                            "gen_tgt": false, "generation": generation,
                            "generation_ids": [1, 2], "p_src_de": 0.1,
                        });
                        rows.push(serde_json::from_value::<Row>(row).unwrap());
                    }
                }
                writer.append_unit(&rows).unwrap();
            }
        }
    }
}

/// The number of rows [`write_results`] writes.
pub fn n_rows() -> usize {
    CHECKPOINTS.len() * PAIRS.len() * 3 * 2 * LAYERS
}

/// The number of distinct generations among them: setting `tgt` at every start layer, and
/// one unpatched generation per target prompt (written at every start layer).
pub fn n_generations() -> usize {
    CHECKPOINTS.len() * PAIRS.len() * 3 * (LAYERS + 1)
}
