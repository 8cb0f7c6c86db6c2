//! The PNG backend: plotters' bitmap backend with its text drawn glyph by glyph at the pen
//! position plus each glyph's left side bearing.
//!
//! plotters 0.3.7 draws ab_glyph text by putting each glyph's ink box at the pen position,
//! dropping the bearing, so narrow glyphs with a wide bearing pull left and the gaps around
//! them look wrong: PNGs read "P(C_Sin out_T)" and "step 1 00" where the SVG reads right.
//! Widths for anchoring still come from the style's layout (advances and kerning), which this
//! placement now matches. The vertical placement is plotters' own, so PNG and SVG text sit
//! alike.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, ScaleFont, point};
use plotters::prelude::BitMapBackend;
use plotters_backend::text_anchor::Pos;
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
    FontFamily, FontStyle, FontTransform,
};

use super::style::FONT_BYTES;

/// The embedded font, parsed once (plot text is only ever drawn in it).
fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Draws `text` in `font` at `size` pixels, the pen starting at `pos`, calling `pixel` with
/// each covered pixel and its coverage (0 to 1).
pub(super) fn draw_glyphs<E>(
    font: &FontRef<'_>,
    size: f32,
    text: &str,
    pos: BackendCoord,
    mut pixel: impl FnMut(i32, i32, f32) -> Result<(), E>,
) -> Result<(), E> {
    let scaled = font.as_scaled(size);
    // plotters' baseline: half the size below the top of the layout box.
    let baseline = size / 2.0;
    let mut pen = 0f32;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scaled.scale(), point(pen, 0.0));
        if let Some(outline) = scaled.outline_glyph(glyph) {
            // The ink box is where the glyph is, bearing included.
            let b = outline.px_bounds();
            let (x0, y0) = (b.min.x as i32, (baseline + b.min.y) as i32);
            let mut covered = Vec::new();
            outline.draw(|x, y, c| covered.push((x as i32, y as i32, c)));
            for (x, y, c) in covered {
                pixel(pos.0 + x0 + x, pos.1 + y0 + y, c)?;
            }
        }
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok(())
}

/// A text style whose glyphs are drawn by [`draw_glyphs`]; everything else is `S`'s.
struct Placed<'s, S>(&'s S);

impl<S: BackendTextStyle> BackendTextStyle for Placed<'_, S> {
    type FontError = S::FontError;

    fn color(&self) -> BackendColor {
        self.0.color()
    }

    fn size(&self) -> f64 {
        self.0.size()
    }

    fn transform(&self) -> FontTransform {
        self.0.transform()
    }

    fn style(&self) -> FontStyle {
        self.0.style()
    }

    fn anchor(&self) -> Pos {
        self.0.anchor()
    }

    fn family(&self) -> FontFamily<'_> {
        self.0.family()
    }

    fn layout_box(&self, text: &str) -> Result<((i32, i32), (i32, i32)), Self::FontError> {
        self.0.layout_box(text)
    }

    fn draw<E, DrawFunc: FnMut(i32, i32, BackendColor) -> Result<(), E>>(
        &self,
        text: &str,
        pos: BackendCoord,
        mut draw: DrawFunc,
    ) -> Result<Result<(), E>, Self::FontError> {
        let Some(font) = font() else {
            // Not reached: `register_font` refuses a font that does not parse.
            return self.0.draw(text, pos, draw);
        };
        let color = self.0.color();
        Ok(draw_glyphs(
            font,
            self.0.size() as f32,
            text,
            pos,
            |x, y, c| {
                draw(
                    x,
                    y,
                    BackendColor {
                        alpha: color.alpha * f64::from(c),
                        rgb: color.rgb,
                    },
                )
            },
        ))
    }
}

/// plotters' bitmap backend, text drawn with [`draw_glyphs`].
pub(super) struct Bitmap<'a>(pub(super) BitMapBackend<'a>);

type Err<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Bitmap<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Err<'a>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Err<'a>> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Err<'a>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.0.fill_polygon(vert, style)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), Err<'a>> {
        self.0.draw_text(text, &Placed(style), pos)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), Err<'a>> {
        self.0.estimate_text_size(text, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), Err<'a>> {
        self.0.blit_bitmap(pos, size, src)
    }
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;
    use crate::plot::style::{register_font, text_style};

    /// Runs of ink columns, as (first, last), of `text` drawn at 24 px with its pen at x = 10
    /// through the PNG backend.
    fn ink(text: &str) -> Vec<(usize, usize)> {
        register_font().unwrap();
        let (w, h) = (400u32, 60u32);
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let root = Bitmap(BitMapBackend::with_buffer(&mut rgb, (w, h))).into_drawing_area();
            root.draw(&Text::new(text, (10, 10), text_style(24.0, &BLACK)))
                .unwrap();
            root.present().unwrap();
        }
        let inked: Vec<bool> = (0..w as usize)
            .map(|x| (0..h as usize).any(|y| rgb[(y * w as usize + x) * 3] < 128))
            .collect();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (x, &on) in inked.iter().enumerate() {
            match runs.last_mut() {
                Some((_, end)) if on && *end + 1 == x => *end = x,
                _ if on => runs.push((x, x)),
                _ => {}
            }
        }
        runs
    }

    /// Where each glyph's ink starts when `text` is laid out by ab_glyph from pen x = 10:
    /// the pen position (advances and kerning) plus the glyph's left side bearing.
    fn laid_out(text: &str) -> Vec<f32> {
        let scaled = font().unwrap().as_scaled(24.0);
        let mut pen = 10.0f32;
        let mut prev: Option<GlyphId> = None;
        let mut starts = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            let g = id.with_scale_and_position(scaled.scale(), point(pen, 0.0));
            if let Some(o) = scaled.outline_glyph(g) {
                starts.push(o.px_bounds().min.x);
            }
            pen += scaled.h_advance(id);
            prev = Some(id);
        }
        starts
    }

    #[test]
    fn glyphs_are_drawn_where_the_layout_puts_them() {
        for text in ["100", "S in", "0.010"] {
            let drawn: Vec<f32> = ink(text).iter().map(|r| r.0 as f32).collect();
            let want = laid_out(text);
            assert_eq!(drawn.len(), want.len(), "{text:?}: runs {drawn:?}");
            for (d, w) in drawn.iter().zip(&want) {
                assert!(
                    (d - w).abs() <= 1.0,
                    "{text:?}: ink starts at {drawn:?}, the layout at {want:?}"
                );
            }
        }
    }

    #[test]
    fn a_space_is_wider_than_the_gap_between_letters() {
        // "S in" and "Sin": the gap before "i" is wider by about a space's advance (0.32 em,
        // some 6.5 px at this size); "100": the 1 is no farther from its 0 than the 0s are
        // from each other, give or take a pixel.
        let gap = |text: &str| {
            let r = ink(text);
            r[1].0 - r[0].1
        };
        let (spaced, tight) = (gap("S in"), gap("Sin"));
        assert!(spaced >= tight + 5, "S in: {spaced} px, Sin: {tight} px");
        let r = ink("100");
        let (a, b) = (r[1].0 - r[0].1, r[2].0 - r[1].1);
        assert!(a <= b + 1, "100: gaps of {a} and {b} px");
    }
}
