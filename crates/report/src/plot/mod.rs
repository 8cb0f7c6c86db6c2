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
//! the bytes compiled in, so no system font is looked up; in PNGs it is drawn glyph by glyph
//! (`bitmap.rs`), since plotters' own drawing misplaces glyphs.

use std::path::Path;

use crate::Error;
use crate::input::Results;
use crate::stats::Stats;

mod bitmap;
mod emergence;
mod heatmap;
mod labels;
mod layers;
mod style;

pub(crate) use labels::{lang_name, setting_description};
pub(crate) use style::{DataTable, Kind, Plot, font_bytes};

/// Draws every plot into `dir`: the emergence plot, the heatmaps, the layer curves.
pub(crate) fn draw_all(results: &Results, stats: &Stats, dir: &Path) -> Result<Vec<Plot>, Error> {
    style::register_font()?;
    let mut plots = Vec::new();
    plots.extend(emergence::emergence_plot(results, stats, dir)?);
    plots.extend(heatmap::heatmap_plots(results, stats, dir)?);
    plots.extend(layers::layer_plots(results, stats, dir)?);
    Ok(plots)
}
