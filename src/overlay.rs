//! Pictures for people: the image with the mask, the box and the CFPG point drawn on it, and a legend.

use image::{GenericImage, GrayImage, Rgb, RgbImage};
use imageproc::drawing::{draw_cross_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;
use pslg_cfpg::Roi;

/// Draws `mask` (tinted red at 50 %, with a solid outline), the box (yellow) and an optional point (cyan cross)
/// over a copy of `image`. `mask` must have the image's size; a mismatched mask is not drawn.
pub fn draw_overlay(
    image: &RgbImage,
    mask: &GrayImage,
    roi: Roi,
    point: Option<(f64, f64)>,
) -> RgbImage {
    let mut out = image.clone();
    if mask.dimensions() == image.dimensions() {
        let (w, h) = mask.dimensions();
        let fg = |x: i64, y: i64| {
            x >= 0
                && y >= 0
                && x < i64::from(w)
                && y < i64::from(h)
                && mask.get_pixel(x as u32, y as u32)[0] != 0
        };
        for (x, y, p) in out.enumerate_pixels_mut() {
            let (xi, yi) = (i64::from(x), i64::from(y));
            if fg(xi, yi) {
                let edge = !(fg(xi - 1, yi) && fg(xi + 1, yi) && fg(xi, yi - 1) && fg(xi, yi + 1));
                *p = if edge {
                    Rgb([255, 40, 40])
                } else {
                    Rgb([p[0] / 2 + 127, p[1] / 2, p[2] / 2])
                };
            }
        }
    }
    draw_hollow_rect_mut(
        &mut out,
        Rect::at(roi.x as i32, roi.y as i32).of_size(roi.width, roi.height),
        Rgb([255, 230, 0]),
    );
    if let Some((x, y)) = point {
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1)] {
            draw_cross_mut(&mut out, Rgb([0, 255, 255]), x as i32 + dx, y as i32 + dy);
        }
    }
    out
}

const MASK_FILL: Rgb<u8> = Rgb([190, 60, 60]);
const MASK_EDGE: Rgb<u8> = Rgb([255, 40, 40]);
const BOX: Rgb<u8> = Rgb([255, 230, 0]);
const POINT: Rgb<u8> = Rgb([0, 255, 255]);

/// [`draw_overlay`] with a legend strip added below the picture: a swatch and a label for the mask, the box
/// and (when given) the CFPG point, plus an optional caption line (e.g. the prompt). Text uses the 8×8
/// public-domain bitmap font of the `font8x8` crate, scaled with the image (×1 below 400 px wide, ×2 below
/// 1200, …); lines too long for the width are cut.
pub fn draw_overlay_with_legend(
    image: &RgbImage,
    mask: &GrayImage,
    roi: Roi,
    point: Option<(f64, f64)>,
    caption: Option<&str>,
) -> RgbImage {
    let pic = draw_overlay(image, mask, roi, point);
    let (w, h) = pic.dimensions();
    let scale = 1 + w / 400;
    let line = 10 * scale;
    let mut entries: Vec<(Swatch, &str)> =
        vec![(Swatch::Mask, "mask"), (Swatch::Box, "box prompt")];
    if point.is_some() {
        entries.push((Swatch::Point, "CFPG foreground point"));
    }
    let rows = entries.len() as u32 + u32::from(caption.is_some());
    let strip = rows * line + 2 * scale;
    let mut out = RgbImage::from_pixel(w, h + strip, Rgb([24, 24, 24]));
    // The picture is `w × h` and lies inside `out`: copying cannot fail.
    let _ = out.copy_from(&pic, 0, 0);
    let mut y = h + scale;
    for (swatch, label) in entries {
        swatch.draw(&mut out, scale, y, line);
        draw_text(
            &mut out,
            label,
            2 * line,
            y + scale,
            scale,
            Rgb([235, 235, 235]),
        );
        y += line;
    }
    if let Some(c) = caption {
        draw_text(&mut out, c, scale, y + scale, scale, Rgb([180, 180, 180]));
    }
    out
}

#[derive(Clone, Copy)]
enum Swatch {
    Mask,
    Box,
    Point,
}

impl Swatch {
    fn draw(self, img: &mut RgbImage, x0: u32, y0: u32, size: u32) {
        let s = size.saturating_sub(2).max(3);
        let (x0, y0) = (x0 + 1, y0 + 1);
        for dy in 0..s {
            for dx in 0..s {
                let edge = dx == 0 || dy == 0 || dx + 1 == s || dy + 1 == s;
                let mid = dx == s / 2 || dy == s / 2;
                let c = match self {
                    Swatch::Mask => Some(if edge { MASK_EDGE } else { MASK_FILL }),
                    Swatch::Box => edge.then_some(BOX),
                    Swatch::Point => mid.then_some(POINT),
                };
                if let Some(c) = c
                    && x0 + dx < img.width()
                    && y0 + dy < img.height()
                {
                    img.put_pixel(x0 + dx, y0 + dy, c);
                }
            }
        }
    }
}

/// Draws `text` with its top-left corner at `(x, y)`; characters without a glyph are skipped, pixels outside
/// the image are not drawn.
fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, colour: Rgb<u8>) {
    use font8x8::UnicodeFonts;
    let mut cx = x;
    for ch in text.chars() {
        if let Some(glyph) = font8x8::BASIC_FONTS.get(ch) {
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8u32 {
                    if bits & (1 << col) == 0 {
                        continue;
                    }
                    for sy in 0..scale {
                        for sx in 0..scale {
                            let (px, py) = (cx + col * scale + sx, y + row as u32 * scale + sy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, colour);
                            }
                        }
                    }
                }
            }
        }
        cx += 8 * scale;
        if cx >= img.width() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_strip_is_added_below_and_the_picture_kept() {
        let img = RgbImage::from_pixel(200, 100, Rgb([10, 20, 30]));
        let mut mask = GrayImage::new(200, 100);
        mask.put_pixel(50, 50, image::Luma([255]));
        let roi = Roi {
            x: 40,
            y: 40,
            width: 20,
            height: 20,
        };
        let plain = draw_overlay(&img, &mask, roi, Some((50.0, 50.0)));
        let with = draw_overlay_with_legend(
            &img,
            &mask,
            roi,
            Some((50.0, 50.0)),
            Some("box 40,40,60,60"),
        );
        assert_eq!(with.width(), 200);
        assert_eq!(with.height(), 100 + 4 * 10 + 2);
        for (x, y, p) in plain.enumerate_pixels() {
            assert_eq!(with.get_pixel(x, y), p);
        }
        // Text was drawn in the strip: some light pixels there.
        let light = (100..with.height())
            .flat_map(|y| (0..200).map(move |x| (x, y)))
            .filter(|&(x, y)| with.get_pixel(x, y)[0] > 200)
            .count();
        assert!(light > 50, "{light}");
        // Tiny images still get a (cut) legend, without panicking.
        let tiny = RgbImage::new(1, 1);
        let t = draw_overlay_with_legend(
            &tiny,
            &GrayImage::new(1, 1),
            Roi {
                x: 0,
                y: 0,
                width: 1,
                height: 1,
            },
            None,
            None,
        );
        assert_eq!(t.width(), 1);
    }
}
