//! Exact Euclidean distance transform (Eq. 6).

use image::{GrayImage, ImageBuffer, Luma};

/// A single-channel `f32` map (distances).
pub type FloatMap = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Eq. (6): `D(p) = min_{q ∉ F} ‖p − q‖₂` for every foreground pixel `p` (nonzero in `binary`), 0 elsewhere.
///
/// Exact: uses imageproc's implementation of Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
/// Functions" (2012), linear in the number of pixels. Pixels **outside the image count as background**, so a
/// region touching the ROI border gets small distances there: the ROI is the box, and the object's interior
/// lies away from the box edges.
///
/// # Examples
/// ```
/// use image::{GrayImage, Luma};
/// use pslg_cfpg::euclidean_distance_transform;
/// let img = GrayImage::from_pixel(5, 5, Luma([255]));
/// let d = euclidean_distance_transform(&img);
/// let middle_row: Vec<f32> = (0..5).map(|x| d.get_pixel(x, 2)[0]).collect();
/// assert_eq!(middle_row, vec![1.0, 2.0, 3.0, 2.0, 1.0]);
/// ```
pub fn euclidean_distance_transform(binary: &GrayImage) -> FloatMap {
    let (w, h) = binary.dimensions();
    // Background (the "sites" of the transform) = 255 in a map padded by one background pixel on each side.
    let mut sites = GrayImage::from_pixel(w + 2, h + 2, Luma([255]));
    for (x, y, p) in binary.enumerate_pixels() {
        if p[0] != 0 {
            sites.put_pixel(x + 1, y + 1, Luma([0]));
        }
    }
    let d2 = imageproc::distance_transform::euclidean_squared_distance_transform(&sites);
    FloatMap::from_fn(w, h, |x, y| {
        Luma([d2.get_pixel(x + 1, y + 1)[0].sqrt() as f32])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: the distance to every background pixel, including the one-pixel frame around the image.
    fn edt_reference(binary: &GrayImage) -> Vec<f32> {
        let (w, h) = (binary.width() as i64, binary.height() as i64);
        let is_bg = |x: i64, y: i64| {
            x < 0 || y < 0 || x >= w || y >= h || binary.get_pixel(x as u32, y as u32)[0] == 0
        };
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                if is_bg(x, y) {
                    out.push(0.0);
                    continue;
                }
                let mut best = f64::INFINITY;
                for qy in -1..=h {
                    for qx in -1..=w {
                        if is_bg(qx, qy) {
                            best = best.min((((qx - x).pow(2) + (qy - y).pow(2)) as f64).sqrt());
                        }
                    }
                }
                out.push(best as f32);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn matches_brute_force(w in 1u32..14, h in 1u32..14, bits in proptest::collection::vec(any::<bool>(), 196)) {
            let img = GrayImage::from_fn(w, h, |x, y| Luma([if bits[(y * 14 + x) as usize] { 255 } else { 0 }]));
            let fast = euclidean_distance_transform(&img);
            let slow = edt_reference(&img);
            for (a, b) in fast.as_raw().iter().zip(&slow) {
                prop_assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }
}
