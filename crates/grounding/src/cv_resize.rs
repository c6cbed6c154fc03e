//! OpenCV's `cv2.resize(img, size, interpolation=cv2.INTER_AREA)` on 8-bit RGB images, reproduced for the
//! official LQVG test preprocessing (`util/transforms.py::letterbox`).
//!
//! * Same size: a copy.
//! * Shrinking both axes by an integer factor ("area fast"): block means; factor 2 rounds as
//!   `(a + b + c + d + 2) >> 2` (OpenCV's vectorised path), other factors `round_half_even(sum / area)`.
//! * Shrinking both axes otherwise: OpenCV's `computeResizeAreaTab` weights (each destination pixel averages
//!   the source cells it covers, partial cells weighted by the covered fraction), accumulated in f32 rows in
//!   the same order, rounded half to even.
//! * Enlarging (at least one axis): OpenCV emulates "area" with bilinear weights
//!   `fx = (dx + 1) − (sx + 1) / scale` (fractional part, 0 when negative) in 11-bit fixed point, rows
//!   combined as OpenCV's vectorised 8-bit path does.
//!
//! The shrinking paths are bit-exact against OpenCV (tested against `cv2` output in `tests/letterbox.rs`).

use image::RgbImage;

/// Round half to even, then clamp to `u8` (OpenCV's `saturate_cast<uchar>(float)`).
fn saturate_u8(v: f32) -> u8 {
    let r = v.round_ties_even();
    r.clamp(0.0, 255.0) as u8
}

/// One contribution of a source index to a destination index.
#[derive(Debug, Clone, Copy)]
struct Alpha {
    di: usize,
    si: usize,
    alpha: f32,
}

/// OpenCV's `computeResizeAreaTab` (f64 geometry, f32 weights).
fn area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<Alpha> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(Alpha {
                di: dx,
                si: (sx1 - 1) as usize,
                alpha: ((sx1 as f64 - fsx1) / cell) as f32,
            });
        }
        for sx in sx1..sx2 {
            tab.push(Alpha {
                di: dx,
                si: sx as usize,
                alpha: (1.0 / cell) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(Alpha {
                di: dx,
                si: sx2 as usize,
                alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
            });
        }
    }
    tab
}

fn resize_area_generic(src: &RgbImage, dw: usize, dh: usize, sx: f64, sy: f64) -> RgbImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let xtab = area_tab(w, dw, sx);
    let ytab = area_tab(h, dh, sy);
    let raw = src.as_raw();
    let mut out = vec![0u8; dw * dh * 3];
    let mut buf = vec![0f32; dw * 3];
    let mut sum = vec![0f32; dw * 3];
    let mut prev_dy = ytab.first().map_or(0, |a| a.di);
    for y in &ytab {
        buf.iter_mut().for_each(|v| *v = 0.0);
        let row = &raw[y.si * w * 3..(y.si + 1) * w * 3];
        for x in &xtab {
            for c in 0..3 {
                buf[x.di * 3 + c] += f32::from(row[x.si * 3 + c]) * x.alpha;
            }
        }
        if y.di != prev_dy {
            let d = &mut out[prev_dy * dw * 3..(prev_dy + 1) * dw * 3];
            for i in 0..dw * 3 {
                d[i] = saturate_u8(sum[i]);
                sum[i] = y.alpha * buf[i];
            }
            prev_dy = y.di;
        } else {
            for i in 0..dw * 3 {
                sum[i] += y.alpha * buf[i];
            }
        }
    }
    let d = &mut out[prev_dy * dw * 3..(prev_dy + 1) * dw * 3];
    for i in 0..dw * 3 {
        d[i] = saturate_u8(sum[i]);
    }
    RgbImage::from_raw(dw as u32, dh as u32, out).unwrap_or_default()
}

fn resize_area_fast(src: &RgbImage, dw: usize, dh: usize, kx: usize, ky: usize) -> RgbImage {
    let w = src.width() as usize;
    let raw = src.as_raw();
    let area = (kx * ky) as f32;
    let scale = 1.0 / area;
    let mut out = vec![0u8; dw * dh * 3];
    for dy in 0..dh {
        for dx in 0..dw {
            for c in 0..3 {
                let mut s = 0u32;
                for yy in 0..ky {
                    for xx in 0..kx {
                        s += u32::from(raw[((dy * ky + yy) * w + dx * kx + xx) * 3 + c]);
                    }
                }
                out[(dy * dw + dx) * 3 + c] = if kx == 2 && ky == 2 {
                    ((s + 2) >> 2) as u8
                } else {
                    saturate_u8(s as f32 * scale)
                };
            }
        }
    }
    RgbImage::from_raw(dw as u32, dh as u32, out).unwrap_or_default()
}

/// Per destination index: source index and the two 11-bit fixed-point weights of OpenCV's area-mode
/// linear interpolation.
fn linear_area_coeffs(
    ssize: usize,
    dsize: usize,
    scale: f64,
    inv_scale: f64,
) -> Vec<(usize, usize, i32, i32)> {
    (0..dsize)
        .map(|d| {
            let mut sx = (d as f64 * scale).floor() as i64;
            let mut fx = ((d + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            if sx < 0 {
                fx = 0.0;
                sx = 0;
            }
            if sx >= ssize as i64 - 1 {
                fx = 0.0;
                sx = ssize as i64 - 1;
            }
            let sx = sx as usize;
            let sx1 = (sx + 1).min(ssize - 1);
            let a0 = ((1.0 - fx) * 2048.0).round_ties_even() as i32;
            let a1 = (fx * 2048.0).round_ties_even() as i32;
            (sx, sx1, a0, a1)
        })
        .collect()
}

fn resize_linear_area(src: &RgbImage, dw: usize, dh: usize, sx: f64, sy: f64) -> RgbImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let raw = src.as_raw();
    let xc = linear_area_coeffs(w, dw, sx, 1.0 / sx);
    let yc = linear_area_coeffs(h, dh, sy, 1.0 / sy);
    // Horizontal pass into 32-bit rows (scaled by 2048).
    let hrow = |y: usize| -> Vec<i32> {
        let row = &raw[y * w * 3..(y + 1) * w * 3];
        let mut out = Vec::with_capacity(dw * 3);
        for &(s0, s1, a0, a1) in &xc {
            for c in 0..3 {
                out.push(i32::from(row[s0 * 3 + c]) * a0 + i32::from(row[s1 * 3 + c]) * a1);
            }
        }
        out
    };
    let mut out = vec![0u8; dw * dh * 3];
    for (dy, &(s0, s1, b0, b1)) in yc.iter().enumerate() {
        let (r0, r1) = (hrow(s0), hrow(s1));
        for i in 0..dw * 3 {
            // OpenCV's 8-bit vertical pass: ((r0 >> 4) · b0 >> 16) + ((r1 >> 4) · b1 >> 16), then (+2) >> 2.
            let t = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16);
            out[(dy * dw + i / 3) * 3 + i % 3] = ((t + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    RgbImage::from_raw(dw as u32, dh as u32, out).unwrap_or_default()
}

/// `cv2.resize(src, (dw, dh), interpolation=cv2.INTER_AREA)` for an RGB image.
pub fn resize_inter_area(src: &RgbImage, dw: usize, dh: usize) -> RgbImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    if (w, h) == (dw, dh) || w == 0 || h == 0 || dw == 0 || dh == 0 {
        return if (w, h) == (dw, dh) {
            src.clone()
        } else {
            RgbImage::new(dw as u32, dh as u32)
        };
    }
    let inv_x = dw as f64 / w as f64;
    let inv_y = dh as f64 / h as f64;
    let sx = 1.0 / inv_x;
    let sy = 1.0 / inv_y;
    if sx >= 1.0 && sy >= 1.0 {
        let (ix, iy) = (sx.round() as usize, sy.round() as usize);
        let fast = (sx - ix as f64).abs() < f64::EPSILON && (sy - iy as f64).abs() < f64::EPSILON;
        if fast {
            return resize_area_fast(src, dw, dh, ix, iy);
        }
        return resize_area_generic(src, dw, dh, sx, sy);
    }
    resize_linear_area(src, dw, dh, sx, sy)
}
