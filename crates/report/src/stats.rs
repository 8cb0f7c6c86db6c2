//! Means with 95% percentile-bootstrap intervals over concept pairs: per (checkpoint,
//! setting, target pair, start layer) for the layer curves and heatmaps, and per (checkpoint,
//! setting, output language, start layer) for the emergence curves.
//!
//! A group's rows are one per concept pair; a resample draws that many rows with replacement
//! and every metric is averaged over the same draw. Each group has its own random stream,
//! named after the group, so an interval does not depend on which other groups exist.

use std::collections::BTreeMap;

use xlpatch_results::{Row, Setting};
use xlpatch_rng::Rng;

use crate::input::Results;

/// A metric of a row: its field name, a label for plots and tables, whether it is plotted as
/// a layer curve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub plotted: bool,
}

/// Every metric the report knows, in display order. Those absent from a results directory
/// (the augmented ones in older sweeps) are left out.
pub(crate) const METRICS: [Metric; 10] = [
    Metric {
        key: "p_src_out",
        label: "P(C_S in out_T)",
        plotted: true,
    },
    Metric {
        key: "p_tgt_out",
        label: "P(C_T in out_T)",
        plotted: true,
    },
    Metric {
        key: "p_src_in",
        label: "P(C_S in in_T)",
        plotted: true,
    },
    Metric {
        key: "p_tgt_in",
        label: "P(C_T in in_T)",
        plotted: true,
    },
    Metric {
        key: "p_src_other",
        label: "P(C_S in other languages)",
        plotted: true,
    },
    Metric {
        key: "p_tgt_other",
        label: "P(C_T in other languages)",
        plotted: true,
    },
    Metric {
        key: "p_src_out_aug",
        label: "P(C_S in out_T), all prefixes",
        plotted: false,
    },
    Metric {
        key: "p_tgt_out_aug",
        label: "P(C_T in out_T), all prefixes",
        plotted: false,
    },
    Metric {
        key: "gen_src",
        label: "answer is C_S (greedy)",
        plotted: false,
    },
    Metric {
        key: "gen_tgt",
        label: "answer is C_T (greedy)",
        plotted: false,
    },
];

/// The value of metric `key` in `row`, looked up by field name (booleans as 0 or 1).
fn values_of(row: &Row) -> [Option<f64>; METRICS.len()] {
    let v = serde_json::to_value(row).expect("rows serialize");
    METRICS.map(|m| match v.get(m.key) {
        Some(serde_json::Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
        Some(x) => x.as_f64(),
        None => None,
    })
}

/// A mean with its 95% interval over `n` concept pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// The `q` quantile of sorted `xs`, interpolating linearly.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let pos = q * (xs.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    if i + 1 < xs.len() {
        xs[i] + (xs[i + 1] - xs[i]) * frac
    } else {
        xs[i]
    }
}

/// Means of every column of `columns` (one per metric, each as long as the group) with
/// percentile-bootstrap 95% intervals, all metrics on the same resamples.
pub(crate) fn bootstrap(columns: &[Vec<f64>], resamples: usize, rng: &mut Rng) -> Vec<Estimate> {
    let n = columns.first().map_or(0, Vec::len);
    let means: Vec<f64> = columns
        .iter()
        .map(|c| c.iter().sum::<f64>() / n as f64)
        .collect();
    if n < 2 || resamples == 0 {
        return means
            .iter()
            .map(|&m| Estimate {
                mean: m,
                lo: m,
                hi: m,
                n,
            })
            .collect();
    }
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); columns.len()];
    let mut idx = vec![0usize; n];
    for _ in 0..resamples {
        for i in idx.iter_mut() {
            *i = rng.below(n);
        }
        for (c, col) in columns.iter().enumerate() {
            draws[c].push(idx.iter().map(|&i| col[i]).sum::<f64>() / n as f64);
        }
    }
    draws
        .iter_mut()
        .zip(means)
        .map(|(d, mean)| {
            d.sort_by(f64::total_cmp);
            Estimate {
                mean,
                lo: quantile(d, 0.025),
                hi: quantile(d, 0.975),
                n,
            }
        })
        .collect()
}

/// A group of rows. Ordered field by field in this order (the order of every table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    /// The checkpoint.
    pub checkpoint: String,
    /// The setting.
    pub setting: Setting,
    /// The pair's input language; empty when pairs are pooled by output language.
    pub in_lang: String,
    /// The output language.
    pub out_lang: String,
    /// The start layer.
    pub layer: usize,
}

impl Key {
    /// The group of `checkpoint`, `setting`, `in_lang` → `out_lang`, start layer `layer`.
    pub fn new(
        checkpoint: &str,
        setting: Setting,
        in_lang: &str,
        out_lang: &str,
        layer: usize,
    ) -> Key {
        Key {
            checkpoint: checkpoint.to_string(),
            setting,
            in_lang: in_lang.to_string(),
            out_lang: out_lang.to_string(),
            layer,
        }
    }
}

/// The estimates of a set of groups; `None` where a metric is absent.
pub(crate) type Table = BTreeMap<Key, Vec<Option<Estimate>>>;

/// The statistics of a sweep.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Which of [`METRICS`] the rows hold.
    pub present: Vec<bool>,
    /// Per (checkpoint, setting, in, out, start layer).
    pub by_pair: Table,
    /// Per (checkpoint, setting, "", out, start layer): target pairs pooled by output language.
    pub by_out: Table,
}

fn estimate(
    groups: BTreeMap<Key, Vec<usize>>,
    values: &[[Option<f64>; METRICS.len()]],
    resamples: usize,
    seed: u64,
) -> Table {
    groups
        .into_iter()
        .map(|(key, rows)| {
            // The metrics every row of the group has, with their columns.
            let (which, columns): (Vec<usize>, Vec<Vec<f64>>) = (0..METRICS.len())
                .filter_map(|m| {
                    let col: Option<Vec<f64>> = rows.iter().map(|&r| values[r][m]).collect();
                    col.map(|c| (m, c))
                })
                .unzip();
            let name = format!(
                "{}/{}/{}-{}/{}",
                key.checkpoint, key.setting, key.in_lang, key.out_lang, key.layer
            );
            let mut rng = Rng::stream(seed, &name);
            let ests = bootstrap(&columns, resamples, &mut rng);
            let mut out = vec![None; METRICS.len()];
            for (m, e) in which.into_iter().zip(ests) {
                out[m] = Some(e);
            }
            (key, out)
        })
        .collect()
}

impl Stats {
    /// The estimates of every group of `results`.
    pub fn compute(results: &Results, resamples: usize, seed: u64) -> Stats {
        let values: Vec<_> = results.rows.iter().map(values_of).collect();
        let present = (0..METRICS.len())
            .map(|m| values.iter().any(|v| v[m].is_some()))
            .collect();
        let mut by_pair: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        let mut by_out: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, r) in results.rows.iter().enumerate() {
            let key = |in_lang: &str| {
                Key::new(
                    &r.checkpoint,
                    r.setting,
                    in_lang,
                    &r.out_lang,
                    r.start_layer,
                )
            };
            by_pair.entry(key(&r.in_lang)).or_default().push(i);
            by_out.entry(key("")).or_default().push(i);
        }
        Stats {
            present,
            by_pair: estimate(by_pair, &values, resamples, seed),
            by_out: estimate(by_out, &values, resamples, seed),
        }
    }

    /// The estimate of metric `m` for a group.
    pub fn get(table: &Table, key: &Key, m: usize) -> Option<Estimate> {
        table.get(key).and_then(|v| v[m])
    }

    /// The unpatched mean of metric `m` for (checkpoint, in, out), averaged over start
    /// layers (an unpatched row does not depend on the layer).
    pub fn baseline(
        table: &Table,
        checkpoint: &str,
        in_lang: &str,
        out_lang: &str,
        m: usize,
    ) -> Option<Estimate> {
        let found: Vec<Estimate> = table
            .iter()
            .filter(|(k, _)| {
                k.checkpoint == checkpoint
                    && k.setting == Setting::Unpatched
                    && k.in_lang == in_lang
                    && k.out_lang == out_lang
            })
            .filter_map(|(_, v)| v[m])
            .collect();
        let first = *found.first()?;
        let len = found.len() as f64;
        Some(Estimate {
            mean: found.iter().map(|e| e.mean).sum::<f64>() / len,
            lo: found.iter().map(|e| e.lo).sum::<f64>() / len,
            hi: found.iter().map(|e| e.hi).sum::<f64>() / len,
            n: first.n,
        })
    }

    /// The start layer with the highest mean of metric `m` in (checkpoint, setting, in, out),
    /// with its estimate.
    pub fn best_layer(
        table: &Table,
        checkpoint: &str,
        setting: Setting,
        in_lang: &str,
        out_lang: &str,
        m: usize,
    ) -> Option<(usize, Estimate)> {
        table
            .iter()
            .filter(|(k, _)| {
                k.checkpoint == checkpoint
                    && k.setting == setting
                    && k.in_lang == in_lang
                    && k.out_lang == out_lang
            })
            .filter_map(|(k, v)| v[m].map(|e| (k.layer, e)))
            .fold(None, |best: Option<(usize, Estimate)>, (j, e)| match best {
                Some((_, b)) if b.mean >= e.mean => best,
                _ => Some((j, e)),
            })
    }

    /// Every estimate as CSV: one line per group and metric.
    pub fn to_csv(&self, results: &Results) -> String {
        let order = |c: &str| results.checkpoints().iter().position(|x| *x == c);
        let mut keys: Vec<&Key> = self.by_pair.keys().collect();
        keys.sort_by_key(|k| {
            (
                order(&k.checkpoint),
                results.settings.iter().position(|s| *s == k.setting),
                k.in_lang.clone(),
                k.out_lang.clone(),
                k.layer,
            )
        });
        let mut records = Vec::new();
        for key in keys {
            let step = results
                .model(&key.checkpoint)
                .and_then(|m| m.step)
                .map_or(String::new(), |s| s.to_string());
            for (m, metric) in METRICS.iter().enumerate() {
                if let Some(e) = self.by_pair[key][m] {
                    records.push([
                        key.checkpoint.clone(),
                        step.clone(),
                        key.setting.to_string(),
                        key.in_lang.clone(),
                        key.out_lang.clone(),
                        key.layer.to_string(),
                        metric.key.to_string(),
                        e.mean.to_string(),
                        e.lo.to_string(),
                        e.hi.to_string(),
                        e.n.to_string(),
                    ]);
                }
            }
        }
        crate::csv_text(
            &[
                "checkpoint",
                "step",
                "setting",
                "in_lang",
                "out_lang",
                "start_layer",
                "metric",
                "mean",
                "ci_low",
                "ci_high",
                "n",
            ],
            records,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_interval_holds_the_mean_and_is_reproducible() {
        let col: Vec<f64> = (0..10).map(|i| f64::from(i) / 10.0).collect();
        let a = bootstrap(std::slice::from_ref(&col), 1000, &mut Rng::new(7));
        let b = bootstrap(std::slice::from_ref(&col), 1000, &mut Rng::new(7));
        assert_eq!(a, b);
        let e = a[0];
        assert!((e.mean - 0.45).abs() < 1e-12);
        assert!(e.lo < e.mean && e.mean < e.hi, "{e:?}");
        // The standard error of the mean of 0.0..0.9 is about 0.091: the 95% interval is
        // about ±0.18 wide, and surely inside [0.2, 0.7].
        assert!(e.lo > 0.2 && e.hi < 0.7, "{e:?}");
        assert!(e.hi - e.lo > 0.25, "{e:?}");
    }

    #[test]
    fn a_constant_or_single_value_has_a_point_interval() {
        let e = bootstrap(&[vec![0.3; 5]], 100, &mut Rng::new(0));
        assert_eq!((e[0].lo, e[0].hi), (0.3, 0.3));
        let single = bootstrap(&[vec![0.7]], 100, &mut Rng::new(0));
        assert_eq!(
            (single[0].mean, single[0].lo, single[0].hi, single[0].n),
            (0.7, 0.7, 0.7, 1)
        );
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[0.0, 1.0], 0.5), 0.5);
        assert_eq!(quantile(&[0.0, 1.0, 2.0, 3.0, 4.0], 0.025), 0.1);
        assert_eq!(quantile(&[2.0], 0.975), 2.0);
    }
}
