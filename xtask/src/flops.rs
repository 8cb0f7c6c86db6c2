//! The floating-point work of a sweep's targets, counted from the model's shapes and the
//! prompts and generations a sweep wrote (`cargo xtask bench`): what a target costs
//! at the least, so that its wall time gives an achieved rate to set against the machine's
//! matrix-product rate.
//!
//! Counted: the matrix products, 2 FLOPs per multiply-add. A block on `n` tokens costs its
//! projections, `2·n·(d·h·hd + 2·d·kv·hd + h·hd·d + 3·d·ffn)` (query, key and value, output,
//! and a gated MLP's gate, up and down), plus attention, `4·h·hd` per query and attended
//! position (scores and weighted sum; the prompts are shorter than any sliding window, so a
//! query attends to every earlier position). The head on one row costs `2·d·vocab`. Norms,
//! rotary embeddings, softmax and the embedding gather are left out (under 1% here).
//!
//! The work of one target (docs/method.md, "Incremental patching"): its unpatched run (the
//! tokens after its few-shot prefix through every block, the head on the last row); per
//! patched setting its source prompts (after their prefix, every block), the `T - p` tokens
//! from the patched position `p` through the blocks above each start layer (`L(L-1)/2` block
//! passes) and the head on the last row of every start layer; per row of the results, one decode
//! step (every block on one token, then the head) for each generated token after the first.
//! Each distinct few-shot prefix is computed once per sweep; its work is shared evenly by the
//! targets. Padding in batched calls is not useful work and is not counted.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

/// The shapes that set the cost.
pub(crate) struct Shape {
    layers: u64,
    d: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    ffn: u64,
    vocab: u64,
}

impl Shape {
    /// From a model directory's `manifest.json`.
    pub(crate) fn from_manifest(m: &Value) -> Result<Shape> {
        let get = |k: &str| {
            m[k].as_u64()
                .with_context(|| format!("manifest.json without {k}"))
        };
        Ok(Shape {
            layers: get("num_layers")?,
            d: get("hidden_size")?,
            heads: get("num_heads")?,
            kv_heads: get("num_kv_heads")?,
            head_dim: get("head_dim")?,
            ffn: get("intermediate_size")?,
            vocab: get("vocab_size")?,
        })
    }

    /// One block's projections on one token.
    fn linear(&self) -> u64 {
        let (d, q, kv) = (
            self.d,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
        );
        2 * (d * q + 2 * d * kv + q * d + 3 * d * self.ffn)
    }

    /// One block on the tokens at positions `from..to` of a sequence (each attends to itself
    /// and every position before it).
    fn block(&self, from: u64, to: u64) -> u64 {
        let n = to.saturating_sub(from);
        // Σ (i + 1) for i in from..to: the attended positions of every query.
        let attended = (from + 1 + to) * n / 2;
        n * self.linear() + 4 * self.heads * self.head_dim * attended
    }

    /// The head on `rows` rows.
    pub(crate) fn head(&self, rows: u64) -> u64 {
        2 * rows * self.d * self.vocab
    }
}

/// The work of each target of a sweep: FLOPs of blocks and of the head.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Work {
    pub(crate) blocks: f64,
    pub(crate) head: f64,
}

impl Work {
    pub(crate) fn total(&self) -> f64 {
        self.blocks + self.head
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

/// The work of every target (keyed by item) from `prompts.jsonl`'s records and
/// `results.jsonl`'s rows.
pub(crate) fn per_target(
    shape: &Shape,
    prompts: &[Value],
    rows: &[Value],
) -> Result<BTreeMap<String, Work>> {
    let l = shape.layers;
    let mut work: BTreeMap<String, Work> = BTreeMap::new();
    let mut prefixes: BTreeSet<Vec<u64>> = BTreeSet::new();
    // Settings whose latent was patched in, per item.
    let mut patched: BTreeSet<(String, String)> = BTreeSet::new();
    for r in rows {
        let unit = r["unit"].as_str().context("a results row without unit")?;
        let item = unit.split_once('/').map_or(unit, |(_, i)| i).to_string();
        let setting = r["setting"]
            .as_str()
            .context("a results row without setting")?;
        let generated = ids(&r["generation_ids"]).len() as u64;
        let steps = generated.saturating_sub(1);
        let target = prompts
            .iter()
            .find(|p| p["role"] == "target" && p["item"] == item.as_str())
            .with_context(|| format!("no target prompt for {item}"))?;
        let t = ids(&target["ids"]).len() as u64;
        let w = work.entry(item.clone()).or_default();
        // The decode steps of this row (an unpatched setting's rows share one generation).
        let counted_unpatched = setting == "unpatched" && r["start_layer"].as_u64() != Some(0);
        if !counted_unpatched {
            for k in 0..steps {
                w.blocks += (l * shape.block(t + k, t + k + 1)) as f64;
            }
            w.head += shape.head(steps) as f64;
        }
        if setting != "unpatched" {
            patched.insert((item, setting.to_string()));
        }
    }
    for p in prompts {
        let item = p["item"].as_str().context("a prompt without item")?;
        let Some(w) = work.get_mut(item) else {
            continue;
        };
        let all = ids(&p["ids"]);
        let prefix = p["prefix"].as_u64().unwrap_or(0).min(all.len() as u64);
        let t = all.len() as u64;
        let runs = match p["role"].as_str() {
            Some("target") => true,
            // A source prompt runs only for a setting that was patched.
            _ => p["setting"]
                .as_str()
                .is_some_and(|s| patched.contains(&(item.to_string(), s.to_string()))),
        };
        if !runs {
            continue;
        }
        if prefix > 0 {
            prefixes.insert(all[..prefix as usize].to_vec());
        }
        w.blocks += (l * shape.block(prefix, t)) as f64;
        if p["role"] == "target" {
            // The unpatched run's head, then every patched setting's start layers.
            w.head += shape.head(1) as f64;
            let settings = patched.iter().filter(|(i, _)| i == item).count() as u64;
            let at = p["word_end"]
                .as_u64()
                .context("a target prompt without word_end")?;
            w.blocks += (settings * (l * (l - 1) / 2) * shape.block(at, t)) as f64;
            w.head += shape.head(settings * l) as f64;
        }
    }
    if !work.is_empty() {
        let shared: u64 = prefixes
            .iter()
            .map(|p| l * shape.block(0, p.len() as u64))
            .sum();
        let each = shared as f64 / work.len() as f64;
        for w in work.values_mut() {
            w.blocks += each;
        }
    }
    Ok(work)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape() -> Shape {
        Shape {
            layers: 2,
            d: 4,
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
            ffn: 8,
            vocab: 10,
        }
    }

    #[test]
    fn a_block_counts_projections_and_attention_by_hand() {
        // linear: 2·(4·4 + 2·4·2 + 4·4 + 3·4·8) = 2·(16 + 16 + 16 + 96) = 288 per token.
        // Positions 1..3 attend to 2 and 3 positions: 4·2·2·5 = 80.
        assert_eq!(shape().block(1, 3), 2 * 288 + 80);
        assert_eq!(shape().block(3, 3), 0);
        assert_eq!(shape().head(3), 2 * 3 * 4 * 10);
    }

    #[test]
    fn a_target_counts_its_runs_steps_and_shared_prefix() {
        let s = shape();
        let prompts = [
            json!({"item": "a", "role": "target", "setting": null, "ids": [1, 2, 3, 4, 5], "prefix": 2, "word_end": 3}),
            json!({"item": "a", "role": "source", "setting": "seen", "ids": [1, 2, 7], "prefix": 2, "word_end": 2}),
            json!({"item": "a", "role": "source", "setting": "en_en", "ids": [9, 9, 9], "prefix": 0, "word_end": 2}),
        ];
        let rows = [
            json!({"unit": "c/a", "setting": "seen", "start_layer": 0, "generation_ids": [5, 6, 7]}),
            json!({"unit": "c/a", "setting": "seen", "start_layer": 1, "generation_ids": [5]}),
        ];
        let w = per_target(&s, &prompts, &rows).unwrap()["a"];
        // Blocks: target after its prefix (2 layers), the seen source after the same prefix
        // (en_en was not patched), the prefix once, one start layer pass of positions 3..5,
        // two decode steps of row 0 at positions 5 and 6.
        let blocks = 2 * s.block(2, 5)
            + 2 * s.block(2, 3)
            + 2 * s.block(0, 2)
            + s.block(3, 5)
            + 2 * (s.block(5, 6) + s.block(6, 7));
        assert_eq!(w.blocks, blocks as f64);
        // Head: the unpatched row, two start layers, two decode steps.
        assert_eq!(w.head, s.head(1 + 2 + 2) as f64);
    }
}
