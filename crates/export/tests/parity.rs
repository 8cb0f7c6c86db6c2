//! Parity with the oracle: each tiny checkpoint of `fixtures/tiny/<arch>` (random weights,
//! goldens from transformers) is exported, run through ONNX Runtime in three ways, and
//! compared with the goldens at every non-padding position: the residual entering block 0,
//! every block's output, and the logits, max abs diff <= 1e-4.
//!
//! Both spellings of a block are held to the oracle: `fused` (opset 23's fused operators, the
//! default) and `basic` (primitives).
//!
//! Modes: `full` (each row alone, without padding or cache), `cache` (the padded batch,
//! first 6 tokens, then the remaining 4 with the KV cache), `padded` (the padded batch at once).

use crate::support::{Cache, Pass, Runner, TempDir, fixtures, max_diff_rows, read_safetensors};
use xlpatch_export::{ExportOptions, GraphOps, export};

const TOLERANCE: f32 = 1e-4;

/// Max abs diffs of one mode.
#[derive(Default)]
struct Diffs {
    embed: f32,
    residuals: Vec<f32>,
    logits: f32,
}

impl Diffs {
    fn worst(&self) -> f32 {
        self.residuals
            .iter()
            .fold(self.embed.max(self.logits), |a, &b| a.max(b))
    }
}

struct Goldens {
    batch: usize,
    seq: usize,
    ids: Vec<i64>,
    mask: Vec<i64>,
    pos: Vec<i64>,
    embed: Vec<f32>,
    residuals: Vec<Vec<f32>>,
    logits: Vec<f32>,
}

fn load_goldens(arch: &str, layers: usize) -> Goldens {
    let path = fixtures()
        .join("tiny")
        .join(arch)
        .join("goldens.safetensors");
    assert!(
        path.is_file(),
        "golden file {} is missing (set XLPATCH_FIXTURES or run xtask/py/make_tiny.py)",
        path.display()
    );
    let g = read_safetensors(&path);
    let shape = &g["input_ids"].shape;
    Goldens {
        batch: shape[0],
        seq: shape[1],
        ids: g["input_ids"].i64().to_vec(),
        mask: g["attention_mask"].i64().to_vec(),
        pos: g["position_ids"].i64().to_vec(),
        embed: g["embed"].f32().to_vec(),
        residuals: (0..layers)
            .map(|i| g[&format!("residual.{i}")].f32().to_vec())
            .collect(),
        logits: g["logits"].f32().to_vec(),
    }
}

/// Folds the diffs of `pass` (rows `pairs.0`) against goldens (rows `pairs.1`) into `diffs`.
fn compare(
    diffs: &mut Diffs,
    pass: &Pass,
    g: &Goldens,
    pairs: &[(usize, usize)],
    d: usize,
    v: usize,
) {
    diffs.embed = diffs
        .embed
        .max(max_diff_rows(&pass.embed, &g.embed, d, pairs));
    diffs.residuals.resize(g.residuals.len(), 0.0);
    for (i, r) in pass.residuals.iter().enumerate() {
        diffs.residuals[i] = diffs.residuals[i].max(max_diff_rows(r, &g.residuals[i], d, pairs));
    }
    diffs.logits = diffs
        .logits
        .max(max_diff_rows(&pass.logits, &g.logits, v, pairs));
}

fn parity(arch: &str) {
    for ops in [GraphOps::Fused, GraphOps::Basic] {
        parity_with(arch, ops);
    }
}

fn parity_with(arch: &str, ops: GraphOps) {
    let src = fixtures().join("tiny").join(arch);
    assert!(
        src.join("goldens.safetensors").is_file(),
        "fixture {} is missing (set XLPATCH_FIXTURES, or run xtask/py/make_tiny.py)",
        src.display()
    );
    let out = TempDir::new(&format!("parity-{arch}"));
    let mut opts = ExportOptions::new(&src, out.path());
    opts.extra_outputs = true;
    opts.ops = ops;
    let manifest = export(&opts).unwrap_or_else(|e| panic!("export of {arch} failed: {e}"));
    let (d, v, layers) = (
        manifest.hidden_size,
        manifest.vocab_size,
        manifest.num_layers,
    );
    let g = load_goldens(arch, layers);
    let (b, s) = (g.batch, g.seq);
    let mut r = Runner::open(out.path());
    let valid = |row: usize, t: usize| g.mask[row * s + t] == 1;

    // full: each row alone, its padding dropped.
    let mut full = Diffs::default();
    for row in 0..b {
        let ts: Vec<usize> = (0..s).filter(|&t| valid(row, t)).collect();
        let ids: Vec<i64> = ts.iter().map(|&t| g.ids[row * s + t]).collect();
        let pos: Vec<i64> = ts.iter().map(|&t| g.pos[row * s + t]).collect();
        let mask = vec![1i64; ts.len()];
        let mut cache = r.empty_cache();
        let pass = r.forward(1, &ids, &mask, &pos, &mut cache);
        let pairs: Vec<_> = ts
            .iter()
            .enumerate()
            .map(|(j, &t)| (j, row * s + t))
            .collect();
        compare(&mut full, &pass, &g, &pairs, d, v);
    }

    // padded: the batch as the goldens hold it.
    let mut padded = Diffs::default();
    let mut cache = r.empty_cache();
    let pass = r.forward(b, &g.ids, &g.mask, &g.pos, &mut cache);
    let pairs: Vec<_> = (0..b * s)
        .filter(|&k| valid(k / s, k % s))
        .map(|k| (k, k))
        .collect();
    compare(&mut padded, &pass, &g, &pairs, d, v);
    check_extra_outputs(arch, &pass);
    assert!(
        pass.logits.iter().all(|x| x.is_finite()),
        "{arch}: NaN/inf at padding"
    );

    // cache: first `split` tokens, then the rest with the cache.
    let split = 6;
    let mut cached = Diffs::default();
    let mut cache: Cache = r.empty_cache();
    let cols = |x: &[i64], from: usize, to: usize| -> Vec<i64> {
        (0..b)
            .flat_map(|row| x[row * s + from..row * s + to].to_vec())
            .collect()
    };
    for (from, to) in [(0, split), (split, s)] {
        let pass = r.forward(
            b,
            &cols(&g.ids, from, to),
            &cols(&g.mask, 0, to),
            &cols(&g.pos, from, to),
            &mut cache,
        );
        let n = to - from;
        let pairs: Vec<_> = (0..b)
            .flat_map(|row| (0..n).map(move |j| (row, j)))
            .filter(|&(row, j)| valid(row, from + j))
            .map(|(row, j)| (row * n + j, row * s + from + j))
            .collect();
        compare(&mut cached, &pass, &g, &pairs, d, v);
    }

    for (mode, diffs) in [("full", &full), ("cache", &cached), ("padded", &padded)] {
        let res: Vec<String> = diffs.residuals.iter().map(|x| format!("{x:.2e}")).collect();
        println!(
            "parity {arch:7} {ops:?} {mode:6}: max abs diff embed {:.2e}, residuals [{}], logits {:.2e}",
            diffs.embed,
            res.join(", "),
            diffs.logits
        );
    }
    for (mode, diffs) in [("full", &full), ("cache", &cached), ("padded", &padded)] {
        assert!(
            diffs.worst() <= TOLERANCE,
            "{arch} {ops:?} {mode}: max abs diff {:.3e} > {TOLERANCE:e}",
            diffs.worst()
        );
    }
}

/// `attn_out` and `mlp_out` are what each block adds to the residual stream.
fn check_extra_outputs(arch: &str, pass: &Pass) {
    assert_eq!(
        pass.attn_out.len(),
        pass.residuals.len(),
        "{arch}: attn_out missing"
    );
    let mut worst = 0f32;
    for (i, out) in pass.residuals.iter().enumerate() {
        let input = if i == 0 {
            &pass.embed
        } else {
            &pass.residuals[i - 1]
        };
        for k in 0..out.len() {
            let sum = input[k] + pass.attn_out[i][k] + pass.mlp_out[i][k];
            worst = worst.max((sum - out[k]).abs());
        }
    }
    assert!(
        worst <= 1e-5,
        "{arch}: hidden_in + attn_out + mlp_out != hidden_out ({worst:e})"
    );
}

/// One parity test per tiny fixture: `<test name> => "<fixtures/tiny dir>"`.
macro_rules! parity_tests {
    ($($name:ident => $arch:literal,)*) => {
        $(
            #[test]
            fn $name() {
                parity($arch);
            }
        )*
    };
}

parity_tests! {
    llama_matches_transformers => "llama",
    mistral_matches_transformers => "mistral",
    qwen2_matches_transformers => "qwen2",
    gemma3_matches_transformers => "gemma3",
    olmo2_matches_transformers => "olmo2",
    qwen3_matches_transformers => "qwen3",
    smollm3_matches_transformers => "smollm3",
    gpt_neox_matches_transformers => "gpt_neox",
    bloom_matches_transformers => "bloom",
    apertus_matches_transformers => "apertus",
}
