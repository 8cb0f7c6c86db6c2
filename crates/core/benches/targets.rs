//! Incremental against naive recomputation, per target: one target prompt, every
//! start layer, next-token probabilities and greedy generations (up to 10 tokens, stopped at
//! the closing quote), computed by `patch::naive` (the whole prompt through every block for
//! each start layer, as the reference pipeline does) and by the incremental path (one
//! unpatched run, included in its time, then `patch::incremental` with all start layers in
//! one batch). The two alternate, several repetitions; medians, their ratio, the largest
//! probability difference and whether every generation is identical are printed as a
//! Markdown table and written to `target/bench/incremental.md`.
//!
//! Models: the fixture series' first and final checkpoints (`step_0`, untrained, whose
//! generations never stop early, and `step_2000`), and Gemma-3-270M when `cargo xtask gemma`
//! has fetched it. `cargo bench -p xlpatch-core --bench targets [-- --reps N --threads N]`
//! (`--reps` default 3, ten times as many on the fixture, whose runs take milliseconds;
//! `--threads` default `XLPATCH_BENCH_THREADS`, else 1).
//!
//! With `--model DIR` it times a model without a tokenizer instead (the random-weight exports
//! of `cargo xtask bench-scaling`): seeded random prompts of each `--tokens` length, patched 6
//! tokens before the end (where a sweep's target word ends), a random prompt's residuals as
//! the latent, `--generate K` greedy tokens with no stop (0: probabilities only). It prints one
//! `scaling` line of tab-separated `key=value` fields per length.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use xlpatch_core::abi::PatchStrategy;
use xlpatch_core::latents::residuals;
use xlpatch_core::model::Model;
use xlpatch_core::patch::{
    Baseline, Batching, Generation, LayerResults, Patch, Scope, incremental, naive,
};
use xlpatch_core::rng::Rng;

/// Command-line options (after cargo's own `--bench`).
struct Options {
    reps: usize,
    threads: usize,
    model: Option<PathBuf>,
    tokens: Vec<usize>,
    generate: usize,
}

fn parse() -> Options {
    let mut o = Options {
        reps: 3,
        threads: common::threads(),
        model: None,
        tokens: vec![64],
        generate: 0,
    };
    let mut args = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> usize {
        v.as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--reps" => o.reps = number("--reps", args.next()).max(1),
            "--threads" => o.threads = number("--threads", args.next()),
            "--generate" => o.generate = number("--generate", args.next()),
            "--model" => o.model = Some(args.next().expect("--model needs a directory").into()),
            "--tokens" => {
                let list = args
                    .next()
                    .expect("--tokens needs a list such as 32,64,128");
                o.tokens = list
                    .split(',')
                    .map(|t| {
                        t.parse()
                            .unwrap_or_else(|_| panic!("--tokens: {t:?} is not a number"))
                    })
                    .collect();
            }
            other => panic!(
                "unknown argument {other:?}; expected --reps N, --threads N, --model DIR, \
                 --tokens L1,L2, --generate K"
            ),
        }
    }
    o
}

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// What one comparison measured.
struct Measured {
    naive: Duration,
    incremental: Duration,
    baseline: Duration,
    max_dp: f32,
    same_generations: usize,
    layers: usize,
    generated: usize,
}

/// Alternates naive and incremental `reps` times (after one untimed warm-up of each) and
/// checks that they agree.
fn compare(
    model: &mut Model,
    ids: &[u32],
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    generation: &Generation<'_>,
    reps: usize,
) -> Measured {
    let run_naive = |model: &mut Model| naive(model, ids, patch, strategy, generation).unwrap();
    let run_incremental = |model: &mut Model| -> (LayerResults, Duration) {
        let start = Instant::now();
        let base = Baseline::run(model, ids).unwrap();
        let baseline = start.elapsed();
        let r = incremental(model, &base, patch, strategy, generation, Batching::Layers).unwrap();
        (r, baseline)
    };
    let mut reference = run_naive(model);
    let mut fast = run_incremental(model).0;
    let (mut t_naive, mut t_inc, mut t_base) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        reference = run_naive(model);
        t_naive.push(start.elapsed());
        let start = Instant::now();
        let (r, base) = run_incremental(model);
        t_inc.push(start.elapsed());
        t_base.push(base);
        fast = r;
    }
    let max_dp = reference
        .probs
        .iter()
        .zip(&fast.probs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let same_generations = reference
        .generations
        .iter()
        .zip(&fast.generations)
        .filter(|(a, b)| a == b)
        .count();
    Measured {
        naive: median(&mut t_naive),
        incremental: median(&mut t_inc),
        baseline: median(&mut t_base),
        max_dp,
        same_generations,
        layers: reference.n_layers(),
        generated: reference.generations.iter().map(Vec::len).sum(),
    }
}

fn ratio(m: &Measured) -> f64 {
    m.naive.as_secs_f64() / m.incremental.as_secs_f64()
}

/// What the speed-up would be if a block's cost were proportional to the tokens it runs:
/// naive, `T` tokens through `L` blocks for each of `L` start layers; incremental, `T` tokens
/// through `L` blocks once, then the `T - p` tokens from the patched one through the `L - 1 - j`
/// blocks above each start layer `j` (head and generation left out).
fn block_token_ratio(layers: usize, tokens: usize, position: usize) -> f64 {
    let (l, t, s) = (layers as f64, tokens as f64, (tokens - position) as f64);
    (l * t * l) / (t * l + s * l * (l - 1.0) / 2.0)
}

/// The issue-5 table: the fixture's first and last checkpoints and Gemma-3-270M.
fn per_target(o: &Options) {
    let registry = common::registry();
    let strategy = common::replace(&registry);
    let mut models: Vec<(String, PathBuf)> = [0, 2000]
        .into_iter()
        .map(|s| (format!("fixture step_{s}"), common::fixture(s)))
        .collect();
    if let Some(dir) = common::gemma() {
        models.push(("Gemma-3-270M".to_string(), dir));
    }
    let mut table = String::from(
        "| model | layers | prompt tokens | patched at | work | naive (s) | incremental (s) | of which unpatched run (s) | speed-up | block-token ratio | max abs Δp | identical generations | tokens generated |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, dir) in models {
        let mut model = common::open(&registry, &dir, o.threads);
        let target = common::target(&mut model, &registry);
        let stop_set = common::stops(&model);
        let stop = |id: u32| stop_set.get(id as usize).copied().unwrap_or(true);
        let with_gens = Generation {
            max_new: 10,
            stop: &stop,
        };
        let patch = Patch {
            position: target.position,
            latent: &target.latent,
            scope: Scope::FromLayer,
        };
        for (work, generation) in [
            ("probabilities + generations", &with_gens),
            ("probabilities only", &Generation::NONE),
        ] {
            // Fixture runs take milliseconds: more repetitions for a steady median.
            let reps = if name.starts_with("fixture") {
                10 * o.reps
            } else {
                o.reps
            };
            let m = compare(&mut model, &target.ids, &patch, &strategy, generation, reps);
            let line = format!(
                "| {name} | {} | {} | {} | {work} | {:.3} | {:.3} | {:.3} | {:.1}× | {:.1}× | {:.1e} | {}/{} | {} |\n",
                m.layers,
                target.ids.len(),
                target.position,
                m.naive.as_secs_f64(),
                m.incremental.as_secs_f64(),
                m.baseline.as_secs_f64(),
                ratio(&m),
                block_token_ratio(m.layers, target.ids.len(), target.position),
                m.max_dp,
                m.same_generations,
                m.layers,
                m.generated,
            );
            print!("{line}");
            table.push_str(&line);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let note = format!(
        "\nMedian of {} repetitions ({} on the fixture), each after one untimed warm-up, naive \
         and incremental alternating; {} intra-op thread(s); load average at the end: {}\n",
        o.reps,
        10 * o.reps,
        o.threads,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    table.push_str(&note);
    let path = common::out_dir().join("incremental.md");
    std::fs::write(&path, &table)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("\n{table}\nwritten to {}", path.display());
}

/// Random prompts on a model without a tokenizer, one `scaling` line per length.
fn scaling(o: &Options, dir: &std::path::Path) {
    let registry = common::registry();
    let strategy = common::replace(&registry);
    let start = Instant::now();
    let mut model = common::open(&registry, dir, o.threads);
    let open_s = start.elapsed().as_secs_f64();
    let info = model.info();
    let vocab = info.vocab as usize;
    let never = |_: u32| false;
    let generation = Generation {
        max_new: o.generate,
        stop: &never,
    };
    for &t in &o.tokens {
        assert!(
            t > 6,
            "--tokens: a prompt needs more than 6 tokens, {t} given"
        );
        let mut rng = Rng::new(t as u64);
        let mut prompt =
            |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(vocab) as u32).collect() };
        let ids = prompt(t);
        let source = prompt(t);
        let latent = residuals(&mut model, &source, t - 7).unwrap();
        let patch = Patch {
            position: t - 6,
            latent: &latent,
            scope: Scope::FromLayer,
        };
        let m = compare(&mut model, &ids, &patch, &strategy, &generation, o.reps);
        println!(
            "scaling\tlayers={}\td={}\tvocab={vocab}\ttokens={t}\tgenerate={}\treps={}\tthreads={}\topen_s={open_s:.2}\tnaive_s={:.4}\tincremental_s={:.4}\tbaseline_s={:.4}\tratio={:.2}\tmax_dp={:.1e}\tsame_generations={}/{}",
            info.n_layers,
            info.d_model,
            o.generate,
            o.reps,
            o.threads,
            m.naive.as_secs_f64(),
            m.incremental.as_secs_f64(),
            m.baseline.as_secs_f64(),
            ratio(&m),
            m.max_dp,
            m.same_generations,
            m.layers,
        );
    }
}

fn main() {
    let o = parse();
    match &o.model {
        Some(dir) => scaling(&o, dir),
        None => per_target(&o),
    }
}
