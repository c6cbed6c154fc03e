//! `ResizeLongestSide` of the official code: the target size, Pillow's bilinear resampling of uint8 images
//! (reproduced bit-exactly: Pillow's coefficients, 22-bit fixed point, horizontal pass then vertical), and
//! the coordinate transform of prompts.

use image::RgbImage;

/// Size `(height, width)` of an `h × w` image resized so its longer side is `target` (official
/// `get_preprocess_shape`: `int(side · target / max(h, w) + 0.5)`).
pub fn preprocess_shape(h: u32, w: u32, target: u32) -> (u32, u32) {
    let scale = f64::from(target) / f64::from(h.max(w));
    let nh = (f64::from(h) * scale + 0.5) as u32;
    let nw = (f64::from(w) * scale + 0.5) as u32;
    (nh, nw)
}

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` for the bilinear (triangle) filter over the whole input: per output
/// pixel the first input index, the tap count, and the fixed-point weights (`ksize` per pixel).
fn coeffs(in_size: u32, out_size: u32) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut kk = vec![0i32; out_size as usize * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let t = t.abs();
            *wx = if t < 1.0 { 1.0 - t } else { 0.0 };
            total += *wx;
        }
        for x in 0..ksize {
            let v = if x < n && total != 0.0 {
                w[x] / total
            } else {
                0.0
            };
            let f = v * f64::from(1u32 << PRECISION_BITS);
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    (bounds, kk, ksize)
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS) << 8 {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes an RGB image to `width × height` exactly like Pillow's `Image.resize(…, BILINEAR)` on an 8-bit
/// RGB image (which torchvision's `resize` calls for PIL images, as the official `ResizeLongestSide` does).
pub fn resize_bilinear_pil(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = image.dimensions();
    if (iw, ih) == (width, height) || width == 0 || height == 0 {
        return if width == 0 || height == 0 {
            RgbImage::new(width, height)
        } else {
            image.clone()
        };
    }
    let src = image.as_raw();
    let (vb, vk, vks) = coeffs(ih, height);
    // Rows of the input the vertical pass uses.
    let y_first = vb[0].0;
    let y_last = vb[height as usize - 1].0 + vb[height as usize - 1].1;
    let need_h = iw != width;
    let need_v = ih != height;
    // Horizontal pass into rows y_first..y_last (or the input rows themselves).
    let (tmp, tw, t_off) = if need_h {
        let (hb, hk, hks) = coeffs(iw, width);
        let rows = y_last - y_first;
        let mut t = vec![0u8; rows * width as usize * 3];
        for r in 0..rows {
            let row = &src[(r + y_first) * iw as usize * 3..][..iw as usize * 3];
            for (xx, &(xmin, n)) in hb.iter().enumerate() {
                let k = &hk[xx * hks..][..n];
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &row[(x + xmin) * 3..][..3];
                    for c in 0..3 {
                        ss[c] += i64::from(p[c]) * i64::from(kx);
                    }
                }
                let o = (r * width as usize + xx) * 3;
                for c in 0..3 {
                    t[o + c] = clip8(ss[c]);
                }
            }
        }
        (t, width as usize, y_first)
    } else {
        (src.to_vec(), iw as usize, 0)
    };
    if !need_v {
        // Only the horizontal pass: tmp holds all rows.
        return RgbImage::from_raw(width, height, tmp)
            .unwrap_or_else(|| RgbImage::new(width, height));
    }
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (yy, &(ymin, n)) in vb.iter().enumerate() {
        let k = &vk[yy * vks..][..n];
        for xx in 0..tw {
            let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
            for (y, &ky) in k.iter().enumerate() {
                let p = &tmp[((y + ymin - t_off) * tw + xx) * 3..][..3];
                for c in 0..3 {
                    ss[c] += i64::from(p[c]) * i64::from(ky);
                }
            }
            let o = (yy * tw + xx) * 3;
            for c in 0..3 {
                out[o + c] = clip8(ss[c]);
            }
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// The official `ResizeLongestSide.apply_image`: the image resized so that its longer side is `target`.
pub fn apply_image(image: &RgbImage, target: u32) -> RgbImage {
    let (nh, nw) = preprocess_shape(image.height(), image.width(), target);
    resize_bilinear_pil(image, nw, nh)
}

/// The official `apply_coords`: `(x, y)` in original-image pixels → the resized image's pixels.
pub fn apply_coords(xy: [f32; 2], original: (u32, u32), target: u32) -> [f32; 2] {
    let (h, w) = original;
    let (nh, nw) = preprocess_shape(h, w, target);
    // In f64 like the official numpy code (`astype(float)`), then to f32 like its `torch.as_tensor`.
    [
        (f64::from(xy[0]) * (f64::from(nw) / f64::from(w))) as f32,
        (f64::from(xy[1]) * (f64::from(nh) / f64::from(h))) as f32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_shape_rounds_like_the_official_code() {
        assert_eq!(preprocess_shape(480, 640, 1024), (768, 1024));
        assert_eq!(preprocess_shape(75, 100, 64), (48, 64));
        assert_eq!(preprocess_shape(1000, 1, 1024), (1024, 1));
    }

    #[test]
    fn identity_and_constant_images() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bilinear_pil(&img, 7, 5), img);
        let flat = RgbImage::from_pixel(33, 17, image::Rgb([200, 3, 77]));
        let r = resize_bilinear_pil(&flat, 10, 50);
        assert!(r.pixels().all(|p| p.0 == [200, 3, 77]));
    }
}
