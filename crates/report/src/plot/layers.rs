//! Layer curves: one file per patched setting and target pair, a panel per checkpoint, every
//! probability metric against the start layer with its 95% band and the unpatched baselines.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use xlpatch_results::Setting;

use super::labels::{lang_name, setting_description, variant_name};
use super::style::{
    Axes, DataTable, DrawResult, Figure, Kind, Plot, Swatch, axis_max, band_legend, color,
    dashed_baseline, fmt_est, grid, line_chart, mean_with_band, panel_areas, render,
};
use crate::Error;
use crate::input::Results;
use crate::stats::{Estimate, Key, METRICS, Stats};

pub(super) struct Curve {
    metric: usize,
    points: Vec<(usize, Estimate)>,
    baseline: Option<f64>,
}

pub(super) struct LayerPanel {
    label: String,
    curves: Vec<Curve>,
}

pub(super) struct LayerFigure {
    title: String,
    subtitle: String,
    panels: Vec<LayerPanel>,
    layers: usize,
    ymax: f64,
    metrics: Vec<usize>,
    has_baseline: bool,
}

/// P(C_S in out_T)'s place in [`METRICS`].
const SRC_OUT: usize = 0;

pub(super) const PANEL_W: u32 = 330;
pub(super) const PANEL_H: u32 = 270;

impl Figure for LayerFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len(), 4);
        (
            (cols as u32 * PANEL_W + 40).max(900),
            64 + rows as u32 * PANEL_H + 84,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let lines = self
            .metrics
            .iter()
            .map(|&m| (Swatch::Line(color(m)), METRICS[m].label.to_string()))
            .collect();
        let legend = band_legend(lines, self.has_baseline, "unpatched baseline (same colour)");
        let areas = panel_areas(
            root,
            &self.title,
            &self.subtitle,
            &legend,
            self.panels.len(),
            4,
        )?;
        let x_fmt = |v: &f64| {
            if (v - v.round()).abs() < 1e-6 && *v >= 0.0 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        };
        let axes = Axes {
            x_max: (self.layers.max(1) - 1) as f64,
            pad: 0.25,
            ymax: self.ymax,
            x_labels: self.layers.clamp(2, 12),
            x_fmt: &x_fmt,
            x_desc: "start layer j",
            y_desc: "probability",
            tick_size: 12.0,
            margin: 8,
            x_area: 40,
        };
        for (panel, area) in self.panels.iter().zip(areas) {
            let mut chart = line_chart(&area, &panel.label, &axes)?;
            for c in &panel.curves {
                let col = color(c.metric);
                if let Some(b) = c.baseline {
                    dashed_baseline(
                        &mut chart,
                        &[(-axes.pad, b), (axes.x_max + axes.pad, b)],
                        col,
                    )?;
                }
                mean_with_band(&mut chart, &c.points, col)?;
            }
        }
        Ok(())
    }
}

pub(super) fn layer_plots(
    results: &Results,
    stats: &Stats,
    dir: &Path,
) -> Result<Vec<Plot>, Error> {
    let all: Vec<usize> = (0..METRICS.len())
        .filter(|&m| METRICS[m].plotted && stats.present[m])
        .collect();
    // P(C_S in out_T) first on its own scale: in the figure of every metric, P(C_T in out_T)
    // (near 1 once a model translates) sets the axis and flattens it.
    let mut figures: Vec<(bool, Vec<usize>)> = Vec::new();
    if stats.present[SRC_OUT] {
        figures.push((true, vec![SRC_OUT]));
    }
    figures.push((false, all));
    let mut plots = Vec::new();
    for &setting in results
        .settings
        .iter()
        .filter(|s| **s != Setting::Unpatched)
    {
        for ((in_l, out_l), (alone, metrics)) in results
            .pairs
            .iter()
            .flat_map(|p| figures.iter().map(move |f| (p, f)))
        {
            let mut panels = Vec::new();
            let mut table = DataTable {
                header: ["checkpoint", "start layer"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(metrics.iter().map(|&m| METRICS[m].label.to_string()))
                    .collect(),
                rows: Vec::new(),
            };
            let mut ymax: f64 = 0.0;
            let mut has_baseline = false;
            for ck in results.checkpoints() {
                let mut curves = Vec::new();
                for &m in metrics {
                    let points: Vec<(usize, Estimate)> = (0..results.layers)
                        .filter_map(|j| {
                            let key = Key::new(ck, setting, in_l, out_l, j);
                            Stats::get(&stats.by_pair, &key, m).map(|e| (j, e))
                        })
                        .collect();
                    if points.is_empty() {
                        continue;
                    }
                    let baseline =
                        Stats::baseline(&stats.by_pair, ck, in_l, out_l, m).map(|e| e.mean);
                    has_baseline |= baseline.is_some();
                    ymax = points
                        .iter()
                        .map(|(_, e)| e.hi)
                        .chain(baseline)
                        .fold(ymax, f64::max);
                    curves.push(Curve {
                        metric: m,
                        points,
                        baseline,
                    });
                }
                if curves.is_empty() {
                    continue;
                }
                for j in 0..results.layers {
                    let mut row = vec![results.checkpoint_label(ck), j.to_string()];
                    for c in &curves {
                        row.push(
                            c.points
                                .iter()
                                .find(|(l, _)| *l == j)
                                .map_or(String::new(), |(_, e)| fmt_est(e)),
                        );
                    }
                    table.rows.push(row);
                }
                if curves.iter().any(|c| c.baseline.is_some()) {
                    let mut row = vec![results.checkpoint_label(ck), "unpatched".to_string()];
                    row.extend(
                        curves
                            .iter()
                            .map(|c| c.baseline.map_or(String::new(), |b| format!("{b:.4}"))),
                    );
                    table.rows.push(row);
                }
                panels.push(LayerPanel {
                    label: results.checkpoint_label(ck),
                    curves,
                });
            }
            if panels.is_empty() {
                continue;
            }
            let (name, what) = if *alone {
                (
                    format!("layers_src_{setting}_{in_l}-{out_l}"),
                    METRICS[SRC_OUT].label,
                )
            } else {
                (format!("layers_{setting}_{in_l}-{out_l}"), "Layer curves")
            };
            let title = format!(
                "{what}: setting {setting}, {} → {}",
                lang_name(in_l),
                lang_name(out_l)
            );
            let n = results
                .rows
                .iter()
                .filter(|r| {
                    r.setting == setting
                        && r.in_lang == *in_l
                        && r.out_lang == *out_l
                        && r.start_layer == 0
                        && Some(r.checkpoint.as_str()) == results.checkpoints().first().copied()
                })
                .count();
            let subtitle = format!(
                "{} patch from start layer j; mean over {n} concept pairs per point; one panel per checkpoint",
                variant_name(results)
            );
            let fig = LayerFigure {
                title: title.clone(),
                subtitle,
                panels,
                layers: results.layers,
                ymax: axis_max(ymax),
                metrics: metrics.clone(),
                has_baseline,
            };
            let (svg, svg_path, png_path) = render(&fig, dir, &name)?;
            plots.push(Plot {
                kind: Kind::Layers,
                name,
                title,
                caption: format!(
                    "Setting {setting} ({}). Target prompts translate from {} to {}. {} after \
                     patching the source latent into blocks j..L-1 at the target's word; the \
                     shaded band is its 95% bootstrap interval over concept pairs; dashed lines \
                     are the unpatched values. The y axis is scaled to the data: from 0 to just \
                     above the largest value of the figure, the same in every panel{}",
                    setting_description(setting),
                    lang_name(in_l),
                    lang_name(out_l),
                    if *alone {
                        "The line is P(C_S in out_T), the source concept in the output language,"
                    } else {
                        "Each line is a probability"
                    },
                    if *alone {
                        "; the next figure shows it beside the other metrics."
                    } else {
                        " (P(C_T in out_T) often sets it: the figure before shows P(C_S in \
                         out_T) on its own scale)."
                    }
                ),
                svg,
                svg_path,
                png_path,
                table,
            });
        }
    }
    Ok(plots)
}

// ---------------------------------------------------------------------------------------
// Heatmaps
