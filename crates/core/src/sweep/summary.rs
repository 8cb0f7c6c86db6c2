//! The summary a sweep prints: per checkpoint and setting, the best start layer's mean.

use std::collections::BTreeMap;

use xlpatch_results::{Row, Setting};

/// One line of a sweep's summary: per checkpoint and setting, the mean P(C_S in out_T) at
/// the best start layer and at start layer 0, over the concept pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryLine {
    /// The checkpoint.
    pub checkpoint: String,
    /// Its training step.
    pub step: Option<u64>,
    /// The setting.
    pub setting: Setting,
    /// The start layer with the highest mean.
    pub best_layer: usize,
    /// The mean at that layer.
    pub best: f64,
    /// The mean at start layer 0.
    pub at_zero: f64,
    /// How many target prompts were averaged.
    pub n: usize,
}

/// The summary of result rows, ordered by step, checkpoint and setting.
pub fn summarize(rows: &[Row]) -> Vec<SummaryLine> {
    // (step, checkpoint, setting) -> start layer -> (sum, count); settings sort in report
    // order.
    type Key = (Option<u64>, String, Setting);
    let mut acc: BTreeMap<Key, BTreeMap<usize, (f64, usize)>> = BTreeMap::new();
    for r in rows {
        let key = (r.step, r.checkpoint.clone(), r.setting);
        let e = acc
            .entry(key)
            .or_default()
            .entry(r.start_layer)
            .or_default();
        e.0 += f64::from(r.p_src_out);
        e.1 += 1;
    }
    acc.into_iter()
        .map(|((step, checkpoint, setting), layers)| {
            let mean = |(s, n): &(f64, usize)| s / *n as f64;
            let (best_layer, best) = layers
                .iter()
                .map(|(j, v)| (*j, mean(v)))
                .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            SummaryLine {
                checkpoint,
                step,
                setting,
                best_layer,
                best,
                at_zero: layers.get(&0).map_or(f64::NAN, mean),
                n: layers.values().next().map_or(0, |v| v.1),
            }
        })
        .collect()
}

/// The summary as a text table.
pub fn format_summary(lines: &[SummaryLine]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:<10} {:>11} {:>6} {:>11} {:>5}\n",
        "checkpoint", "step", "setting", "best P(src)", "at j", "P(src) j=0", "n"
    );
    for l in lines {
        // Start layer 0 is not among the rows when `start_layers` leaves it out.
        let at_zero = if l.at_zero.is_nan() {
            "-".to_string()
        } else {
            format!("{:.4}", l.at_zero)
        };
        out.push_str(&format!(
            "{:<16} {:>8} {:<10} {:>11.4} {:>6} {:>11} {:>5}\n",
            l.checkpoint,
            l.step.map_or("-".to_string(), |s| s.to_string()),
            l.setting.name(),
            l.best,
            l.best_layer,
            at_zero,
            l.n
        ));
    }
    out
}
