//! The incremental patched runs equal the naive full recomputation (docs/method.md, "Incremental
//! patching": "exactness is not optional"), on real exports of the tiny Llama and Gemma 3 fixtures
//! (Gemma 3's has a sliding window of 4, so truncated caches meet windowed attention) and of the
//! first and last checkpoints of the fixture series, for random prompts, positions, latents,
//! strategies and both scopes; plus controls that a patch does something and that patching a prompt
//! with its own residuals does nothing.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use xlpatch_core::abi::PatchStrategy;
use xlpatch_core::latents::{residuals, residuals_batch};
use xlpatch_core::model::Model;
use xlpatch_core::patch::{
    Baseline, Batching, Generation, Patch, Patched, Scope, generate_grouped, generate_many,
    incremental, naive, patched, patched_many,
};
use xlpatch_core::rng::Rng;

use crate::support::{exported, max_abs_diff, open, persisted, registry};

const TOLERANCE: f32 = 1e-5;

/// The strategies compared: name and parameters.
const STRATEGIES: [(&str, &[(&str, &str)]); 3] = [
    ("patch-replace", &[]),
    ("patch-add", &[]),
    ("patch-interpolate", &[("alpha", "0.7")]),
];

/// A random latent `[L, d]` with entries in (-scale, scale).
fn latent(model: &Model, seed: u64, scale: f32) -> Vec<f32> {
    let info = model.info();
    let mut rng = Rng::new(seed);
    (0..info.n_layers * info.d_model)
        .map(|_| (rng.unit() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// Naive, incremental one by one, incremental batched: the largest probability difference
/// of the incremental ways from the naive one, after checking equal generations.
fn compare(
    model: &mut Model,
    ids: &[u32],
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    generation: &Generation<'_>,
) -> Result<f32, TestCaseError> {
    let reference = naive(model, ids, patch, strategy, generation).unwrap();
    let base = Baseline::run(model, ids).unwrap();
    let mut worst = 0f32;
    for batching in [Batching::None, Batching::Layers] {
        let fast = incremental(model, &base, patch, strategy, generation, batching).unwrap();
        prop_assert_eq!(fast.n_layers(), reference.n_layers());
        let diff = max_abs_diff(&fast.probs, &reference.probs);
        prop_assert!(
            diff <= TOLERANCE,
            "{:?}: max |Δp| = {} for ids {:?}, position {}, {:?}",
            batching,
            diff,
            ids,
            patch.position,
            patch.scope
        );
        prop_assert_eq!(
            &fast.generations,
            &reference.generations,
            "{:?}: generations differ for ids {:?}, position {}, {:?}",
            batching,
            ids,
            patch.position,
            patch.scope
        );
        worst = worst.max(diff);
    }
    Ok(worst)
}

fn naive_equals_incremental(arch: &str) {
    naive_equals_incremental_in(arch, &exported(arch, None));
}

fn naive_equals_incremental_in(arch: &str, dir: &std::path::Path) {
    let registry = registry();
    let model = std::cell::RefCell::new(open(&registry, dir));
    let strategies: Vec<_> = STRATEGIES
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
        max_new: 6,
        stop: &stop,
    };
    let worst = std::cell::Cell::new(0f32);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: persisted("patch"),
        ..Config::default()
    });
    let cases = (
        prop::collection::vec(0..vocab, 1..20),
        any::<prop::sample::Index>(),
        any::<u64>(),
        0..STRATEGIES.len(),
        any::<bool>(),
        prop::sample::select(vec![0.5f32, 4.0]),
    );
    runner
        .run(&cases, |(ids, at, seed, which, single, scale)| {
            let position = at.index(ids.len());
            let model = &mut *model.borrow_mut();
            let lat = latent(model, seed, scale);
            let patch = Patch {
                position,
                latent: &lat,
                scope: if single {
                    Scope::SingleLayer
                } else {
                    Scope::FromLayer
                },
            };
            let diff = compare(model, &ids, &patch, &strategies[which], &generation)?;
            worst.set(worst.get().max(diff));
            Ok(())
        })
        .unwrap();
    println!(
        "{arch}: naive vs incremental, max |Δp| over all cases = {:e}",
        worst.get()
    );
}

#[test]
fn naive_equals_incremental_on_llama() {
    naive_equals_incremental("llama");
}

#[test]
fn naive_equals_incremental_on_gemma3() {
    naive_equals_incremental("gemma3");
}

/// The same property on real trained checkpoints: the first and the last of the fixture
/// series (random initialisation, and a model whose residuals reach magnitudes of 1500).
#[test]
fn naive_equals_incremental_on_the_fixture_series() {
    for step in [0, 2000] {
        let dir = crate::support::repo_root().join(format!("fixtures/series/export/step_{step}"));
        assert!(
            dir.join("manifest.json").is_file(),
            "the fixture series is missing at {} (it is committed; `cargo xtask fixtures` \
             rebuilds it)",
            dir.display()
        );
        naive_equals_incremental_in(&format!("series step {step}"), &dir);
    }
}

/// Patching a prompt with its own residuals changes nothing; a random latent changes the
/// distribution at every start layer whose patch reaches the last position.
#[test]
fn self_patching_is_the_identity_and_a_random_patch_is_not() {
    let registry = registry();
    let replace = registry
        .get("patch-replace")
        .and_then(|p| p.patch_strategy(&[]))
        .unwrap();
    let mut model = open(&registry, &exported("gemma3", None));
    let ids: Vec<u32> = (0..14).map(|i| (i * 37 + 5) % 256).collect();
    let position = 8;
    let base = Baseline::run(&mut model, &ids).unwrap();
    let stop = |_: u32| false;
    let generation = Generation {
        max_new: 4,
        stop: &stop,
    };
    let unpatched = base.generate(&mut model, &generation).unwrap();
    assert_eq!(unpatched.len(), 4);
    let own = base.residuals_at(position).unwrap();
    for scope in [Scope::FromLayer, Scope::SingleLayer] {
        let patch = Patch {
            position,
            latent: &own,
            scope,
        };
        let r = incremental(
            &mut model,
            &base,
            &patch,
            &replace,
            &generation,
            Batching::Layers,
        )
        .unwrap();
        for j in 0..r.n_layers() {
            assert!(
                max_abs_diff(r.probs_at(j), &base.probs()) < TOLERANCE,
                "{scope:?} {j}"
            );
            assert_eq!(r.generations[j], unpatched, "{scope:?} {j}");
        }
    }
    let lat = latent(&model, 1, 4.0);
    let patch = Patch {
        position,
        latent: &lat,
        scope: Scope::FromLayer,
    };
    let r = incremental(
        &mut model,
        &base,
        &patch,
        &replace,
        &Generation::NONE,
        Batching::Layers,
    )
    .unwrap();
    // The last block's patch at position 8 cannot reach position 13; every earlier one does.
    let n = r.n_layers();
    for j in 0..n - 1 {
        assert!(
            max_abs_diff(r.probs_at(j), &base.probs()) > 1e-4,
            "start layer {j}"
        );
    }
    assert!(max_abs_diff(r.probs_at(n - 1), &base.probs()) < TOLERANCE);
    assert!(r.generations.iter().all(Vec::is_empty));
}

/// Source latents from left-padded batches equal single runs (up to 20 prompts of 1 to 40
/// tokens, read at random positions, so batches of 16 and 4 with much padding).
#[test]
fn batched_latents_equal_single_runs() {
    let registry = registry();
    for arch in ["llama", "gemma3"] {
        let mut model = open(&registry, &exported(arch, None));
        let mut rng = Rng::new(8);
        let prompts: Vec<(Vec<u32>, usize)> = (0..20)
            .map(|_| {
                let len = 1 + rng.below(40);
                let ids = (0..len).map(|_| rng.below(256) as u32).collect();
                (ids, rng.below(len))
            })
            .collect();
        let sites: Vec<(&[u32], usize)> = prompts.iter().map(|(i, p)| (i.as_slice(), *p)).collect();
        let batched = residuals_batch(&mut model, &sites).unwrap();
        assert_eq!(batched.len(), prompts.len());
        let mut worst = 0f32;
        for ((ids, p), b) in prompts.iter().zip(&batched) {
            let single = residuals(&mut model, ids, *p).unwrap();
            let diff = max_abs_diff(&single, b);
            assert!(
                diff < 1e-4,
                "{arch}: {diff} at position {p} of {}",
                ids.len()
            );
            worst = worst.max(diff);
        }
        println!("{arch}: batched vs single latents, max |Δ| = {worst:e}");
    }
}

/// A random target of the multi-target tests: token ids, where in them the word's last
/// token is, and the seed of its latent.
type Target = (Vec<u32>, prop::sample::Index, u64);

/// Between `count.start` and `count.end - 1` random targets of 2 to 15 tokens.
fn random_targets(vocab: u32, count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Target>> {
    prop::collection::vec(
        (
            prop::collection::vec(0..vocab, 2..16),
            any::<prop::sample::Index>(),
            any::<u64>(),
        ),
        count,
    )
}

/// A runner of `cases` cases whose failures persist with the patch tests'.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: persisted("patch"),
        ..Config::default()
    })
}

/// Greedy generation of the multi-target tests: 6 tokens, stopping after a multiple of 13.
const GENERATION: Generation<'static> = Generation {
    max_new: 6,
    stop: &|id: u32| id.is_multiple_of(13),
};

/// Each target's random latent (entries within ±4).
fn latents_of(model: &Model, targets: &[Target]) -> Vec<Vec<f32>> {
    targets
        .iter()
        .map(|(_, _, seed)| latent(model, *seed, 4.0))
        .collect()
}

/// Each target's patch: its latent at its word's position, from that layer on.
fn patches_of<'a>(targets: &[Target], latents: &'a [Vec<f32>]) -> Vec<Patch<'a>> {
    targets
        .iter()
        .zip(latents)
        .map(|((ids, at, _), lat)| Patch {
            position: at.index(ids.len()),
            latent: lat,
            scope: Scope::FromLayer,
        })
        .collect()
}

/// Several targets at once (a sweep's `target_batch`): [`patched_many`] equals [`patched`]
/// of each, and [`generate`] over runs of prompts of different lengths (left-padded caches)
/// gives each row the tokens it gets alone. Tiny Llama and tiny Gemma 3 (sliding window 4:
/// a wrong column distance after padding would show), random prompts, positions, latents.
fn targets_together_equal_targets_alone(arch: &str) {
    let registry = registry();
    let model = std::cell::RefCell::new(open(&registry, &exported(arch, None)));
    let strategy = registry
        .get("patch-replace")
        .and_then(|p| p.patch_strategy(&[]))
        .unwrap();
    let vocab = model.borrow().info().vocab;
    let generation = GENERATION;
    runner(12)
        .run(&random_targets(vocab, 2..5), |targets| {
            let model = &mut *model.borrow_mut();
            let bases: Vec<Baseline> = targets
                .iter()
                .map(|(ids, _, _)| Baseline::run(model, ids).unwrap())
                .collect();
            let latents = latents_of(model, &targets);
            let patches = patches_of(&targets, &latents);
            let pairs: Vec<(&Baseline, &Patch<'_>)> = bases.iter().zip(&patches).collect();
            let together = patched_many(model, &pairs, &strategy, Batching::Layers, true).unwrap();
            let refs: Vec<&Patched> = together.iter().collect();
            let gens = generate_many(model, &refs, &generation).unwrap();
            for (((base, patch), run), gen_together) in
                bases.iter().zip(&patches).zip(&together).zip(&gens)
            {
                let alone =
                    incremental(model, base, patch, &strategy, &generation, Batching::Layers)
                        .unwrap();
                let diff = max_abs_diff(run.probs(), &alone.probs);
                prop_assert!(diff <= TOLERANCE, "patched_many differs by {diff}");
                prop_assert_eq!(gen_together, &alone.generations);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn targets_together_equal_targets_alone_on_llama() {
    targets_together_equal_targets_alone("llama");
}

#[test]
fn targets_together_equal_targets_alone_on_gemma3() {
    targets_together_equal_targets_alone("gemma3");
}

/// Head calls shared by targets (a sweep's unpatched runs, patched start layers and
/// generation steps of all its targets in one head call each, block calls kept per target)
/// give every target the rows it gets with head calls of its own: probabilities within
/// [`TOLERANCE`] and identical generations. The shared side splits its head calls at 3 rows
/// (so [`Model::head_rows`]'s splitting runs too) and groups targets in twos for their blocks;
/// the per-target side computes each target alone. Random prompts, positions and latents.
fn shared_heads_equal_per_target_heads(name: &str, dir: &std::path::Path) {
    let registry = registry();
    let model = std::cell::RefCell::new(open(&registry, dir));
    let strategy = registry
        .get("patch-replace")
        .and_then(|p| p.patch_strategy(&[]))
        .unwrap();
    let vocab = model.borrow().info().vocab;
    let generation = GENERATION;
    let worst = std::cell::Cell::new(0f32);
    runner(8)
        .run(&random_targets(vocab, 2..6), |targets| {
            let full = model.borrow().head_rows();
            let model = &mut *model.borrow_mut();
            let latents = latents_of(model, &targets);
            let patches = patches_of(&targets, &latents);
            // Per target: its own unpatched run, patched runs and generation.
            let mut alone = Vec::new();
            for ((ids, _, _), patch) in targets.iter().zip(&patches) {
                let base = Baseline::run_many(model, &[(None, ids.as_slice())]).unwrap();
                let base = base.into_iter().next().unwrap();
                let run = patched(model, &base, patch, &strategy, Batching::Layers, true).unwrap();
                let gens = generate_many(model, &[&base.unpatched(), &run], &generation).unwrap();
                alone.push((base, run, gens));
            }
            // Shared: heads of at most 3 rows, block calls per pair of targets.
            model.set_head_rows(3);
            let prompts: Vec<(Option<&xlpatch_core::prefix::PrefixRun>, &[u32])> = targets
                .iter()
                .map(|(ids, _, _)| (None, ids.as_slice()))
                .collect();
            let groups: Vec<_> = prompts.chunks(2).collect();
            let bases = Baseline::run_groups(model, &groups).unwrap();
            let pairs: Vec<(&Baseline, &Patch<'_>)> = bases.iter().zip(&patches).collect();
            let runs = patched_many(model, &pairs, &strategy, Batching::Layers, true).unwrap();
            let unpatched: Vec<Patched> = bases.iter().map(Baseline::unpatched).collect();
            let refs: Vec<&Patched> = unpatched
                .iter()
                .zip(&runs)
                .flat_map(|(u, r)| [u, r])
                .collect();
            let group_of: Vec<usize> = (0..refs.len()).map(|i| i / 2 / 2).collect();
            let gens = generate_grouped(model, &refs, &group_of, &generation).unwrap();
            model.set_head_rows(full);
            for (t, (base, run, own_gens)) in alone.iter().enumerate() {
                let diff = max_abs_diff(&bases[t].probs(), &base.probs())
                    .max(max_abs_diff(runs[t].probs(), run.probs()));
                prop_assert!(
                    diff <= TOLERANCE,
                    "{}: target {} differs by {}",
                    name,
                    t,
                    diff
                );
                worst.set(worst.get().max(diff));
                prop_assert_eq!(&gens[2 * t], &own_gens[0], "{}: unpatched generation", name);
                prop_assert_eq!(
                    &gens[2 * t + 1],
                    &own_gens[1],
                    "{}: patched generations",
                    name
                );
            }
            Ok(())
        })
        .unwrap();
    println!(
        "{name}: shared vs per-target heads, max |Δp| = {:e}",
        worst.get()
    );
}

#[test]
fn shared_heads_equal_per_target_heads_on_llama() {
    shared_heads_equal_per_target_heads("llama", &exported("llama", None));
}

#[test]
fn shared_heads_equal_per_target_heads_on_gemma3() {
    shared_heads_equal_per_target_heads("gemma3", &exported("gemma3", None));
}

/// The fixture series' last checkpoint: a trained model, whose generations follow its
/// distributions rather than noise.
#[test]
fn shared_heads_equal_per_target_heads_on_the_fixture_series() {
    let dir = crate::support::repo_root().join("fixtures/series/export/step_2000");
    assert!(
        dir.join("manifest.json").is_file(),
        "the fixture series is missing at {} (it is committed; `cargo xtask fixtures` rebuilds it)",
        dir.display()
    );
    shared_heads_equal_per_target_heads("series step 2000", &dir);
}
