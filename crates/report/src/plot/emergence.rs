//! The emergence plot: a panel per patched setting, per output language P(C_S in out_T) at
//! its best start layer against the checkpoints, in training order.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use xlpatch_results::Setting;

use super::labels::lang_name;
use super::style::{
    Axes, DataTable, DrawResult, Figure, Kind, Plot, Swatch, axis_max, band_legend, color,
    dashed_baseline, fmt_est, grid, line_chart, mean_with_band, panel_areas, render,
};
use crate::Error;
use crate::input::Results;
use crate::stats::{Estimate, Stats};

pub(super) struct EmLine {
    color: usize,
    points: Vec<(usize, Estimate)>,
    baseline: Vec<(usize, f64)>,
}

pub(super) struct EmPanel {
    label: String,
    lines: Vec<EmLine>,
}

pub(super) struct EmergenceFigure {
    title: String,
    subtitle: String,
    panels: Vec<EmPanel>,
    checkpoints: Vec<String>,
    languages: Vec<(usize, String)>,
    ymax: f64,
    has_baseline: bool,
}

impl Figure for EmergenceFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len(), 3);
        (
            (cols as u32 * 440 + 40).max(900),
            64 + rows as u32 * 320 + 84,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let lines = self
            .languages
            .iter()
            .map(|(c, l)| (Swatch::Line(color(*c)), format!("out_T = {l}")))
            .collect();
        let legend = band_legend(lines, self.has_baseline, "unpatched (same colour)");
        let areas = panel_areas(
            root,
            &self.title,
            &self.subtitle,
            &legend,
            self.panels.len(),
            3,
        )?;
        let n = self.checkpoints.len();
        let x_fmt = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                self.checkpoints[i as usize].clone()
            } else {
                String::new()
            }
        };
        let axes = Axes {
            x_max: (n.max(1) - 1) as f64,
            pad: 0.3,
            ymax: self.ymax,
            x_labels: n.clamp(2, 12),
            x_fmt: &x_fmt,
            x_desc: "training step (checkpoints in order)",
            y_desc: "best-layer P(C_S in out_T)",
            tick_size: 11.0,
            margin: 10,
            x_area: 44,
        };
        for (panel, area) in self.panels.iter().zip(areas) {
            let mut chart = line_chart(&area, &panel.label, &axes)?;
            for line in &panel.lines {
                let col = color(line.color);
                let mut baseline: Vec<(f64, f64)> =
                    line.baseline.iter().map(|(i, b)| (*i as f64, *b)).collect();
                // One checkpoint: a short dash across its place, not an invisible point.
                if let [(x, b)] = baseline[..] {
                    baseline = vec![(x - axes.pad, b), (x + axes.pad, b)];
                }
                if baseline.len() > 1 {
                    dashed_baseline(&mut chart, &baseline, col)?;
                }
                mean_with_band(&mut chart, &line.points, col)?;
            }
        }
        Ok(())
    }
}

pub(super) fn emergence_plot(
    results: &Results,
    stats: &Stats,
    dir: &Path,
) -> Result<Option<Plot>, Error> {
    let m = 0; // P(C_S in out_T)
    let checkpoints = results.checkpoints();
    let mut outs: Vec<String> = Vec::new();
    for (_, o) in &results.pairs {
        if !outs.contains(o) {
            outs.push(o.clone());
        }
    }
    let mut table = DataTable {
        header: vec!["setting".into(), "checkpoint".into()],
        rows: Vec::new(),
    };
    for o in &outs {
        table.header.push(format!("out_T = {o}: best layer"));
        table.header.push(format!("out_T = {o}: P(C_S in out_T)"));
        table.header.push(format!("out_T = {o}: unpatched"));
    }
    let mut panels = Vec::new();
    let mut ymax: f64 = 0.0;
    let mut has_baseline = false;
    for &setting in results
        .settings
        .iter()
        .filter(|s| **s != Setting::Unpatched)
    {
        let mut lines = Vec::new();
        let mut cells: Vec<Vec<String>> = checkpoints
            .iter()
            .map(|ck| vec![setting.to_string(), results.checkpoint_label(ck)])
            .collect();
        for (li, o) in outs.iter().enumerate() {
            let mut points = Vec::new();
            let mut baseline = Vec::new();
            for (i, ck) in checkpoints.iter().enumerate() {
                let best = Stats::best_layer(&stats.by_out, ck, setting, "", o, m);
                let base = Stats::baseline(&stats.by_out, ck, "", o, m).map(|e| e.mean);
                match &best {
                    Some((j, e)) => {
                        cells[i].push(j.to_string());
                        cells[i].push(fmt_est(e));
                        points.push((i, *e));
                        ymax = ymax.max(e.hi);
                    }
                    None => cells[i].extend([String::new(), String::new()]),
                }
                cells[i].push(base.map_or(String::new(), |b| format!("{b:.4}")));
                if let Some(b) = base {
                    baseline.push((i, b));
                    ymax = ymax.max(b);
                }
            }
            has_baseline |= !baseline.is_empty();
            if !points.is_empty() {
                lines.push(EmLine {
                    color: li,
                    points,
                    baseline,
                });
            }
        }
        table.rows.extend(cells);
        if !lines.is_empty() {
            panels.push(EmPanel {
                label: format!("setting {setting}"),
                lines,
            });
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let name = "emergence".to_string();
    let title =
        "Emergence: best-layer P(C_S in out_T) across training, per output language".to_string();
    let fig = EmergenceFigure {
        title: title.clone(),
        subtitle: "at each checkpoint, the start layer with the highest mean; target pairs with the same output language pooled".into(),
        panels,
        checkpoints: checkpoints
            .iter()
            .map(|c| match results.model(c).and_then(|m| m.step) {
                Some(s) => s.to_string(),
                None => c.to_string(),
            })
            .collect(),
        languages: outs
            .iter()
            .enumerate()
            .map(|(i, o)| (i, format!("{} ({o})", lang_name(o))))
            .collect(),
        ymax: axis_max(ymax),
        has_baseline,
    };
    let (svg, svg_path, png_path) = render(&fig, dir, &name)?;
    Ok(Some(Plot {
        kind: Kind::Emergence,
        name,
        title,
        caption: "One panel per setting, one line per output language: the probability of the \
                  source concept in the target's output language at the best start layer of \
                  each checkpoint, with its 95% bootstrap interval; dashed lines are the \
                  unpatched values. A line that rises over training means the patched concept \
                  increasingly carries over into that language: the shared concept space \
                  emerges for it. The x axis is in checkpoint order, labelled by training step."
            .into(),
        svg,
        svg_path,
        png_path,
        table,
    }))
}
