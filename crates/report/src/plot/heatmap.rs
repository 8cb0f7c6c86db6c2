//! Heatmaps: one file per patched setting, a panel per target pair, mean P(C_S in out_T) per
//! checkpoint and start layer.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use xlpatch_results::Setting;

use super::labels::{lang_name, setting_description};
use super::style::{
    DataTable, DrawResult, Figure, Kind, Plot, TEXT, frame, grid, render, text_style, value_label,
};
use crate::Error;
use crate::input::Results;
use crate::stats::{Key, Stats};

#[derive(Debug)]
pub(super) struct HeatPanel {
    label: String,
    /// Per checkpoint (training order), per start layer.
    values: Vec<Vec<Option<f64>>>,
}

#[derive(Debug)]
pub(super) struct HeatFigure {
    title: String,
    subtitle: String,
    panels: Vec<HeatPanel>,
    checkpoints: Vec<String>,
    layers: usize,
    vmax: f64,
}

pub(super) fn viridis(v: f64, vmax: f64) -> RGBColor {
    ViridisRGB::get_color_normalized(v, 0.0, vmax.max(1e-12))
}

/// The colour bar's margins above and below it (its caption, its last label).
const BAR_TOP: u32 = 40;
const BAR_BOTTOM: u32 = 60;
/// The least height of the colour bar itself: a figure of few checkpoints is made taller
/// (panels keep their size) so the bar and its labels stay readable.
pub(super) const BAR_MIN: u32 = 200;
/// Pixels per colour-bar label.
const BAR_LABEL_SPACING: u32 = 32;

impl HeatFigure {
    fn panel_size(&self) -> (u32, u32) {
        let w = (self.layers as u32 * 56).clamp(240, 900) + 110;
        let h = self.checkpoints.len() as u32 * 34 + 90;
        (w, h)
    }

    /// The rows and columns of panels.
    fn grid(&self) -> (usize, usize) {
        let (pw, _) = self.panel_size();
        grid(self.panels.len(), (1300 / pw).max(1) as usize)
    }

    /// The height of the panels, and of the body beside them that holds the colour bar.
    fn body_heights(&self) -> (u32, u32) {
        let (_, ph) = self.panel_size();
        let panels = self.grid().0 as u32 * ph;
        (panels, panels.max(BAR_TOP + BAR_MIN + BAR_BOTTOM))
    }

    /// The colour bar's height in pixels.
    pub(super) fn bar_height(&self) -> u32 {
        self.body_heights().1 - BAR_TOP - BAR_BOTTOM
    }

    /// A cell's value as written on it.
    fn cell_label(&self, v: f64) -> String {
        if self.vmax < 1e-3 {
            format!("{v:.2e}")
        } else if self.vmax < 0.1 {
            format!("{v:.4}")
        } else {
            format!("{v:.3}")
        }
    }
}

impl Figure for HeatFigure {
    fn size(&self) -> (u32, u32) {
        let (pw, _) = self.panel_size();
        let (_, cols) = self.grid();
        let (_, body) = self.body_heights();
        ((cols as u32 * pw + 130).max(700), 64 + body + 20)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = frame(root, &self.title, &self.subtitle, &[], 20)?;
        let (w, _) = body.dim_in_pixel();
        let (panels_area, bar_area) = body.split_horizontally(w - 120);
        // Panels at their own height; below them, room the colour bar needed.
        let (panels_h, _) = self.body_heights();
        let (panels_area, _) = panels_area.split_vertically(panels_h);
        let areas = panels_area.split_evenly(self.grid());
        let n = self.checkpoints.len();
        let layers = self.layers;
        for (panel, area) in self.panels.iter().zip(areas) {
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.label, text_style(16.0, &TEXT))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(84)
                // A segmented range `0..k` has k + 1 segments (both ends are values).
                .build_cartesian_2d(
                    (0..(layers as i32 - 1).max(1)).into_segmented(),
                    (0..(n as i32 - 1).max(1)).into_segmented(),
                )?;
            let x_fmt = |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(j) => j.to_string(),
                _ => String::new(),
            };
            let y_fmt = |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) if (*i as usize) < n => {
                    self.checkpoints[n - 1 - *i as usize].clone()
                }
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(layers.min(24))
                .y_labels(n.min(40))
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .x_desc("start layer j")
                .label_style(text_style(12.0, &TEXT))
                .axis_desc_style(text_style(13.0, &TEXT))
                .draw()?;
            let (cw, ch) = {
                let (aw, ah) = area.dim_in_pixel();
                (
                    (aw.saturating_sub(100)) / layers.max(1) as u32,
                    (ah.saturating_sub(80)) / n.max(1) as u32,
                )
            };
            for (ci, row) in panel.values.iter().enumerate() {
                let y = (n - 1 - ci) as i32;
                for (j, v) in row.iter().enumerate() {
                    let j = j as i32;
                    let corner = |dx: i32, dy: i32| {
                        (SegmentValue::Exact(j + dx), SegmentValue::Exact(y + dy))
                    };
                    let fill = match v {
                        Some(v) => viridis(*v, self.vmax).filled(),
                        None => RGBColor(240, 240, 240).filled(),
                    };
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [corner(0, 0), corner(1, 1)],
                        fill,
                    )))?;
                    if let Some(v) = v
                        && cw >= 46
                        && ch >= 16
                    {
                        let ink = if *v / self.vmax.max(1e-12) > 0.6 {
                            BLACK
                        } else {
                            WHITE
                        };
                        let style =
                            text_style(11.0, &ink).pos(Pos::new(HPos::Center, VPos::Center));
                        chart.draw_series(std::iter::once(Text::new(
                            self.cell_label(*v),
                            (SegmentValue::CenterOf(j), SegmentValue::CenterOf(y)),
                            style,
                        )))?;
                    }
                }
            }
        }
        // The colour bar.
        let mut bar = ChartBuilder::on(&bar_area)
            .margin_top(BAR_TOP)
            .margin_bottom(BAR_BOTTOM)
            .margin_right(10)
            .y_label_area_size(60)
            .caption("P(C_S in out_T)", text_style(12.0, &TEXT))
            .build_cartesian_2d(0.0..1.0, 0.0..self.vmax)?;
        let vmax = self.vmax;
        let y_fmt = move |v: &f64| value_label(*v, vmax);
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels((self.bar_height() / BAR_LABEL_SPACING).clamp(2, 6) as usize)
            .y_label_formatter(&y_fmt)
            .label_style(text_style(11.0, &TEXT))
            .draw()?;
        let steps = 100;
        bar.draw_series((0..steps).map(|k| {
            let lo = self.vmax * k as f64 / steps as f64;
            let hi = self.vmax * (k + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, lo), (1.0, hi)],
                viridis((lo + hi) / 2.0, self.vmax).filled(),
            )
        }))?;
        Ok(())
    }
}

pub(super) fn heatmap_plots(
    results: &Results,
    stats: &Stats,
    dir: &Path,
) -> Result<Vec<Plot>, Error> {
    let m = 0; // P(C_S in out_T)
    let checkpoints = results.checkpoints();
    let labels: Vec<String> = checkpoints
        .iter()
        .map(|c| results.checkpoint_label(c))
        .collect();
    let mut plots = Vec::new();
    for &setting in results
        .settings
        .iter()
        .filter(|s| **s != Setting::Unpatched)
    {
        let mut panels = Vec::new();
        let mut vmax: f64 = 0.0;
        let mut table = DataTable {
            header: ["target pair", "checkpoint"]
                .iter()
                .map(|s| s.to_string())
                .chain((0..results.layers).map(|j| format!("j = {j}")))
                .collect(),
            rows: Vec::new(),
        };
        for (in_l, out_l) in &results.pairs {
            let values: Vec<Vec<Option<f64>>> = checkpoints
                .iter()
                .map(|ck| {
                    (0..results.layers)
                        .map(|j| {
                            let key = Key::new(ck, setting, in_l, out_l, j);
                            Stats::get(&stats.by_pair, &key, m).map(|e| e.mean)
                        })
                        .collect()
                })
                .collect();
            if values.iter().flatten().all(Option::is_none) {
                continue;
            }
            vmax = values
                .iter()
                .flatten()
                .flatten()
                .fold(vmax, |a, &b| a.max(b));
            for (ck, row) in labels.iter().zip(&values) {
                let mut cells = vec![format!("{in_l} → {out_l}"), ck.clone()];
                cells.extend(
                    row.iter()
                        .map(|v| v.map_or(String::new(), |v| format!("{v:.4}"))),
                );
                table.rows.push(cells);
            }
            panels.push(HeatPanel {
                label: format!("{} → {}", lang_name(in_l), lang_name(out_l)),
                values,
            });
        }
        if panels.is_empty() {
            continue;
        }
        let name = format!("heatmap_{setting}");
        let title = format!("P(C_S in out_T) by checkpoint and start layer: setting {setting}");
        let fig = HeatFigure {
            title: title.clone(),
            subtitle: "mean over concept pairs; checkpoints in training order, earliest at the top"
                .into(),
            panels,
            checkpoints: labels.clone(),
            layers: results.layers,
            // The scale ends at the largest value (1 when all are 0): the brightest cell is
            // the top of the bar.
            vmax: if vmax > 0.0 { vmax } else { 1.0 },
        };
        let (svg, svg_path, png_path) = render(&fig, dir, &name)?;
        plots.push(Plot {
            kind: Kind::Heatmap,
            name,
            title,
            caption: format!(
                "Setting {setting} ({}). Each cell is the mean probability of the source \
                 concept in the target's output language after patching from start layer j, at \
                 one checkpoint; one panel per target pair, one colour scale for all.",
                setting_description(setting)
            ),
            svg,
            svg_path,
            png_path,
            table,
        });
    }
    Ok(plots)
}

// ---------------------------------------------------------------------------------------
// Emergence

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(checkpoints: usize) -> HeatFigure {
        HeatFigure {
            title: String::new(),
            subtitle: String::new(),
            panels: vec![HeatPanel {
                label: "French → German".into(),
                values: vec![vec![Some(0.1), Some(0.2)]; checkpoints],
            }],
            checkpoints: (0..checkpoints).map(|i| format!("step {i}")).collect(),
            layers: 2,
            vmax: 0.2,
        }
    }

    #[test]
    fn the_colour_bar_is_readable_with_one_checkpoint() {
        let one = figure(1);
        assert!(one.bar_height() >= BAR_MIN, "{}", one.bar_height());
        // Room for the bar, with the panels at their own height.
        let (_, h) = one.size();
        assert!(h >= 64 + BAR_TOP + BAR_MIN + BAR_BOTTOM + 20, "{h}");
        assert_eq!(one.body_heights().0, one.panel_size().1);
        // Many checkpoints: the panels set the height, and the bar spans it.
        let many = figure(20);
        assert_eq!(many.body_heights().0, many.body_heights().1);
        assert!(many.bar_height() > BAR_MIN);
    }

    #[test]
    fn cells_are_labelled_on_the_scale_of_the_data() {
        let mut f = figure(1);
        assert_eq!(f.cell_label(0.123456), "0.123");
        f.vmax = 0.05;
        assert_eq!(f.cell_label(0.0123456), "0.0123");
        f.vmax = 4e-5;
        assert_eq!(f.cell_label(2.346e-5), "2.35e-5");
    }
}
