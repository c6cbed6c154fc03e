//! Pictures for people: the image with the mask, the box and the CFPG point drawn on it.

use image::{GrayImage, Rgb, RgbImage};
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
