//! Binary mask helpers shared by the stages and the workflows: a mask's tight box, and the paste of a crop's
//! mask back into the image frame, kept inside the box prompt.

use crate::{PixelBox, Roi};
use image::{GrayImage, Luma};

/// The tight box of a mask's foreground (nonzero pixels; `x2`/`y2` exclusive), `None` for an empty mask:
/// the ground-truth box prompt of an evaluation with ground-truth boxes, or of decoder fine-tuning.
///
/// # Examples
/// ```
/// use image::{GrayImage, Luma};
/// use pslg_core::{PixelBox, mask_box};
/// let mut m = GrayImage::new(8, 6);
/// m.put_pixel(2, 1, Luma([255]));
/// m.put_pixel(4, 3, Luma([255]));
/// assert_eq!(mask_box(&m), Some(PixelBox::new(2, 1, 5, 4)));
/// assert_eq!(mask_box(&GrayImage::new(3, 3)), None);
/// ```
pub fn mask_box(mask: &GrayImage) -> Option<PixelBox> {
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, v) in mask.enumerate_pixels() {
        if v[0] != 0 {
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
        }
    }
    (x2 > 0).then(|| PixelBox::new(x1.into(), y1.into(), x2.into(), y2.into()))
}

/// A `size` (w, h) mask (0/255) holding the nonzero pixels of `src`, whose pixel (0, 0) sits at `origin` in
/// the image, that fall inside `roi`, and their count. Only the box is visited: the cost does not grow with
/// the image.
///
/// `src` must cover `roi` (a crop taken around it, or a full-image mask with `origin = (0, 0)`) and `roi`
/// must lie inside `size`, as a [`crate::clamp_box`] result does.
///
/// # Panics
/// When `src` does not cover `roi` or `roi` is outside `size` (a caller's bug, not bad input).
pub fn paste_in_box(
    src: &GrayImage,
    origin: (u32, u32),
    roi: Roi,
    size: (u32, u32),
) -> (GrayImage, usize) {
    let mut mask = GrayImage::new(size.0, size.1);
    let mut kept = 0usize;
    for y in roi.y..roi.y + roi.height {
        for x in roi.x..roi.x + roi.width {
            if src.get_pixel(x - origin.0, y - origin.1)[0] != 0 {
                mask.put_pixel(x, y, Luma([255]));
                kept += 1;
            }
        }
    }
    (mask, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paste_keeps_only_the_box() {
        let src = GrayImage::from_pixel(6, 6, Luma([255]));
        let roi = Roi {
            x: 3,
            y: 2,
            width: 2,
            height: 3,
        };
        let (m, kept) = paste_in_box(&src, (1, 1), roi, (10, 8));
        assert_eq!(kept, 6);
        assert_eq!(m.dimensions(), (10, 8));
        assert_eq!(m.get_pixel(3, 2)[0], 255);
        assert_eq!(m.get_pixel(2, 2)[0], 0);
        assert_eq!(mask_box(&m), Some(PixelBox::new(3, 2, 5, 5)));
    }
}
