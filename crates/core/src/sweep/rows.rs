//! A unit's result rows: its metrics per setting and start layer, ranks, and whether the
//! generation names a concept.

use xlpatch_abi::{Metric, TensorMut, TensorRef};
use xlpatch_results::Row;

use super::context::Units;
use super::item::Item;
use super::plan::metric_sets;
use crate::Error;
use crate::config::Setting;
use crate::model::Model;
use crate::patch::LayerResults;

/// Metric values `[L]` of `probs` `[L, vocab]` over `ids`.
fn measure(
    metric: &dyn Metric,
    probs: &[f32],
    vocab: usize,
    ids: &[u32],
) -> Result<Vec<f32>, Error> {
    let n = probs.len() / vocab;
    let mut out = vec![0f32; n];
    let shape = [n, vocab];
    let out_shape = [n];
    metric.compute(
        TensorRef::new(probs, &shape)?,
        ids,
        TensorMut::new(&mut out, &out_shape)?,
    )?;
    Ok(out)
}

/// 1 + how many tokens are likelier than the likeliest of `ids`.
fn best_rank(probs: &[f32], ids: &[u32]) -> usize {
    let best = ids
        .iter()
        .map(|&i| probs[i as usize])
        .fold(f32::NEG_INFINITY, f32::max);
    1 + probs.iter().filter(|&&p| p > best).count()
}

/// A unit's results under one setting.
pub(super) struct SettingResults {
    pub(super) setting: Setting,
    /// How many source prompts were combined.
    pub(super) n_sources: usize,
    pub(super) results: LayerResults,
}

impl Units<'_> {
    /// The rows of one unit from its results per setting.
    pub(super) fn rows(
        &self,
        model: &Model,
        item: &Item,
        unit: &str,
        per_setting: &[SettingResults],
    ) -> Result<Vec<Row>, Error> {
        let Units {
            plan,
            plugins,
            checkpoint: ctx,
            ..
        } = self;
        let n_layers = model.info().n_layers as usize;
        let vocab = model.info().vocab as usize;
        let (src, tgt) = (&item.pair.source, &item.pair.target);
        let (in_l, out_l) = (item.in_lang, item.out_lang);
        let sets = metric_sets(&plan.study, &plan.tokens, item);
        let forms = |c: &str| plan.table.forms(c, out_l).unwrap_or(&[]);
        // Rows only for the selected start layers (`start_layers`).
        let layers = self.config.layers(n_layers)?;
        let unit_rows = per_setting.len() * layers.len();
        let mut rows = Vec::with_capacity(unit_rows);
        for SettingResults {
            setting,
            n_sources,
            results: r,
        } in per_setting
        {
            let m = |ids: &[u32]| measure(plugins.metric.as_ref(), &r.probs, vocab, ids);
            // In the order of `metric_sets`.
            let p: Vec<Vec<f32>> = sets
                .iter()
                .map(|(_, ids)| m(ids))
                .collect::<Result<_, _>>()?;
            let mut per_lang_cols = Vec::new();
            for &l in &plan.study {
                per_lang_cols.push((format!("p_src_{l}"), m(plan.tokens.get(src, l))?));
                per_lang_cols.push((format!("p_tgt_{l}"), m(plan.tokens.get(tgt, l))?));
            }
            // A NaN or an infinity from the model would be written as null (which no reader
            // takes for a number) or ranked first: fail the unit, naming where.
            let non_finite = |what: String, j: usize, value: f32| Error::NonFinite {
                checkpoint: ctx.name.clone(),
                prompt: item.key(),
                layer: Some(j),
                what: format!("{what} (setting {})", setting.name()),
                value,
            };
            for &j in &layers {
                if let Some(&bad) = r.probs_at(j).iter().find(|p| !p.is_finite()) {
                    return Err(non_finite("P(next token)".into(), j, bad));
                }
                let columns = sets
                    .iter()
                    .map(|(k, _)| *k)
                    .zip(&p)
                    .chain(per_lang_cols.iter().map(|(k, v)| (k.as_str(), v)));
                for (k, v) in columns {
                    if !v[j].is_finite() {
                        return Err(non_finite(k.to_string(), j, v[j]));
                    }
                }
            }
            for &j in &layers {
                let probs = r.probs_at(j);
                let ids = &r.generations[j];
                let text = model.decode(ids)?;
                let answer = text.split('"').next().unwrap_or("").trim();
                rows.push(Row {
                    unit: unit.to_string(),
                    unit_rows,
                    checkpoint: ctx.name.clone(),
                    step: ctx.step,
                    model_hash: ctx.hash.clone(),
                    variant: self.config.variant,
                    setting: *setting,
                    in_lang: in_l.code().into(),
                    out_lang: out_l.code().into(),
                    source: src.clone(),
                    target: tgt.clone(),
                    start_layer: j,
                    n_sources: *n_sources,
                    p_src_out: p[0][j],
                    p_tgt_out: p[1][j],
                    p_src_in: p[2][j],
                    p_tgt_in: p[3][j],
                    p_src_other: p[4][j],
                    p_tgt_other: p[5][j],
                    p_src_out_aug: p[6][j],
                    p_tgt_out_aug: p[7][j],
                    // The ranks of `p_src_out`'s and `p_tgt_out`'s token sets.
                    rank_src_out: best_rank(probs, &sets[0].1),
                    rank_tgt_out: best_rank(probs, &sets[1].1),
                    gen_src: forms(src).iter().any(|f| f == answer),
                    gen_tgt: forms(tgt).iter().any(|f| f == answer),
                    generation: text,
                    generation_ids: ids.clone(),
                    per_lang: per_lang_cols
                        .iter()
                        .map(|(k, v)| (k.clone(), v[j]))
                        .collect(),
                });
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks() {
        assert_eq!(best_rank(&[0.1, 0.5, 0.2, 0.2], &[2, 3]), 2);
        assert_eq!(best_rank(&[0.1, 0.5, 0.2, 0.2], &[1]), 1);
    }
}
