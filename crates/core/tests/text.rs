//! Text-level engine code on real tokenizers: prompts tokenized with the word's last token
//! located from offsets, first-token sets of concepts, and the whole chain (prompts, source
//! latents, extractor, patched runs, answer stops) on the tiny Llama fixture exported with a
//! byte-level tokenizer.

use serde_json::json;
use xlpatch_concepts::{Concept, ConceptTable, Lang};
use xlpatch_core::abi::PatchStrategy;
use xlpatch_core::latents::{combine, prompt_latent};
use xlpatch_core::model::Model;
use xlpatch_core::pairs::{Collision, ConceptTokens, first_token};
use xlpatch_core::patch::{
    Baseline, Batching, Generation, LayerResults, Patch, Scope, answer_stops, incremental, naive,
};
use xlpatch_core::prompt::{PromptBuilder, PromptKind, Template, WordEnd};
use xlpatch_core::rng::Rng;

use crate::support::{byte_tokenizer, exported, max_abs_diff, open, registry, tokenizer};

fn lang(code: &str) -> Lang {
    Lang::from_code(code).unwrap()
}

fn concepts() -> ConceptTable {
    let path = crate::support::repo_root().join("fixtures/concepts");
    ConceptTable::load(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
        .subset(&[lang("en"), lang("de"), lang("fr")])
        .unwrap()
}

/// With one token per byte after BOS, the word's last token is BOS + its last byte.
#[test]
fn byte_level_prompts_locate_the_word_s_last_byte() {
    let tok = tokenizer(&byte_tokenizer());
    let table = concepts();
    let template = Template::default();
    let builder = PromptBuilder::new(&table, &template, 5);
    let mut rng = Rng::new(4);
    // `Français` and several French words have two-byte characters, each two tokens.
    for concept in ["book", "tree", "head", "water"] {
        for (kind, from, to) in [
            (PromptKind::Translation, "fr", "de"),
            (PromptKind::Cut, "de", "fr"),
            (PromptKind::Translation, "en", "en"),
        ] {
            let demos = builder
                .draw_demos(&mut rng, lang(from), lang(to), &[concept])
                .unwrap();
            let p = builder
                .build(kind, concept, lang(from), lang(to), &demos)
                .unwrap();
            let t = p.tokenize(&tok).unwrap();
            assert_eq!(t.ids.len(), 1 + p.text.len(), "{:?}", p.text);
            assert_eq!(t.ids[0], 255, "BOS first");
            assert_eq!(
                t.word_end,
                WordEnd {
                    token: p.word_span.end,
                    merged: false
                },
                "{:?}",
                p.text
            );
            if kind == PromptKind::Cut {
                assert_eq!(t.word_end.token, t.ids.len() - 1);
            }
        }
    }
}

/// A SentencePiece-style tokenizer without a punctuation pre-tokenizer can merge the word's
/// end with the closing quote: the merged token is chosen and flagged.
#[test]
fn a_word_merged_with_the_quote_is_located_and_flagged() {
    let text = "Deutsch: \"Buch\" - English: \"";
    let mut vocab = serde_json::Map::new();
    for c in text.chars() {
        let n = vocab.len();
        vocab.entry(c.to_string()).or_insert(json!(n));
    }
    let n = vocab.len();
    vocab.insert("h\"".into(), json!(n));
    vocab.insert("Bu".into(), json!(n + 1));
    let tok = tokenizer(&json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": [["h", "\""], ["B", "u"]]}
    }));
    let start = text.find("Buch").unwrap();
    let t = xlpatch_core::prompt::tokenize(&tok, text, &(start..start + 4)).unwrap();
    let pieces: Vec<String> = t.ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    assert_eq!(&pieces[t.word_end.token], "h\"", "{pieces:?}");
    assert!(t.word_end.merged);
    assert_eq!(&pieces[t.word_end.token - 2], "Bu");
}

/// First tokens are taken of `word` and ` word`; a multi-word form counts by its first word.
#[test]
fn concept_token_sets_use_both_spellings() {
    let words = [
        "ice",
        "Ġice",
        "Eis",
        "ĠEis",
        "cream",
        "Ġcream",
        "Eiscreme",
        "ĠEiscreme",
        "dog",
        "Ġdog",
        "Hund",
        "ĠHund",
    ];
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .chain([("[UNK]".to_string(), json!(words.len()))])
        .collect();
    let tok = tokenizer(&json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    }));
    assert_eq!(first_token(&tok, " dog").unwrap(), Some(9));
    assert_eq!(first_token(&tok, "").unwrap(), None);
    // A bare space token before the word is skipped: `d` follows no space in the alphabet, so
    // ` dog` is ` `, `d`, `o`, `g`, while ` cat` starts with the merged ` c`.
    let chars = tokenizer(&crate::support::char_tokenizer("dog cat"));
    let id = |t: &str| chars.token_to_id(t).unwrap();
    assert_eq!(first_token(&chars, " dog").unwrap(), Some(id("d")));
    assert_eq!(first_token(&chars, " cat").unwrap(), Some(id(" c")));
    assert_eq!(first_token(&chars, "  ").unwrap(), None);
    let concept = |id: &str, en: &[&str], de: &[&str]| Concept {
        id: id.into(),
        forms: [
            (lang("en"), en.iter().map(|s| s.to_string()).collect()),
            (lang("de"), de.iter().map(|s| s.to_string()).collect()),
        ]
        .into_iter()
        .collect(),
    };
    let table = ConceptTable::new(
        "test",
        vec![lang("en"), lang("de")],
        vec![
            concept("ice", &["ice"], &["Eis"]),
            concept("ice_cream", &["ice cream"], &["Eiscreme", "Eis"]),
            concept("dog", &["dog"], &["Hund"]),
        ],
        vec![],
        vec![],
    )
    .unwrap();
    let sets = ConceptTokens::build(&tok, &table, &[lang("en"), lang("de")]).unwrap();
    assert_eq!(sets.get("ice", lang("en")), &[0, 1]);
    assert_eq!(sets.get("ice_cream", lang("de")), &[2, 3, 6, 7]);
    assert!(sets.collide("ice", "ice_cream", Collision::SameLanguage));
    assert!(!sets.collide("ice", "dog", Collision::AnyLanguage));
}

/// The augmented sets: every vocabulary token that is a prefix of a form or of the form
/// after a space, so `B` and ` B` count for both `Buch` and `Baum`; the first-token sets
/// stay apart.
#[test]
fn augmented_sets_hold_every_vocabulary_prefix() {
    let words = [
        "B", "Bu", "Buch", "ĠBuch", "ĠBu", "Baum", "ĠBaum", "ĠB", "Bau", "x",
    ];
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .chain([("[UNK]".to_string(), json!(words.len()))])
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tok = tokenizer(&json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    }));
    let de = lang("de");
    let concept = |id: &str, form: &str| Concept {
        id: id.into(),
        forms: [(de, vec![form.to_string()])].into_iter().collect(),
    };
    let table = ConceptTable::new(
        "test",
        vec![de],
        vec![concept("book", "Buch"), concept("tree", "Baum")],
        vec![],
        vec![],
    )
    .unwrap();
    let sets = ConceptTokens::build(&tok, &table, &[de]).unwrap();
    assert_eq!(sets.get("book", de), &[2, 3]);
    assert_eq!(sets.get("tree", de), &[5, 6]);
    assert_eq!(sets.augmented("book", de), &[0, 1, 2, 3, 4, 7]);
    assert_eq!(sets.augmented("tree", de), &[0, 5, 6, 7, 8]);
    assert!(!sets.collide("book", "tree", Collision::AnyLanguage));
}

/// The whole chain on a real export: target and cut source prompts, latents combined by
/// `extract-mean`, patched by `patch-replace`, the naive and incremental ways equal; the
/// single-layer variant with a translation prompt's last-token latent; generation stops at
/// a token containing a quote.
/// The naive and the incremental path on one patch of `base`'s prompt: probabilities within
/// 1e-5, identical generations. Returns the incremental results.
fn naive_equals_incremental(
    model: &mut Model,
    base: &Baseline,
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    generation: &Generation<'_>,
) -> LayerResults {
    let slow = naive(model, base.ids(), patch, strategy, generation).unwrap();
    let fast = incremental(model, base, patch, strategy, generation, Batching::Layers).unwrap();
    assert!(max_abs_diff(&fast.probs, &slow.probs) <= 1e-5);
    assert_eq!(fast.generations, slow.generations);
    fast
}

#[test]
fn the_text_pipeline_runs_on_a_tiny_export() {
    let registry = registry();
    let mut model = open(
        &registry,
        &exported("llama", Some(("bytes", &byte_tokenizer()))),
    );
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    let stops = answer_stops(&model).unwrap();
    assert!(stops[usize::from(b'"')] && !stops[usize::from(b'a')]);
    let table = concepts();
    let template = Template::default();
    let builder = PromptBuilder::new(&table, &template, 3);
    let mut rng = Rng::new(11);
    let (c_s, c_t) = ("book", "tree");
    let (en, de, fr) = (lang("en"), lang("de"), lang("fr"));
    let demos = builder.draw_demos(&mut rng, fr, de, &[c_s, c_t]).unwrap();
    let target = builder
        .build(PromptKind::Translation, c_t, fr, de, &demos)
        .unwrap();
    let mut sources = Vec::new();
    for (from, to) in [(en, fr), (de, en), (fr, en)] {
        let demos = builder.draw_demos(&mut rng, from, to, &[c_s, c_t]).unwrap();
        let source = builder
            .build(PromptKind::Cut, c_s, from, to, &demos)
            .unwrap();
        let (latent, tokens) = prompt_latent(&mut model, &source).unwrap();
        assert_eq!(tokens.word_end.token, tokens.ids.len() - 1);
        sources.push(latent);
    }
    let mean = registry
        .get("extract-mean")
        .unwrap()
        .extractor(&[])
        .unwrap();
    let first = registry
        .get("extract-first")
        .unwrap()
        .extractor(&[])
        .unwrap();
    let latent = combine(&mean, &sources, n_layers, d).unwrap();
    assert_eq!(combine(&first, &sources, n_layers, d).unwrap(), sources[0]);
    let expect = (sources[0][7] + sources[1][7] + sources[2][7]) / 3.0;
    assert!((latent[7] - expect).abs() < 1e-5);

    let replace = registry
        .get("patch-replace")
        .unwrap()
        .patch_strategy(&[])
        .unwrap();
    let tokens = target.tokenize(model.tokenizer().unwrap()).unwrap();
    let stop = |id: u32| stops[id as usize];
    let generation = Generation {
        max_new: 10,
        stop: &stop,
    };
    let patch = Patch {
        position: tokens.word_end.token,
        latent: &latent,
        scope: Scope::FromLayer,
    };
    let base = Baseline::run(&mut model, &tokens.ids).unwrap();
    let fast = naive_equals_incremental(&mut model, &base, &patch, &replace, &generation);
    for g in &fast.generations {
        assert!(!g.is_empty() && g.len() <= 10);
        assert!(g.len() == 10 || stops[*g.last().unwrap() as usize], "{g:?}");
        assert!(
            g[..g.len() - 1].iter().all(|&id| !stops[id as usize]),
            "{g:?}"
        );
    }

    // The single-layer variant: a translation prompt's last-token latent at the target's
    // last token.
    let hetero_demos = builder.draw_demos(&mut rng, en, de, &[c_s, c_t]).unwrap();
    let hetero = builder
        .build(PromptKind::Translation, c_s, en, de, &hetero_demos)
        .unwrap();
    let (hetero_latent, hetero_tokens) = prompt_latent(&mut model, &hetero).unwrap();
    let from_residuals = Baseline::run(&mut model, &hetero_tokens.ids)
        .unwrap()
        .residuals_at(hetero_tokens.ids.len() - 1)
        .unwrap();
    assert_eq!(hetero_latent, from_residuals);
    let patch = Patch {
        position: tokens.ids.len() - 1,
        latent: &hetero_latent,
        scope: Scope::SingleLayer,
    };
    let fast = naive_equals_incremental(&mut model, &base, &patch, &replace, &generation);
    assert!(max_abs_diff(fast.probs_at(0), &base.probs()) > 1e-4);
}
