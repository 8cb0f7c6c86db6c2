//! The engine on every architecture the exporter writes beyond Llama and Gemma 3 (OLMo-2,
//! Qwen3, SmolLM3, GPT-NeoX, BLOOM, Apertus), each from its tiny fixture checkpoint:
//! the incremental patched runs equal the naive full recomputation for random prompts,
//! positions, latents, strategies and both scopes, and a short sweep runs end to end.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use xlpatch_core::config::{Setting, SweepConfig};
use xlpatch_core::model::Model;
use xlpatch_core::patch::{Baseline, Batching, Generation, Patch, Scope, incremental, naive};
use xlpatch_core::results::read_rows;
use xlpatch_core::rng::Rng;
use xlpatch_core::sweep::{Shard, run};
use xlpatch_testkit::{LANGS, alphabet, char_tokenizer, export_into};

use crate::support::{exported, max_abs_diff, open, registry, repo_root};

const TOLERANCE: f32 = 1e-5;

/// The fixtures of `fixtures/tiny` this file covers.
const ARCHS: [&str; 6] = ["olmo2", "qwen3", "smollm3", "gpt_neox", "bloom", "apertus"];

/// A random latent `[L, d]` with entries in (-scale, scale).
fn latent(model: &Model, seed: u64, scale: f32) -> Vec<f32> {
    let info = model.info();
    let mut rng = Rng::new(seed);
    (0..info.n_layers * info.d_model)
        .map(|_| (rng.unit() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// For random cases on the export of `arch`: the incremental runs (one by one and batched)
/// give the naive run's probabilities within [`TOLERANCE`] and its generations.
fn naive_equals_incremental(arch: &str) {
    let registry = registry();
    let model = std::cell::RefCell::new(open(&registry, &exported(arch, None)));
    let strategies: Vec<_> = [
        ("patch-replace", &[][..]),
        ("patch-add", &[][..]),
        ("patch-interpolate", &[("alpha", "0.7")][..]),
    ]
    .iter()
    .map(|(name, params)| {
        registry
            .get(name)
            .and_then(|p| p.patch_strategy(params))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    })
    .collect();
    let vocab = model.borrow().info().vocab;
    let stop = |id: u32| id.is_multiple_of(11);
    let generation = Generation {
        max_new: 5,
        stop: &stop,
    };
    let worst = std::cell::Cell::new(0f32);
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: crate::support::persisted("archs"),
        ..Config::default()
    });
    let cases = (
        prop::collection::vec(0..vocab, 1..16),
        any::<prop::sample::Index>(),
        any::<u64>(),
        0..strategies.len(),
        any::<bool>(),
        prop::sample::select(vec![0.5f32, 4.0]),
    );
    runner
        .run(&cases, |(ids, at, seed, which, single, scale)| {
            let model = &mut *model.borrow_mut();
            let lat = latent(model, seed, scale);
            let patch = Patch {
                position: at.index(ids.len()),
                latent: &lat,
                scope: if single {
                    Scope::SingleLayer
                } else {
                    Scope::FromLayer
                },
            };
            let strategy = &strategies[which];
            let reference = naive(model, &ids, &patch, strategy, &generation).unwrap();
            let base = Baseline::run(model, &ids).unwrap();
            for batching in [Batching::None, Batching::Layers] {
                let fast =
                    incremental(model, &base, &patch, strategy, &generation, batching).unwrap();
                let diff = max_abs_diff(&fast.probs, &reference.probs);
                prop_assert!(
                    diff <= TOLERANCE,
                    "{arch} {batching:?}: max |Δp| = {diff} for ids {ids:?}, position {}",
                    patch.position
                );
                prop_assert_eq!(&fast.generations, &reference.generations);
                worst.set(worst.get().max(diff));
            }
            Ok::<(), TestCaseError>(())
        })
        .unwrap();
    println!(
        "{arch}: naive vs incremental, max |Δp| over all cases = {:e}",
        worst.get()
    );
}

#[test]
fn naive_equals_incremental_on_olmo2() {
    naive_equals_incremental("olmo2");
}

#[test]
fn naive_equals_incremental_on_bloom() {
    naive_equals_incremental("bloom");
}

#[test]
fn naive_equals_incremental_on_gpt_neox() {
    naive_equals_incremental("gpt_neox");
}

#[test]
fn naive_equals_incremental_on_qwen3_smollm3_and_apertus() {
    for arch in ["qwen3", "smollm3", "apertus"] {
        naive_equals_incremental(arch);
    }
}

/// A one-checkpoint sweep on each fixture (exported with the character tokenizer of the
/// fixture series): every row is there, probabilities are probabilities, and the identity
/// control (`tgt_tgt` under patch-replace) reproduces the unpatched rows.
#[test]
fn a_short_sweep_runs_on_every_architecture() {
    let registry = registry();
    let tok = char_tokenizer(&alphabet());
    for arch in ARCHS {
        let root = tempfile::tempdir().unwrap();
        let series = root.path().join("series");
        export_into(arch, &series.join("step_1"), &tok, 1);
        let config = SweepConfig {
            models: vec![series.join("step_*").display().to_string()],
            concepts: repo_root().join("fixtures/concepts").display().to_string(),
            concept_list: None,
            languages: LANGS.map(String::from).to_vec(),
            pairs: vec![["fr".into(), "de".into()]],
            concept_pairs: 2,
            max_new_tokens: 3,
            threads: 1,
            // Character-level prompts of ~200 tokens; the tiny models declare 128 positions.
            allow_beyond_context: true,
            ..SweepConfig::default()
        };
        let out = root.path().join("out");
        let outcome = run(
            &config,
            &registry,
            std::path::Path::new("/"),
            &out,
            Shard::default(),
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{arch}: sweep failed: {e}"));
        assert_eq!(outcome.ran, outcome.total, "{arch}");
        let rows = read_rows(&out).unwrap();
        let layers = xlpatch_export::Manifest::load(&series.join("step_1"))
            .unwrap()
            .num_layers;
        // 2 concept pairs x 6 settings x one row per start layer.
        assert_eq!(rows.len(), 2 * 6 * layers, "{arch}");
        for r in &rows {
            assert!((0.0..=1.0 + 1e-6).contains(&r.p_src_out), "{arch}: {r:?}");
            assert!((0.0..=1.0 + 1e-6).contains(&r.p_tgt_out), "{arch}: {r:?}");
            assert!(r.rank_src_out >= 1 && r.rank_tgt_out >= 1, "{arch}: {r:?}");
            assert!(!r.generation_ids.is_empty(), "{arch}: {r:?}");
        }
        for r in rows.iter().filter(|r| r.setting == Setting::TgtTgt) {
            let u = rows
                .iter()
                .find(|o| {
                    o.unit == r.unit
                        && o.start_layer == r.start_layer
                        && o.setting == Setting::Unpatched
                })
                .unwrap();
            assert!(
                (r.p_tgt_out - u.p_tgt_out).abs() < 1e-6,
                "{arch}: {r:?} {u:?}"
            );
            assert_eq!(r.generation_ids, u.generation_ids, "{arch}");
        }
    }
}
