//! The backend plugin end to end: a tiny checkpoint of each architecture (and every checkpoint
//! of the fixture series, once committed) exported, opened through
//! `backend-ort` loaded as a plugin, and run by the engine's `Model`, against transformers'
//! goldens (`fixtures/tiny/<arch>/goldens.safetensors`): every layer's residual and the logits,
//! for a left-padded batch without cache, and for the same batch fed in two steps through the
//! KV cache.

use xlpatch_abi::loader::Registry;
use xlpatch_core::model::{BackendOptions, LayerKv, Model};

use crate::support::{plugin_dir, read_safetensors, root};

/// Max abs difference allowed, scaled by the largest golden value when that exceeds 1.
const TOL: f32 = 1e-4;

/// Max abs difference at non-padding positions of `[batch, seq, width]` tensors.
fn max_diff(a: &[f32], b: &[f32], mask: &[i64], width: usize) -> f32 {
    mask.iter()
        .enumerate()
        .filter(|(_, m)| **m == 1)
        .flat_map(|(row, _)| (0..width).map(move |k| row * width + k))
        .map(|i| (a[i] - b[i]).abs())
        .fold(0.0, f32::max)
}

/// Runs the golden batch in chunks of `split` tokens (the rest through the KV cache) and
/// returns every layer's output and the logits, each `[batch, seq, ·]`.
fn run(
    model: &mut Model,
    ids: &[i64],
    mask: &[i64],
    pos: &[i64],
    batch: usize,
    split: usize,
) -> (Vec<Vec<f32>>, Vec<f32>) {
    let seq = ids.len() / batch;
    let info = model.info();
    let (l, d, v) = (
        info.n_layers as usize,
        info.d_model as usize,
        info.vocab as usize,
    );
    let mut residuals = vec![vec![0f32; batch * seq * d]; l];
    let mut logits = vec![0f32; batch * seq * v];
    let mut cache = vec![LayerKv::default(); l];
    let mut done = 0;
    for end in [split, seq] {
        let cols = |x: &[i64], from: usize, to: usize| -> Vec<i64> {
            (0..batch)
                .flat_map(|b| x[b * seq + from..b * seq + to].to_vec())
                .collect()
        };
        let chunk_ids = cols(ids, done, end);
        let n = end - done;
        let mut hidden = model.embed(&chunk_ids, batch).unwrap();
        cache = model
            .run_layers(
                0..l,
                &mut hidden,
                batch,
                &cols(pos, done, end),
                &cols(mask, 0, end),
                &cache,
                done,
                &mut |layer, out| {
                    for b in 0..batch {
                        let dst = (b * seq + done) * d;
                        residuals[layer][dst..dst + n * d]
                            .copy_from_slice(&out[b * n * d..(b + 1) * n * d]);
                    }
                    Ok(())
                },
            )
            .unwrap();
        let chunk_logits = model.logits(&hidden).unwrap();
        for b in 0..batch {
            let dst = (b * seq + done) * v;
            logits[dst..dst + n * v].copy_from_slice(&chunk_logits[b * n * v..(b + 1) * n * v]);
        }
        done = end;
    }
    (residuals, logits)
}

/// Every checkpoint with transformers goldens: the tiny architectures, and every step of the
/// fixture series once it is committed.
fn checkpoints() -> Vec<(String, std::path::PathBuf)> {
    let mut dirs: Vec<(String, std::path::PathBuf)> = ["llama", "mistral", "qwen2", "gemma3"]
        .iter()
        .map(|a| (a.to_string(), root().join("fixtures/tiny").join(a)))
        .collect();
    let series = root().join("fixtures/series");
    if series.is_dir() {
        let mut steps: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&series)
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                let step = p
                    .file_name()?
                    .to_str()?
                    .strip_prefix("step_")?
                    .parse()
                    .ok()?;
                Some((step, p))
            })
            .collect();
        steps.sort();
        assert!(
            steps.len() >= 6,
            "the fixture series has {} checkpoints",
            steps.len()
        );
        dirs.extend(
            steps
                .into_iter()
                .map(|(s, p)| (format!("series step {s}"), p)),
        );
    }
    dirs
}

#[test]
fn every_checkpoint_matches_transformers_through_the_backend_plugin() {
    let (registry, refused) = Registry::discover(&[plugin_dir()]);
    assert!(refused.is_empty(), "{refused:?}");
    for (arch, src) in checkpoints() {
        let out = tempfile::tempdir().unwrap();
        xlpatch_export::export(&xlpatch_export::ExportOptions::new(&src, out.path()))
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let mut model = Model::open(&registry, out.path(), &BackendOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let g = read_safetensors(&src.join("goldens.safetensors"));
        let ids = g["input_ids"].1.i64();
        let mask = g["attention_mask"].1.i64();
        let pos = g["position_ids"].1.i64();
        let batch = g["input_ids"].0[0];
        let seq = g["input_ids"].0[1];
        let info = model.info();
        let (d, v) = (info.d_model as usize, info.vocab as usize);
        for split in [seq, 6] {
            let (residuals, logits) = run(&mut model, ids, mask, pos, batch, split);
            let mut worst = 0f32;
            for (i, r) in residuals.iter().enumerate() {
                let golden = g[&format!("residual.{i}")].1.f32();
                // Residual norms grow with training (values in the hundreds in trained
                // checkpoints), so residuals are compared relative to their largest value.
                let scale = max_diff(golden, &vec![0.0; golden.len()], mask, d).max(1.0);
                let diff = max_diff(r, golden, mask, d);
                assert!(
                    diff <= TOL * scale,
                    "{arch} split {split}: layer {i} differs by {diff} (largest value {scale})"
                );
                worst = worst.max(diff);
            }
            let golden = g["logits"].1.f32();
            let scale = max_diff(golden, &vec![0.0; golden.len()], mask, v).max(1.0);
            let diff = max_diff(&logits, golden, mask, v);
            assert!(
                diff <= TOL * scale,
                "{arch} split {split}: logits differ by {diff} (largest value {scale})"
            );
            println!(
                "{arch}: {} ({} layers): residuals {worst:.2e}, logits {diff:.2e}",
                if split == seq {
                    "full, left-padded batch"
                } else {
                    "6 tokens then 4 through the KV cache"
                },
                residuals.len()
            );
        }
    }
}
