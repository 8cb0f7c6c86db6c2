//! Criterion micro-benchmarks of the engine, on the fixture series' final
//! checkpoint and, when `cargo xtask gemma` has fetched it, on Gemma-3-270M:
//!
//! - `start_layer`: one patched start layer (0, the costliest for the incremental path),
//!   naive (the whole prompt through every block) and incremental (positions from the patched
//!   one through the blocks above, from a kept unpatched run);
//! - `target`: one full target, every start layer, probabilities and greedy generations
//!   (incremental with all start layers batched and one at a time, the unpatched run
//!   included; naive only on the fixture, where it is cheap);
//! - `latents`: source latent extraction, one prompt, four in a batch, and their mean;
//! - `backend`: the backend's cost per call against its compute: one block on 1 to 64 tokens
//!   (a straight line `a + b·n`, `a` the per-call overhead), a decode step (1 token over 64
//!   cached), `embed` of one token and `head` on one row (calls with next to no compute).
//!
//! Run with `cargo bench -p xlpatch-core --bench engine` after `cargo xtask build-plugins
//! --release`; `XLPATCH_BENCH_THREADS` sets ONNX Runtime's intra-op threads (default 1).

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::latents::{combine, residuals, residuals_batch};
use xlpatch_core::model::{LayerKv, Model};
use xlpatch_core::patch::{Baseline, Batching, Generation, Patch, Scope, incremental, naive};
use xlpatch_core::prefix::PrefixRun;

use common::{Target, incremental_layer, naive_layer, open, replace, stops, target};

fn bench_model(
    c: &mut Criterion,
    registry: &Registry,
    name: &str,
    model: &mut Model,
    full_naive: bool,
) {
    let strategy = replace(registry);
    let target: Target = target(model, registry);
    let stop_set = stops(model);
    let stop = |id: u32| stop_set.get(id as usize).copied().unwrap_or(true);
    let generation = Generation {
        max_new: 10,
        stop: &stop,
    };
    let patch = Patch {
        position: target.position,
        latent: &target.latent,
        scope: Scope::FromLayer,
    };
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    println!(
        "{name}: {n_layers} layers, d {d}, vocab {}, target of {} tokens patched at {}, {} threads",
        info.vocab,
        target.ids.len(),
        target.position,
        common::threads()
    );

    // The hand-rolled single start layer must be the engine's row 0 (else it measures
    // something else).
    let kept = PrefixRun::run(model, &target.ids).unwrap();
    let one = xlpatch_core::model::softmax(&incremental_layer(model, &strategy, &target, &kept, 0));
    let base = Baseline::run(model, &target.ids).unwrap();
    let all = incremental(
        model,
        &base,
        &patch,
        &strategy,
        &Generation::NONE,
        Batching::Layers,
    )
    .unwrap();
    let diff = one
        .iter()
        .zip(all.probs_at(0))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-5,
        "{name}: the single start layer differs from the engine's by {diff}"
    );

    let mut g = c.benchmark_group(format!("{name}/start_layer"));
    g.bench_function("naive", |b| {
        b.iter(|| black_box(naive_layer(model, &strategy, &target, 0)))
    });
    g.bench_function("incremental", |b| {
        b.iter(|| black_box(incremental_layer(model, &strategy, &target, &kept, 0)))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{name}/target"));
    g.bench_function("incremental", |b| {
        b.iter(|| {
            let base = Baseline::run(model, &target.ids).unwrap();
            black_box(
                incremental(
                    model,
                    &base,
                    &patch,
                    &strategy,
                    &generation,
                    Batching::Layers,
                )
                .unwrap(),
            )
        })
    });
    // Start layers one at a time (what the batched path replaces; moved here from a timing
    // "test" that printed the ratios).
    g.bench_function("incremental_unbatched", |b| {
        b.iter(|| {
            let base = Baseline::run(model, &target.ids).unwrap();
            black_box(
                incremental(model, &base, &patch, &strategy, &generation, Batching::None).unwrap(),
            )
        })
    });
    if full_naive {
        g.bench_function("naive", |b| {
            b.iter(|| black_box(naive(model, &target.ids, &patch, &strategy, &generation).unwrap()))
        });
    }
    g.finish();

    let mean = registry
        .get("extract-mean")
        .and_then(|p| p.extractor(&[]))
        .unwrap();
    let sites: Vec<(&[u32], usize)> = target
        .sources
        .iter()
        .map(|(ids, p)| (ids.as_slice(), *p))
        .collect();
    let latents = residuals_batch(model, &sites).unwrap();
    let mut g = c.benchmark_group(format!("{name}/latents"));
    let (ids, p) = &target.sources[0];
    g.bench_function("one", |b| {
        b.iter(|| black_box(residuals(model, ids, *p).unwrap()))
    });
    g.bench_function(format!("batch_of_{}", sites.len()), |b| {
        b.iter(|| black_box(residuals_batch(model, &sites).unwrap()))
    });
    g.bench_function(format!("mean_of_{}", latents.len()), |b| {
        b.iter(|| black_box(combine(&mean, &latents, n_layers, d).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{name}/backend"));
    let (kv, hd) = (info.n_kv_heads as usize, info.head_dim as usize);
    let layer = n_layers / 2;
    for n in [1usize, 4, 16, 64] {
        let hidden: Vec<f32> = (0..n * d)
            .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("layer", n), &n, |b, &n| {
            b.iter(|| {
                let mut h = hidden.clone();
                black_box(
                    model
                        .run_layers(
                            layer..layer + 1,
                            &mut h,
                            1,
                            &(0..n as i64).collect::<Vec<_>>(),
                            &vec![1; n],
                            &[LayerKv::default()],
                            0,
                            &mut |_, _| Ok(()),
                        )
                        .unwrap(),
                )
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let past = 64;
    let cache = LayerKv {
        key: vec![0.01; kv * past * hd],
        value: vec![0.02; kv * past * hd],
    };
    let one_row: Vec<f32> = (0..d).map(|i| (i % 7) as f32 / 7.0).collect();
    g.bench_function("layer_decode_over_64", |b| {
        b.iter(|| {
            let mut h = one_row.clone();
            black_box(
                model
                    .run_layers(
                        layer..layer + 1,
                        &mut h,
                        1,
                        &[past as i64],
                        &vec![1; past + 1],
                        std::slice::from_ref(&cache),
                        past,
                        &mut |_, _| Ok(()),
                    )
                    .unwrap(),
            )
        })
    });
    g.bench_function("embed_1", |b| {
        b.iter(|| black_box(model.embed(&[5], 1).unwrap()))
    });
    g.bench_function("head_1", |b| {
        b.iter(|| black_box(model.logits(&one_row).unwrap()))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let registry = common::registry();
    let threads = common::threads();
    let mut fixture = open(&registry, &common::fixture(2000), threads);
    bench_model(&mut c, &registry, "fixture_step_2000", &mut fixture, true);
    drop(fixture);
    if let Some(dir) = common::gemma() {
        let mut gemma = open(&registry, &dir, threads);
        bench_model(&mut c, &registry, "gemma_3_270m", &mut gemma, false);
    }
    c.final_summary();
}
