//! Runs continued from a shared prefix equal whole runs (docs/method.md, "Incremental patching"):
//! [`Baseline::run_from`] and [`Baseline::run_many`] (rows with and without prefixes in one batch)
//! against [`Baseline::run`], and [`residuals_from`] (rows with and without prefixes, of several
//! lengths, in one batch) against single [`residuals`] runs. On the tiny Llama and on the tiny
//! Gemma 3, whose sliding window of 4 makes a wrong column distance visible, for random prompts and
//! prefix lengths; and on a checkpoint of the fixture series with real few-shot prompts sharing
//! their demonstrations.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use xlpatch_core::latents::{residuals, residuals_from};
use xlpatch_core::model::Model;
use xlpatch_core::patch::Baseline;
use xlpatch_core::prefix::{PrefixCache, PrefixRun};

use crate::support::{exported, max_abs_diff, open, persisted, registry, repo_root};

const TOLERANCE: f32 = 1e-5;

/// The largest difference between a run from `prefix_len` tokens of `ids` and a whole run,
/// over the logits and every block output at every position, relative to the largest
/// magnitude of the whole run (at least 1).
fn run_from_difference(model: &mut Model, ids: &[u32], prefix_len: usize) -> f32 {
    let whole = Baseline::run(model, ids).unwrap();
    let prefix = PrefixRun::run(model, &ids[..prefix_len]).unwrap();
    let from = Baseline::run_from(model, &prefix, ids).unwrap();
    let mut worst = max_abs_diff(from.logits(), whole.logits());
    for position in 0..ids.len() {
        let (a, b) = (
            from.residuals_at(position).unwrap(),
            whole.residuals_at(position).unwrap(),
        );
        let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
        worst = worst.max(max_abs_diff(&a, &b) / scale);
    }
    worst
}

fn prefixes_equal_whole_runs(arch: &str) {
    let registry = registry();
    let model = std::cell::RefCell::new(open(&registry, &exported(arch, None)));
    let vocab = model.borrow().info().vocab;
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: persisted("prefix"),
        ..Config::default()
    });
    // Rows: a shared prefix, several continuations, each with a site, some without prefix.
    let cases = (
        prop::collection::vec(0..vocab, 2..12),
        prop::collection::vec(
            (
                prop::collection::vec(0..vocab, 1..9),
                any::<prop::sample::Index>(),
                any::<bool>(),
            ),
            1..6,
        ),
    );
    runner
        .run(&cases, |(prefix_ids, rows)| {
            let model = &mut *model.borrow_mut();
            let prompts: Vec<(Vec<u32>, usize, bool)> = rows
                .into_iter()
                .map(|(rest, at, use_prefix)| {
                    let ids: Vec<u32> = prefix_ids.iter().chain(&rest).copied().collect();
                    let site = prefix_ids.len() + at.index(rest.len());
                    (ids, site, use_prefix)
                })
                .collect();
            let diff = run_from_difference(model, &prompts[0].0, prefix_ids.len());
            prop_assert!(
                diff <= TOLERANCE,
                "run_from differs by {diff} for {prompts:?}"
            );
            let prefix = PrefixRun::run(model, &prefix_ids).unwrap();
            let batch: Vec<(Option<&PrefixRun>, &[u32], usize)> = prompts
                .iter()
                .map(|(ids, site, p)| (p.then_some(&prefix), ids.as_slice(), *site))
                .collect();
            // Unpatched runs of every row together equal whole runs.
            let whole: Vec<(Option<&PrefixRun>, &[u32])> =
                batch.iter().map(|&(p, ids, _)| (p, ids)).collect();
            let together = Baseline::run_many(model, &whole).unwrap();
            for ((ids, _, _), got) in prompts.iter().zip(&together) {
                let want = Baseline::run(model, ids).unwrap();
                let mut d = max_abs_diff(got.logits(), want.logits());
                for position in 0..ids.len() {
                    let (a, b) = (
                        got.residuals_at(position).unwrap(),
                        want.residuals_at(position).unwrap(),
                    );
                    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
                    d = d.max(max_abs_diff(&a, &b) / scale);
                }
                prop_assert!(d <= TOLERANCE, "run_many differs by {d} for {ids:?}");
            }
            let fast = residuals_from(model, &batch).unwrap();
            for ((ids, site, _), got) in prompts.iter().zip(&fast) {
                let want = residuals(model, ids, *site).unwrap();
                let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
                let d = max_abs_diff(got, &want) / scale;
                prop_assert!(
                    d <= TOLERANCE,
                    "residuals_from differs by {d} at {site} of {ids:?}"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn prefixes_equal_whole_runs_on_llama() {
    prefixes_equal_whole_runs("llama");
}

#[test]
fn prefixes_equal_whole_runs_on_gemma3() {
    prefixes_equal_whole_runs("gemma3");
}

/// Real prompts on the last fixture checkpoint: a target and source prompts of two language
/// pairs with shared demonstrations, through a [`PrefixCache`] as a sweep uses it.
#[test]
fn shared_demonstrations_on_the_fixture_series() {
    use xlpatch_concepts::{ConceptTable, Lang};
    use xlpatch_core::prompt::{PromptBuilder, PromptKind, Template};

    let dir = repo_root().join("fixtures/series/export/step_2000");
    assert!(
        dir.join("manifest.json").is_file(),
        "the fixture series is missing at {} (it is committed; `cargo xtask fixtures` rebuilds it)",
        dir.display()
    );
    let registry = registry();
    let mut model = open(&registry, &dir);
    let l = |c: &str| Lang::from_code(c).unwrap();
    let table = ConceptTable::load(repo_root().join("fixtures/concepts")).unwrap();
    let template = Template::default();
    let builder = PromptBuilder::new(&table, &template, 5);
    let demos: Vec<String> = ["horse", "bird", "fish", "bee", "rabbit"]
        .map(String::from)
        .to_vec();
    let mut cache = PrefixCache::new();
    let mut checked = 0;
    for (a, b) in [(l("fr"), l("de")), (l("es"), l("it"))] {
        let mut sites = Vec::new();
        for concept in ["house", "tree", "water", "book"] {
            for kind in [PromptKind::Translation, PromptKind::Cut] {
                let prompt = builder.build(kind, concept, a, b, &demos).unwrap();
                let tokens = prompt.tokenize(model.tokenizer().unwrap()).unwrap();
                assert!(
                    tokens.prefix >= 20,
                    "{}: prefix of {} tokens",
                    prompt.text,
                    tokens.prefix
                );
                let prefix = cache
                    .get(&mut model, &tokens.ids, tokens.prefix)
                    .unwrap()
                    .unwrap();
                if kind == PromptKind::Translation {
                    let whole = Baseline::run(&mut model, &tokens.ids).unwrap();
                    let from = Baseline::run_from(&mut model, &prefix, &tokens.ids).unwrap();
                    let d = max_abs_diff(from.logits(), whole.logits());
                    assert!(d <= TOLERANCE, "{}: logits differ by {d}", prompt.text);
                } else {
                    sites.push((prefix, tokens.ids.clone(), tokens.word_end.token));
                }
                checked += 1;
            }
        }
        let batch: Vec<(Option<&PrefixRun>, &[u32], usize)> = sites
            .iter()
            .map(|(p, ids, at)| (Some(p.as_ref()), ids.as_slice(), *at))
            .collect();
        let fast = residuals_from(&mut model, &batch).unwrap();
        for ((_, ids, at), got) in sites.iter().zip(&fast) {
            let want = residuals(&mut model, ids, *at).unwrap();
            let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
            assert!(max_abs_diff(got, &want) / scale <= TOLERANCE);
        }
    }
    assert_eq!(checked, 16);
    // One prefix per language pair: translation and cut prompts share their demonstrations.
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.hits(), 14);
}
