//! The plots, each drawn once through plotters' SVG backend and once into an RGB buffer that
//! is encoded as PNG:
//!
//! - layer curves (one file per patched setting and target pair, a panel per checkpoint):
//!   every probability metric against the start layer, mean with its 95% band, the unpatched
//!   baselines as dashed lines (the layout of Dumas et al.'s figures);
//! - heatmaps (one file per patched setting, a panel per target pair): mean P(C_S in out_T)
//!   per checkpoint and start layer;
//! - emergence (one file, a panel per patched setting): per output language, P(C_S in out_T)
//!   at its best start layer against the checkpoints, in training order.
//!
//! Text is laid out with the DejaVu Sans subset in `fonts/`, registered with plotters from
//! the bytes compiled in, so no system font is looked up.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use xlpatch_results::{Setting, Variant};

use crate::Error;
use crate::input::Results;
use crate::stats::{Estimate, METRICS, Stats};

static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");

/// The font family plot text is drawn in. plotters writes the name verbatim into SVG
/// `font-family` attributes, so it is a CSS list: the embedded font first, then any sans.
pub(crate) const FONT: &str = "DejaVu Sans, sans-serif";

/// The font file, for embedding in the HTML page.
pub(crate) fn font_bytes() -> &'static [u8] {
    FONT_BYTES
}

fn register_font() -> Result<(), Error> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // plotters' own defaults (axis labels) ask for "sans-serif": it gets the same bytes.
        [FONT, "sans-serif"]
            .iter()
            .all(|name| plotters::style::register_font(name, FontStyle::Normal, FONT_BYTES).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Plot {
            name: "font".into(),
            what: "the embedded DejaVu Sans subset is not a valid font".into(),
        })
    }
}

/// Which part of the report a plot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Emergence,
    Heatmap,
    Layers,
}

/// The numbers behind a plot.
#[derive(Debug, Clone, Default)]
pub(crate) struct DataTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A plot, written.
#[derive(Debug, Clone)]
pub(crate) struct Plot {
    pub kind: Kind,
    /// The file stem (`layers_tgt_fr-de`).
    pub name: String,
    pub title: String,
    /// What the plot shows, for the page.
    pub caption: String,
    pub svg: String,
    pub svg_path: PathBuf,
    pub png_path: PathBuf,
    pub table: DataTable,
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A panel of a line figure: x and y both continuous.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A figure that can be drawn on any backend.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Draws `fig` as SVG and PNG into `dir` under `name`; returns the SVG text.
fn render<F: Figure>(fig: &F, dir: &Path, name: &str) -> Result<(String, PathBuf, PathBuf), Error> {
    let plot_err = |what: String| Error::Plot {
        name: name.to_string(),
        what,
    };
    let size = fig.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        fig.draw(&root).map_err(|e| plot_err(e.to_string()))?;
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        fig.draw(&root).map_err(|e| plot_err(e.to_string()))?;
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    let png = encode_png(&rgb, size).map_err(|e| plot_err(format!("PNG encoding: {e}")))?;
    let svg_path = dir.join(format!("{name}.svg"));
    let png_path = dir.join(format!("{name}.png"));
    crate::write(&svg_path, &svg)?;
    crate::write(&png_path, &png)?;
    Ok((svg, svg_path, png_path))
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

// Okabe & Ito's colour-blind-safe palette, then a few more.
const PALETTE: [RGBColor; 10] = [
    RGBColor(213, 94, 0),
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(0, 158, 115),
    RGBColor(120, 120, 120),
    RGBColor(240, 200, 40),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const GRID: RGBColor = RGBColor(225, 225, 225);
const TEXT: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(90, 90, 90);

fn text_style(size: f64, c: &RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(c)
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Line(RGBColor),
    Dashed(RGBColor),
    Band(RGBColor),
}

/// The title strip at the top and the legend strip at the bottom; returns the area between.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    legend: &[(Swatch, String)],
    legend_height: u32,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(64);
    top.draw(&Text::new(
        title.to_string(),
        (16, 10),
        text_style(22.0, &TEXT),
    ))?;
    top.draw(&Text::new(
        subtitle.to_string(),
        (16, 40),
        text_style(14.0, &MUTED),
    ))?;
    let (body, bottom) = rest.split_vertically(h - 64 - legend_height);
    let style = text_style(14.0, &TEXT).pos(Pos::new(HPos::Left, VPos::Center));
    let (mut x, mut y) = (24i32, 18i32);
    for (swatch, label) in legend {
        let (tw, _) = bottom.estimate_text_size(label, &style)?;
        if x + 40 + tw as i32 > w as i32 - 16 {
            x = 24;
            y += 24;
        }
        match *swatch {
            Swatch::Line(c) => {
                bottom.draw(&PathElement::new([(x, y), (x + 28, y)], c.stroke_width(3)))?;
                bottom.draw(&Circle::new((x + 14, y), 3, c.filled()))?;
            }
            Swatch::Dashed(c) => {
                for k in 0..3 {
                    let x0 = x + k * 11;
                    bottom.draw(&PathElement::new([(x0, y), (x0 + 6, y)], c.stroke_width(2)))?;
                }
            }
            Swatch::Band(c) => {
                bottom.draw(&Rectangle::new(
                    [(x, y - 7), (x + 28, y + 7)],
                    c.mix(0.25).filled(),
                ))?;
            }
        }
        bottom.draw(&Text::new(label.clone(), (x + 36, y), style.clone()))?;
        x += 36 + tw as i32 + 28;
    }
    Ok(body)
}

/// A curve of means with markers over its shaded confidence band, in `col`.
fn mean_with_band<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[(usize, Estimate)],
    col: RGBColor,
) -> DrawResult<DB> {
    let at = |x: usize, y: f64| (x as f64, y);
    let mut band: Vec<(f64, f64)> = points.iter().map(|(x, e)| at(*x, e.hi)).collect();
    band.extend(points.iter().rev().map(|(x, e)| at(*x, e.lo)));
    chart.draw_series(std::iter::once(Polygon::new(band, col.mix(0.15).filled())))?;
    chart.draw_series(LineSeries::new(
        points.iter().map(|(x, e)| at(*x, e.mean)),
        col.stroke_width(2),
    ))?;
    chart.draw_series(
        points
            .iter()
            .map(|(x, e)| Circle::new(at(*x, e.mean), 3, col.filled())),
    )?;
    Ok(())
}

/// Decimals for tick labels of an axis from 0 to `max`.
fn decimals(max: f64) -> usize {
    if max <= 0.0 {
        return 1;
    }
    let step = max / 5.0;
    (-step.log10().floor()).clamp(0.0, 6.0) as usize
}

/// The top of a probability axis: a little above `max`, never above 1.
fn axis_max(max: f64) -> f64 {
    (max * 1.12).clamp(1e-3, 1.0)
}

fn fmt_est(e: &Estimate) -> String {
    format!("{:.4} [{:.4}, {:.4}]", e.mean, e.lo, e.hi)
}

/// What the panels of a line figure (layer curves, emergence curves) differ in.
struct Axes<'a> {
    /// The last x (the first is 0); `pad` is left free on both sides.
    x_max: f64,
    pad: f64,
    ymax: f64,
    x_labels: usize,
    x_fmt: &'a dyn Fn(&f64) -> String,
    x_desc: &'a str,
    y_desc: &'a str,
    tick_size: f64,
    margin: u32,
    x_area: u32,
}

/// A line figure's legend: its lines, then the band and (when drawn) the dashed baselines.
fn band_legend(
    mut lines: Vec<(Swatch, String)>,
    has_baseline: bool,
    baseline: &str,
) -> Vec<(Swatch, String)> {
    lines.push((
        Swatch::Band(RGBColor(120, 120, 120)),
        "95% bootstrap CI".into(),
    ));
    if has_baseline {
        lines.push((Swatch::Dashed(RGBColor(80, 80, 80)), baseline.into()));
    }
    lines
}

/// The frame of a figure of `n` panels in rows of at most `max_cols`; returns the panels'
/// areas.
fn panel_areas<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    legend: &[(Swatch, String)],
    n: usize,
    max_cols: usize,
) -> Result<Vec<DrawingArea<DB, Shift>>, DrawingAreaErrorKind<DB::ErrorType>> {
    let body = frame(root, title, subtitle, legend, 84)?;
    let body = body.margin(0, 0, 16, 16);
    Ok(body.split_evenly(grid(n, max_cols)))
}

/// One panel's chart: caption, axes, mesh; y from 0 to `axes.ymax` with six labels.
fn line_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    axes: &Axes<'_>,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, text_style(16.0, &TEXT))
        .margin(axes.margin)
        .x_label_area_size(axes.x_area)
        .y_label_area_size(56)
        .build_cartesian_2d(-axes.pad..axes.x_max + axes.pad, 0.0..axes.ymax)?;
    let dec = decimals(axes.ymax);
    let y_fmt = move |v: &f64| format!("{v:.dec$}");
    chart
        .configure_mesh()
        .x_labels(axes.x_labels)
        .y_labels(6)
        .x_label_formatter(axes.x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .label_style(text_style(axes.tick_size, &TEXT))
        .axis_desc_style(text_style(13.0, &TEXT))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .draw()?;
    Ok(chart)
}

/// A dashed unpatched baseline through `points`, in `col`.
fn dashed_baseline<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[(f64, f64)],
    col: RGBColor,
) -> DrawResult<DB> {
    chart.draw_series(DashedLineSeries::new(
        points.iter().copied(),
        6,
        4,
        col.stroke_width(1),
    ))?;
    Ok(())
}

/// A grid of `n` panels, at most `max_cols` wide.
fn grid(n: usize, max_cols: usize) -> (usize, usize) {
    let cols = n.clamp(1, max_cols);
    (n.div_ceil(cols).max(1), cols)
}

// ---------------------------------------------------------------------------------------
// Layer curves

struct Curve {
    metric: usize,
    points: Vec<(usize, Estimate)>,
    baseline: Option<f64>,
}

struct LayerPanel {
    label: String,
    curves: Vec<Curve>,
}

struct LayerFigure {
    title: String,
    subtitle: String,
    panels: Vec<LayerPanel>,
    layers: usize,
    ymax: f64,
    metrics: Vec<usize>,
    has_baseline: bool,
}

const PANEL_W: u32 = 330;
const PANEL_H: u32 = 270;

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

fn layer_plots(results: &Results, stats: &Stats, dir: &Path) -> Result<Vec<Plot>, Error> {
    let metrics: Vec<usize> = (0..METRICS.len())
        .filter(|&m| METRICS[m].plotted && stats.present[m])
        .collect();
    let mut plots = Vec::new();
    for &setting in results
        .settings
        .iter()
        .filter(|s| **s != Setting::Unpatched)
    {
        for (in_l, out_l) in &results.pairs {
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
                for &m in &metrics {
                    let points: Vec<(usize, Estimate)> = (0..results.layers)
                        .filter_map(|j| {
                            let key = (ck.to_string(), setting, in_l.clone(), out_l.clone(), j);
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
            let name = format!("layers_{setting}_{in_l}-{out_l}");
            let title = format!(
                "Layer curves: setting {setting}, {} → {}",
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
                    "Setting {setting} ({}). Target prompts translate from {} to {}. Each line is \
                     a probability after patching the source latent into blocks j..L-1 at the \
                     target's word; the shaded band is its 95% bootstrap interval over concept \
                     pairs; dashed lines are the unpatched values. The y axis is scaled to the \
                     data.",
                    setting_description(setting),
                    lang_name(in_l),
                    lang_name(out_l)
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

struct HeatPanel {
    label: String,
    /// Per checkpoint (training order), per start layer.
    values: Vec<Vec<Option<f64>>>,
}

struct HeatFigure {
    title: String,
    subtitle: String,
    panels: Vec<HeatPanel>,
    checkpoints: Vec<String>,
    layers: usize,
    vmax: f64,
}

fn viridis(v: f64, vmax: f64) -> RGBColor {
    ViridisRGB::get_color_normalized(v, 0.0, vmax.max(1e-12))
}

impl HeatFigure {
    fn panel_size(&self) -> (u32, u32) {
        let w = (self.layers as u32 * 56).clamp(240, 900) + 110;
        let h = self.checkpoints.len() as u32 * 34 + 90;
        (w, h)
    }
}

impl Figure for HeatFigure {
    fn size(&self) -> (u32, u32) {
        let (pw, ph) = self.panel_size();
        let (rows, cols) = grid(self.panels.len(), (1300 / pw).max(1) as usize);
        (
            (cols as u32 * pw + 130).max(700),
            64 + rows as u32 * ph + 20,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = frame(root, &self.title, &self.subtitle, &[], 20)?;
        let (w, _) = body.dim_in_pixel();
        let (panels_area, bar_area) = body.split_horizontally(w - 120);
        let (pw, _) = self.panel_size();
        let (rows, cols) = grid(self.panels.len(), (1300 / pw).max(1) as usize);
        let areas = panels_area.split_evenly((rows, cols));
        let n = self.checkpoints.len();
        let layers = self.layers;
        let dec = decimals(self.vmax);
        let cell_dec = if self.vmax < 0.1 { 4 } else { 3 };
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
                            format!("{v:.cell_dec$}"),
                            (SegmentValue::CenterOf(j), SegmentValue::CenterOf(y)),
                            style,
                        )))?;
                    }
                }
            }
        }
        // The colour bar.
        let mut bar = ChartBuilder::on(&bar_area)
            .margin_top(40)
            .margin_bottom(60)
            .margin_right(10)
            .y_label_area_size(60)
            .caption("P(C_S in out_T)", text_style(12.0, &TEXT))
            .build_cartesian_2d(0.0..1.0, 0.0..self.vmax)?;
        let y_fmt = move |v: &f64| format!("{v:.dec$}");
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
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

fn heatmap_plots(results: &Results, stats: &Stats, dir: &Path) -> Result<Vec<Plot>, Error> {
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
                            let key = (ck.to_string(), setting, in_l.clone(), out_l.clone(), j);
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
            vmax: axis_max(vmax) / 1.12,
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

struct EmLine {
    color: usize,
    points: Vec<(usize, Estimate)>,
    baseline: Vec<(usize, f64)>,
}

struct EmPanel {
    label: String,
    lines: Vec<EmLine>,
}

struct EmergenceFigure {
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
                if line.baseline.len() > 1 {
                    dashed_baseline(
                        &mut chart,
                        &line
                            .baseline
                            .iter()
                            .map(|(i, b)| (*i as f64, *b))
                            .collect::<Vec<_>>(),
                        col,
                    )?;
                }
                mean_with_band(&mut chart, &line.points, col)?;
            }
        }
        Ok(())
    }
}

fn emergence_plot(results: &Results, stats: &Stats, dir: &Path) -> Result<Option<Plot>, Error> {
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

/// A language's English name with its code, or the code alone when xlpatch does not know it.
pub(crate) fn lang_name(code: &str) -> String {
    xlpatch_concepts::Lang::from_code(code)
        .map_or(code.to_string(), |l| l.english_name().to_string())
}

fn variant_name(results: &Results) -> &'static str {
    match results.rows.first().map(|r| r.variant) {
        Some(Variant::SingleLayer) => "single-layer",
        Some(Variant::FromLayer) | None => "from-layer",
    }
}

/// What a setting's source latent is.
pub(crate) fn setting_description(setting: Setting) -> &'static str {
    match setting {
        Setting::Tgt => "source latent from the target's own language pair",
        Setting::Seen => {
            "source latent averaged over seen language pairs without the target languages or English"
        }
        Setting::EnEn => "source latent from English copy prompts",
        Setting::SelfCopy => "source latent from copy prompts in the output language",
        Setting::TgtTgt => "the target's own latent (identity control)",
        Setting::Unpatched => "no patch",
    }
}

/// Draws every plot into `dir`: the emergence plot, the heatmaps, the layer curves.
pub(crate) fn draw_all(results: &Results, stats: &Stats, dir: &Path) -> Result<Vec<Plot>, Error> {
    register_font()?;
    let mut plots = Vec::new();
    plots.extend(emergence_plot(results, stats, dir)?);
    plots.extend(heatmap_plots(results, stats, dir)?);
    plots.extend(layer_plots(results, stats, dir)?);
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_decimals_follow_the_axis_range() {
        assert_eq!(decimals(1.0), 1);
        assert_eq!(decimals(0.05), 2);
        assert_eq!(decimals(0.004), 4);
        assert_eq!(axis_max(0.0), 1e-3);
        assert_eq!(axis_max(0.95), 1.0);
    }

    #[test]
    fn grids_fill_rows_first() {
        assert_eq!(grid(7, 4), (2, 4));
        assert_eq!(grid(3, 4), (1, 3));
        assert_eq!(grid(0, 4), (1, 1));
    }
}
