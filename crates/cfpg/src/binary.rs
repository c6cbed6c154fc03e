//! From clusters to a binary candidate-foreground map, and the morphological clean-up.

use image::GrayImage;
use imageproc::distance_transform::Norm;

/// Picks the candidate-foreground cluster of a k-means labelling over a `width × height` ROI.
///
/// The box prompt encloses the object, so the background is the colour that owns the ROI's border (its
/// corners in particular, for a tight box): the candidate foreground is the cluster owning the **fewest
/// border pixels**, relative to its size (ties go to the smaller cluster). With a single cluster (uniform
/// ROI) that cluster is returned.
///
/// # Panics
/// Never; an empty labelling returns 0.
pub fn foreground_cluster(labels: &[u8], width: u32, height: u32) -> u8 {
    let (w, h) = (width as usize, height as usize);
    let k = labels
        .iter()
        .copied()
        .max()
        .map_or(1, |m| usize::from(m) + 1);
    let mut size = vec![0usize; k];
    let mut border = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        size[usize::from(l)] += 1;
        let (x, y) = (i % w.max(1), i / w.max(1));
        if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
            border[usize::from(l)] += 1;
        }
    }
    (0..k)
        .filter(|&j| size[j] > 0)
        .min_by(|&a, &b| {
            let fa = border[a] as f64 / size[a] as f64;
            let fb = border[b] as f64 / size[b] as f64;
            fa.total_cmp(&fb).then(size[a].cmp(&size[b]))
        })
        .unwrap_or(0) as u8
}

/// The binary map `B = 1[label = j_fg]` as a 0/255 image.
pub fn binary_map(labels: &[u8], width: u32, height: u32, fg: u8) -> GrayImage {
    let data = labels
        .iter()
        .map(|&l| if l == fg { 255 } else { 0 })
        .collect();
    GrayImage::from_raw(width, height, data).unwrap_or_else(|| GrayImage::new(width, height))
}

/// Morphological opening then closing with square structuring elements of side `open_kernel` and
/// `close_kernel` (odd; 1 = identity). Opening removes specks and thin bridges between touching objects;
/// closing fills small holes. Uses imageproc's distance-transform-based morphology with the L∞ norm, which is
/// exact for square elements. Pixels outside the image count as background for both operations.
pub fn open_close(binary: &GrayImage, open_kernel: u8, close_kernel: u8) -> GrayImage {
    let mut out = binary.clone();
    if open_kernel > 1 {
        imageproc::morphology::open_mut(&mut out, Norm::LInf, open_kernel / 2);
    }
    if close_kernel > 1 {
        imageproc::morphology::close_mut(&mut out, Norm::LInf, close_kernel / 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_cluster_away_from_the_border() {
        // 5×5: a 3×3 block of label 1 in the middle, label 0 around it.
        let mut labels = vec![0u8; 25];
        for y in 1..4 {
            for x in 1..4 {
                labels[y * 5 + x] = 1;
            }
        }
        assert_eq!(foreground_cluster(&labels, 5, 5), 1);
        let swapped: Vec<u8> = labels.iter().map(|l| 1 - l).collect();
        assert_eq!(foreground_cluster(&swapped, 5, 5), 0);
    }

    #[test]
    fn opening_removes_specks_and_closing_fills_holes() {
        let mut img = GrayImage::new(9, 9);
        for y in 1..8 {
            for x in 1..8 {
                img.put_pixel(x, y, image::Luma([255]));
            }
        }
        img.put_pixel(4, 4, image::Luma([0])); // a hole
        let out = open_close(&img, 3, 3);
        assert_eq!(out.get_pixel(4, 4)[0], 255);
        let mut speck = GrayImage::new(9, 9);
        speck.put_pixel(4, 4, image::Luma([255]));
        assert!(open_close(&speck, 3, 1).pixels().all(|p| p[0] == 0));
    }
}
