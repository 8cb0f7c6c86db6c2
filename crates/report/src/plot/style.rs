//! What every plot shares: the embedded font, the figure trait and its SVG and PNG
//! rendering, colours and text styles, the title and legend frame, panel grids, line charts
//! with confidence bands and dashed baselines.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::Error;
use crate::stats::Estimate;

pub(super) static FONT_BYTES: &[u8] = include_bytes!("../../fonts/DejaVuSans-subset.ttf");

/// The font family plot text is drawn in. plotters writes the name verbatim into SVG
/// `font-family` attributes, so it is a CSS list: the embedded font first, then any sans.
pub(crate) const FONT: &str = "DejaVu Sans, sans-serif";

/// The font file, for embedding in the HTML page.
pub(crate) fn font_bytes() -> &'static [u8] {
    FONT_BYTES
}

pub(super) fn register_font() -> Result<(), Error> {
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

pub(super) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A panel of a line figure: x and y both continuous.
pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A figure that can be drawn on any backend.
pub(super) trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Draws `fig` as SVG and PNG into `dir` under `name`; returns the SVG text.
pub(super) fn render<F: Figure>(
    fig: &F,
    dir: &Path,
    name: &str,
) -> Result<(String, PathBuf, PathBuf), Error> {
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
        let root =
            super::bitmap::Bitmap(BitMapBackend::with_buffer(&mut rgb, size)).into_drawing_area();
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

pub(super) fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
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
pub(super) const PALETTE: [RGBColor; 10] = [
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

pub(super) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(super) const GRID: RGBColor = RGBColor(225, 225, 225);
pub(super) const TEXT: RGBColor = RGBColor(30, 30, 30);
pub(super) const MUTED: RGBColor = RGBColor(90, 90, 90);

pub(super) fn text_style(size: f64, c: &RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(c)
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
pub(super) enum Swatch {
    Line(RGBColor),
    Dashed(RGBColor),
    Band(RGBColor),
}

/// The title strip at the top and the legend strip at the bottom; returns the area between.
pub(super) fn frame<DB: DrawingBackend>(
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
pub(super) fn mean_with_band<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[(usize, Estimate)],
    col: RGBColor,
) -> DrawResult<DB> {
    let at = |x: usize, y: f64| (x as f64, y);
    // A band of one point has no area: its interval is drawn as an error bar.
    if let [(x, e)] = points {
        chart.draw_series(std::iter::once(PathElement::new(
            [at(*x, e.lo), at(*x, e.hi)],
            col.mix(0.5).stroke_width(6),
        )))?;
    }
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
pub(super) fn decimals(max: f64) -> usize {
    if max <= 0.0 {
        return 1;
    }
    let step = max / 5.0;
    (-step.log10().floor()).clamp(0.0, 6.0) as usize
}

/// Below this top, axis values are written in scientific notation (`2.5e-5`): fixed-point
/// labels would be mostly zeros.
const SCIENTIFIC_BELOW: f64 = 1e-3;

/// A tick label or cell value `v` on an axis from 0 to `max`.
pub(super) fn value_label(v: f64, max: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if max < SCIENTIFIC_BELOW {
        format!("{v:.1e}")
    } else {
        let dec = decimals(max);
        format!("{v:.dec$}")
    }
}

/// The top of a probability axis scaled to the data: a little above its largest value
/// `max`, never above 1 (a probability); 1 when every value is 0.
pub(super) fn axis_max(max: f64) -> f64 {
    if max > 0.0 {
        (max * 1.12).min(1.0)
    } else {
        1.0
    }
}

pub(super) fn fmt_est(e: &Estimate) -> String {
    format!("{:.4} [{:.4}, {:.4}]", e.mean, e.lo, e.hi)
}

/// What the panels of a line figure (layer curves, emergence curves) differ in.
pub(super) struct Axes<'a> {
    /// The last x (the first is 0); `pad` is left free on both sides.
    pub(super) x_max: f64,
    pub(super) pad: f64,
    pub(super) ymax: f64,
    pub(super) x_labels: usize,
    pub(super) x_fmt: &'a dyn Fn(&f64) -> String,
    pub(super) x_desc: &'a str,
    pub(super) y_desc: &'a str,
    pub(super) tick_size: f64,
    pub(super) margin: u32,
    pub(super) x_area: u32,
}

/// A line figure's legend: its lines, then the band and (when drawn) the dashed baselines.
pub(super) fn band_legend(
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
pub(super) fn panel_areas<DB: DrawingBackend>(
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
pub(super) fn line_chart<'a, DB: DrawingBackend>(
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
    let ymax = axes.ymax;
    let y_fmt = move |v: &f64| value_label(*v, ymax);
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
pub(super) fn dashed_baseline<DB: DrawingBackend>(
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
pub(super) fn grid(n: usize, max_cols: usize) -> (usize, usize) {
    let cols = n.clamp(1, max_cols);
    (n.div_ceil(cols).max(1), cols)
}

// ---------------------------------------------------------------------------------------
// Layer curves

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_decimals_follow_the_axis_range() {
        assert_eq!(decimals(1.0), 1);
        assert_eq!(decimals(0.05), 2);
        assert_eq!(decimals(0.004), 4);
        assert_eq!(value_label(0.01, 0.05), "0.01");
        assert_eq!(value_label(0.0, 0.05), "0");
        assert_eq!(value_label(2e-5, 4e-5), "2.0e-5");
    }

    #[test]
    fn a_probability_axis_is_scaled_to_the_data() {
        // Tiny probabilities (an untrained model) fill the axis, not 1/50 of it.
        let top = axis_max(2e-5);
        assert!(top > 2e-5 && top < 3e-5, "{top}");
        assert!((axis_max(0.3) - 0.336).abs() < 1e-12);
        // Never above 1; all-zero data on 0..1.
        assert_eq!(axis_max(0.95), 1.0);
        assert_eq!(axis_max(0.0), 1.0);
    }

    #[test]
    fn grids_fill_rows_first() {
        assert_eq!(grid(7, 4), (2, 4));
        assert_eq!(grid(3, 4), (1, 3));
        assert_eq!(grid(0, 4), (1, 1));
    }
}
