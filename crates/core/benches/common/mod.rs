//! What the benchmarks share: the built plugins, the models (the committed fixture series,
//! Gemma-3-270M exported once into `target/bench/models/`), a target prompt with its source
//! latent built as a sweep builds them, and a hand-rolled single start layer.
//!
//! Benchmarks are not tests, but a missing prerequisite still fails loudly with the command
//! that provides it; only Gemma, whose weights are never committed, is skipped (with a
//! message) when `.cache/gemma` is absent.

// Each benchmark binary uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use xlpatch_concepts::{ConceptTable, Lang};
use xlpatch_core::abi::loader::{DynPatchStrategy, Registry};
use xlpatch_core::abi::{PatchSite, PatchStrategy, TensorMut, TensorRef};
use xlpatch_core::latents::{combine, residuals};
use xlpatch_core::model::{BackendOptions, LayerKv, Model};
use xlpatch_core::prefix::PrefixRun;
use xlpatch_core::prompt::{PromptBuilder, PromptKind, Template};
use xlpatch_core::rng::Rng;

/// `target/<profile>`, found from the running benchmark (`target/<profile>/deps/…`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark binary has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("benchmark binaries live in target/<profile>/deps")
        .to_path_buf()
}

/// `target/bench/`, where benchmarks write what they make (created).
pub fn out_dir() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("bench");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The registry of the built-in plugins of this profile; panics saying how to build them.
pub fn registry() -> Registry {
    let dir = profile_dir().join("plugins");
    let backend = dir.join(format!(
        "{}xlpatch_backend_ort{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        backend.is_file(),
        "the built-in plugins are not in {}: run `cargo xtask build-plugins --release` (benchmarks \
         run in the release profile), and `cargo xtask ort` for ONNX Runtime",
        dir.display()
    );
    let (registry, refused) = Registry::discover(&[dir]);
    assert!(refused.is_empty(), "built-in plugins refused: {refused:?}");
    registry
}

/// Intra-op threads for every model: `XLPATCH_BENCH_THREADS`, else 1 (steady on a shared
/// machine; ratios are what these benchmarks are about).
pub fn threads() -> usize {
    match std::env::var("XLPATCH_BENCH_THREADS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("XLPATCH_BENCH_THREADS={v:?} is not a number")),
        Err(_) => 1,
    }
}

/// Opens a model directory with [`threads`] intra-op threads; panics naming the directory.
pub fn open(registry: &Registry, dir: &Path, threads: usize) -> Model {
    let options = BackendOptions {
        threads,
        ..BackendOptions::default()
    };
    Model::open(registry, dir, &options).unwrap_or_else(|e| {
        panic!(
            "cannot open {} (ONNX Runtime comes from `cargo xtask ort`): {e}",
            dir.display()
        )
    })
}

/// The exported checkpoint `step_<step>` of the committed fixture series.
pub fn fixture(step: u64) -> PathBuf {
    let dir = xlpatch_testkit::repo_root().join(format!("fixtures/series/export/step_{step}"));
    assert!(
        dir.join("manifest.json").is_file(),
        "the fixture series checkpoint {} is missing (it is committed; `cargo xtask fixtures` \
         rebuilds it)",
        dir.display()
    );
    dir
}

/// Gemma-3-270M exported into `target/bench/models/gemma-3-270m` (once; later runs reuse it), or
/// `None` with a message when `cargo xtask gemma` has not fetched it.
pub fn gemma() -> Option<PathBuf> {
    let cache = xlpatch_testkit::repo_root().join(".cache/gemma");
    let gguf = cache.join("gemma-3-270m-q4_k_m.gguf");
    let tokenizer = cache.join("tokenizer.json");
    if !gguf.is_file() || !tokenizer.is_file() {
        println!(
            "SKIPPED Gemma-3-270M benchmarks: {} or {} is missing (its weights are never \
             committed; `cargo xtask gemma` fetches them)",
            gguf.display(),
            tokenizer.display()
        );
        return None;
    }
    let out = out_dir().join("models/gemma-3-270m");
    // Reused unless missing or built from other operators than the exporter's default.
    let current =
        xlpatch_model::Manifest::read(&out).is_ok_and(|m| m.ops == xlpatch_model::GraphOps::Fused);
    if !current {
        println!("exporting {} into {} (once)", gguf.display(), out.display());
        // A half-written export of a killed run is replaced whole.
        let _ = std::fs::remove_dir_all(&out);
        let mut opts = xlpatch_export::ExportOptions::new(&gguf, &out);
        opts.tokenizer = Some(tokenizer);
        xlpatch_export::export(&opts)
            .unwrap_or_else(|e| panic!("cannot export {}: {e}", gguf.display()));
    }
    Some(out)
}

/// One target of a sweep: the prompt, the patched position, the combined source latent, and
/// the answer's stop tokens.
pub struct Target {
    /// The target prompt's token ids.
    pub ids: Vec<u32>,
    /// The last token of the target's concept word.
    pub position: usize,
    /// The source latent `[L, d]` (setting `tgt`: the mean over its source prompts).
    pub latent: Vec<f32>,
    /// Every cut source prompt and the position its latent is read at.
    pub sources: Vec<(Vec<u32>, usize)>,
}

/// The fr→de target "livre → Buch" patched with "chien" (dog), five seeded demonstrations
/// each, as `xlpatch sweep` builds them; the latent of setting `tgt` (one cut source prompt)
/// plus three more source prompts from other language pairs, so that batched extraction has
/// something to batch.
pub fn target(model: &mut Model, registry: &Registry) -> Target {
    let root = xlpatch_testkit::repo_root();
    let table = ConceptTable::load(root.join("fixtures/concepts"))
        .unwrap_or_else(|e| panic!("cannot load fixtures/concepts: {e}"));
    let template = Template::default();
    let builder = PromptBuilder::new(&table, &template, 5);
    let lang = |c: &str| Lang::from_code(c).expect("a known language");
    let (fr, de) = (lang("fr"), lang("de"));
    let exclude = ["book", "dog"];
    let mut rng = Rng::new(7);
    let tokenizer = model
        .tokenizer()
        .expect("the benchmark models have a tokenizer");
    let mut build = |kind, concept: &str, a: Lang, b: Lang| {
        let demos = builder.draw_demos(&mut rng, a, b, &exclude).unwrap();
        let prompt = builder.build(kind, concept, a, b, &demos).unwrap();
        prompt.tokenize(tokenizer).unwrap()
    };
    let target = build(PromptKind::Translation, "book", fr, de);
    let sources: Vec<(Vec<u32>, usize)> = [
        (fr, de),
        (lang("es"), lang("it")),
        (lang("en"), lang("en")),
        (de, de),
    ]
    .into_iter()
    .map(|(a, b)| {
        let t = build(PromptKind::Cut, "dog", a, b);
        (t.ids, t.word_end.token)
    })
    .collect();
    let info = model.info();
    let (n_layers, d) = (info.n_layers as usize, info.d_model as usize);
    let own = residuals(model, &sources[0].0, sources[0].1).unwrap();
    let mean = registry
        .get("extract-mean")
        .and_then(|p| p.extractor(&[]))
        .unwrap();
    let latent = combine(&mean, &[own], n_layers, d).unwrap();
    Target {
        ids: target.ids,
        position: target.word_end.token,
        latent,
        sources,
    }
}

/// `patch-replace`, the strategy of the paper.
pub fn replace(registry: &Registry) -> DynPatchStrategy {
    registry
        .get("patch-replace")
        .and_then(|p| p.patch_strategy(&[]))
        .unwrap()
}

fn patch_row(
    strategy: &dyn PatchStrategy,
    layer: usize,
    hidden: &mut [f32],
    seq: usize,
    row: usize,
    latent: &[f32],
) {
    let d = latent.len();
    let site = [PatchSite {
        batch: 0,
        position: row,
    }];
    strategy
        .apply(
            layer as u32,
            TensorMut::new(hidden, &[1, seq, d]).unwrap(),
            &site,
            TensorRef::new(latent, &[1, d]).unwrap(),
        )
        .unwrap();
}

/// Start layer `j` the naive way: the whole prompt through every block, row `position`
/// patched after blocks `j..L`, then the head on the last position. Returns the logits.
pub fn naive_layer(
    model: &mut Model,
    strategy: &dyn PatchStrategy,
    target: &Target,
    j: usize,
) -> Vec<f32> {
    let d = model.info().d_model as usize;
    let t = target.ids.len();
    let (hidden, _) = model
        .run_prompt(&target.ids, &mut |layer, out| {
            if layer >= j {
                let latent = &target.latent[layer * d..(layer + 1) * d];
                patch_row(strategy, layer, out, t, target.position, latent);
            }
            Ok(())
        })
        .unwrap();
    model.logits(&hidden[(t - 1) * d..]).unwrap()
}

/// Start layer `j` incrementally (docs/method.md, "Incremental patching"), from the unpatched run
/// of the whole prompt (`PrefixRun::run` of it keeps every block's output and cache): block `j`'s
/// output at positions `p..T` with row `p` patched, through blocks `j+1..L` over the cached keys
/// and values of positions `< p`, then the head on the last position. Returns the logits.
pub fn incremental_layer(
    model: &mut Model,
    strategy: &dyn PatchStrategy,
    target: &Target,
    kept: &PrefixRun,
    j: usize,
) -> Vec<f32> {
    let info = model.info();
    let (n, d) = (info.n_layers as usize, info.d_model as usize);
    let (heads, hd) = (info.n_kv_heads as usize, info.head_dim as usize);
    let (t, p) = (target.ids.len(), target.position);
    let s = t - p;
    let mut hidden = kept.outputs()[j][p * d..].to_vec();
    patch_row(
        strategy,
        j,
        &mut hidden,
        s,
        0,
        &target.latent[j * d..(j + 1) * d],
    );
    // Each cache is [1, kv, T, hd]: keep the first p positions of every head.
    let cut = |x: &[f32]| -> Vec<f32> {
        x.chunks_exact(t * hd)
            .flat_map(|head| &head[..p * hd])
            .copied()
            .collect()
    };
    let past: Vec<LayerKv> = kept.cache()[j + 1..]
        .iter()
        .map(|kv| LayerKv {
            key: cut(&kv.key),
            value: cut(&kv.value),
        })
        .collect();
    debug_assert!(past.iter().all(|kv| kv.key.len() == heads * p * hd));
    model
        .run_layers(
            j + 1..n,
            &mut hidden,
            1,
            &(p as i64..t as i64).collect::<Vec<_>>(),
            &vec![1; t],
            &past,
            p,
            &mut |layer, out| {
                let latent = &target.latent[layer * d..(layer + 1) * d];
                patch_row(strategy, layer, out, s, 0, latent);
                Ok(())
            },
        )
        .unwrap();
    model.logits(&hidden[(s - 1) * d..]).unwrap()
}

/// The stop rule of a sweep: a token whose text holds the closing quote, or end of sequence.
pub fn stops(model: &Model) -> Vec<bool> {
    xlpatch_core::patch::answer_stops(model).unwrap()
}
