//! Clean-up of the box path's chosen mask inside its box: hole filling and a closing.
//!
//! A colour cut follows colour edges, not objects: it leaves islands of background inside an object (painted
//! court lines, a dark deck) and ragged bays along its outline (shadowed wing roots, the water between a
//! harbour's piers). Annotated objects are simply connected and their outlines smooth at the scale of the
//! object, so the box path fills the islands ([`fill_holes`]) and closes the bays ([`close_in_box`]) with a
//! disk proportional to the box. Both were kept because they helped each half of the dev set's
//! cross-validation (`docs/quality.md`).

use image::GrayImage;
use imageproc::distance_transform::Norm;
use imageproc::morphology::close_mut;
use pslg_cfpg::{Connectivity, LabelMap, Roi, label_components};

/// Fills the holes of `mask` inside `roi`: every 4-connected run of background pixels in the box that does
/// not reach the box's border becomes foreground. Annotated objects are simply connected (a tennis court with
/// its painted lines, a ship with a dark deck), while a colour cut leaves islands of background inside them;
/// on the dev set filling them helped both halves of the cross-validation (`docs/quality.md`). Returns the
/// number of pixels filled.
pub fn fill_holes(mask: &mut GrayImage, roi: Roi) -> usize {
    let x1 = roi.x.saturating_add(roi.width).min(mask.width());
    let y1 = roi.y.saturating_add(roi.height).min(mask.height());
    let (x0, y0) = (roi.x.min(x1), roi.y.min(y1));
    let (w, h) = (x1 - x0, y1 - y0);
    if w < 3 || h < 3 {
        return 0;
    }
    // Background of the box as label 1, foreground 0; its components, then the ones touching the border.
    let background = LabelMap::from_fn(w, h, |x, y| {
        image::Luma([u32::from(mask.get_pixel(x0 + x, y0 + y)[0] == 0)])
    });
    let components = label_components(&background, Connectivity::Four);
    let count = components.as_raw().iter().copied().max().unwrap_or(0) as usize;
    let mut reaches_border = vec![false; count + 1];
    for (x, y, l) in components.enumerate_pixels() {
        if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
            reaches_border[l[0] as usize] = true;
        }
    }
    let mut filled = 0;
    for (x, y, l) in components.enumerate_pixels() {
        let l = l[0] as usize;
        if l != 0 && !reaches_border[l] {
            mask.put_pixel(x0 + x, y0 + y, image::Luma([255]));
            filled += 1;
        }
    }
    filled
}

/// The morphological closing (dilation, then erosion) of `mask` with a Euclidean disk of `radius` pixels,
/// written back inside `roi` only; pixels outside the box are read, never changed. Concavities and gaps
/// narrower than the disk inside the box become foreground; everything the mask held stays. The outside of
/// the image is neutral (it neither grows nor erodes the mask), as in OpenCV's `morphologyEx` with its default
/// border. Returns the number of pixels added.
///
/// The disk is imageproc's L2 distance ball: the pixels at Euclidean distance ≤ `radius` from the centre.
pub fn close_in_box(mask: &mut GrayImage, roi: Roi, radius: u8) -> usize {
    let x1 = roi.x.saturating_add(roi.width).min(mask.width());
    let y1 = roi.y.saturating_add(roi.height).min(mask.height());
    let (x0, y0) = (roi.x.min(x1), roi.y.min(y1));
    if radius == 0 || x0 == x1 || y0 == y1 {
        return 0;
    }
    // The box and a frame of radius + 1 pixels around it (within the image): enough for every disk centred
    // in the box, and the frame's own result is discarded.
    let pad = u32::from(radius) + 1;
    let (cx0, cy0) = (x0.saturating_sub(pad), y0.saturating_sub(pad));
    let cx1 = x1.saturating_add(pad).min(mask.width());
    let cy1 = y1.saturating_add(pad).min(mask.height());
    let mut crop = GrayImage::from_fn(cx1 - cx0, cy1 - cy0, |x, y| {
        *mask.get_pixel(cx0 + x, cy0 + y)
    });
    close_mut(&mut crop, Norm::L2, radius);
    let mut added = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            if crop.get_pixel(x - cx0, y - cy0)[0] != 0 && mask.get_pixel(x, y)[0] == 0 {
                mask.put_pixel(x, y, image::Luma([255]));
                added += 1;
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// A `w × h` mask with the rectangle `(x, y, rw, rh)` set.
    fn with_rect(w: u32, h: u32, x: u32, y: u32, rw: u32, rh: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |px, py| {
            let inside = (x..x + rw).contains(&px) && (y..y + rh).contains(&py);
            Luma([if inside { 255 } else { 0 }])
        })
    }

    fn roi_at(x: u32, y: u32, width: u32, height: u32) -> Roi {
        Roi {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn holes_inside_the_box_are_filled_and_bays_are_not() {
        // A ring with a 2×2 hole, and a notch open to the box's border; pixels outside the box untouched.
        let mut m = with_rect(12, 10, 1, 1, 8, 8);
        for (x, y) in [(4, 4), (5, 4), (4, 5), (5, 5)] {
            m.put_pixel(x, y, Luma([0])); // the hole
        }
        for y in 1..4 {
            m.put_pixel(7, y, Luma([0])); // the notch, open at the box's top row
        }
        let roi = roi_at(1, 1, 8, 8);
        let before = m.clone();
        assert_eq!(fill_holes(&mut m, roi), 4);
        assert_eq!(m.get_pixel(4, 4)[0], 255);
        assert_eq!(m.get_pixel(7, 2)[0], 0);
        assert_eq!(m.get_pixel(10, 9)[0], 0);
        let changed = m
            .pixels()
            .zip(before.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 4);
        // Degenerate boxes change nothing.
        let thin = roi_at(0, 0, 2, 10);
        assert_eq!(fill_holes(&mut m, thin), 0);
    }

    #[test]
    fn closing_fills_narrow_bays_inside_the_box_only() {
        // A 7×7 square with a 1-pixel-wide slot cut into it from its top edge, and a mask pixel outside the
        // box: the slot closes, the square's corners stay square, nothing outside the box changes.
        let mut m = with_rect(20, 20, 5, 5, 7, 7);
        for y in 5..9 {
            m.put_pixel(8, y, Luma([0]));
        }
        m.put_pixel(0, 0, Luma([255]));
        let roi = roi_at(5, 5, 7, 7);
        let before = m.clone();
        // The slot's top pixel is on the box's edge: the disk reaches outside the box, where the mask is empty,
        // so that pixel stays open, as a bay open to the outside does.
        assert_eq!(close_in_box(&mut m, roi, 2), 3);
        for y in 6..9 {
            assert_eq!(m.get_pixel(8, y)[0], 255, "slot row {y}");
        }
        assert_eq!(m.get_pixel(8, 5)[0], 0);
        let inside = |x: u32, y: u32| (5..12).contains(&x) && (5..12).contains(&y);
        let outside_changed = m
            .enumerate_pixels()
            .filter(|&(x, y, p)| !inside(x, y) && p != before.get_pixel(x, y))
            .count();
        assert_eq!(outside_changed, 0);
        // Radius 0 and empty boxes change nothing.
        assert_eq!(close_in_box(&mut m, roi, 0), 0);
        let empty = roi_at(25, 0, 3, 3);
        assert_eq!(close_in_box(&mut m, empty, 3), 0);
    }

    #[test]
    fn closing_at_the_image_border_does_not_erode() {
        // An object filling the box at the image's corner: the outside of the image is neutral.
        let mut m = with_rect(10, 10, 0, 0, 4, 4);
        let roi = roi_at(0, 0, 4, 4);
        let before = m.clone();
        assert_eq!(close_in_box(&mut m, roi, 3), 0);
        assert_eq!(m, before);
    }
}
