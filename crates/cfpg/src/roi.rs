//! Region of interest: the box prompt clamped to the image (Eq. 4).

use crate::CfpgError;
use image::RgbImage;

/// A box in pixel coordinates as the case files and the CLI give it: `x2`, `y2` exclusive.
///
/// Coordinates are signed so that boxes partly or wholly outside the image can be represented and rejected
/// with a typed error instead of wrapping around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelBox {
    /// Left edge (inclusive).
    pub x1: i64,
    /// Top edge (inclusive).
    pub y1: i64,
    /// Right edge (exclusive).
    pub x2: i64,
    /// Bottom edge (exclusive).
    pub y2: i64,
}

impl PixelBox {
    /// A box from its corners (`x2`, `y2` exclusive).
    pub fn new(x1: i64, y1: i64, x2: i64, y2: i64) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// Centre `(x, y)` in continuous pixel coordinates (pixel `i` spans `[i, i + 1)`).
    pub fn centre(&self) -> (f64, f64) {
        (
            (self.x1 + self.x2) as f64 / 2.0,
            (self.y1 + self.y2) as f64 / 2.0,
        )
    }
}

/// The part of the image a box covers, after clamping: `x..x + width`, `y..y + height`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roi {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels (≥ 1).
    pub width: u32,
    /// Height in pixels (≥ 1).
    pub height: u32,
}

impl Roi {
    /// Number of pixels.
    pub fn area(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether image pixel `(x, y)` lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x - self.x < self.width && y - self.y < self.height
    }
}

/// Eq. (4): clamps `bbox` to an image of `width × height` pixels, giving the region of interest.
///
/// # Errors
/// * [`CfpgError::EmptyImage`] when the image has no pixels.
/// * [`CfpgError::DegenerateBox`] when the box is inverted or has zero width or height.
/// * [`CfpgError::BoxOutsideImage`] when nothing of the box lies inside the image.
///
/// # Examples
/// ```
/// use pslg_cfpg::{clamp_box, PixelBox, Roi};
/// let roi = clamp_box(PixelBox::new(-5, 2, 4, 20), 10, 10).unwrap();
/// assert_eq!(roi, Roi { x: 0, y: 2, width: 4, height: 8 });
/// ```
pub fn clamp_box(bbox: PixelBox, width: u32, height: u32) -> Result<Roi, CfpgError> {
    if width == 0 || height == 0 {
        return Err(CfpgError::EmptyImage { width, height });
    }
    if bbox.x2 <= bbox.x1 || bbox.y2 <= bbox.y1 {
        return Err(CfpgError::DegenerateBox { bbox });
    }
    let x1 = bbox.x1.clamp(0, i64::from(width));
    let x2 = bbox.x2.clamp(0, i64::from(width));
    let y1 = bbox.y1.clamp(0, i64::from(height));
    let y2 = bbox.y2.clamp(0, i64::from(height));
    if x2 <= x1 || y2 <= y1 {
        return Err(CfpgError::BoxOutsideImage {
            bbox,
            width,
            height,
        });
    }
    // Casts are lossless: all values were clamped into 0..=u32::MAX above.
    Ok(Roi {
        x: x1 as u32,
        y: y1 as u32,
        width: (x2 - x1) as u32,
        height: (y2 - y1) as u32,
    })
}

/// Eq. (4): the region of interest `I_roi = I[y1:y2, x1:x2]` of the box, clamped to the image.
///
/// # Errors
/// As [`clamp_box`].
pub fn crop_roi(image: &RgbImage, bbox: PixelBox) -> Result<(RgbImage, Roi), CfpgError> {
    let roi = clamp_box(bbox, image.width(), image.height())?;
    let crop = image::imageops::crop_imm(image, roi.x, roi.y, roi.width, roi.height).to_image();
    Ok((crop, roi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_boxes() {
        assert!(matches!(
            clamp_box(PixelBox::new(5, 5, 5, 9), 10, 10),
            Err(CfpgError::DegenerateBox { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(5, 5, 3, 9), 10, 10),
            Err(CfpgError::DegenerateBox { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(10, 0, 20, 5), 10, 10),
            Err(CfpgError::BoxOutsideImage { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(-9, -9, 0, 0), 10, 10),
            Err(CfpgError::BoxOutsideImage { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(0, 0, 1, 1), 0, 10),
            Err(CfpgError::EmptyImage { .. })
        ));
    }

    #[test]
    fn one_pixel_box() {
        let roi = clamp_box(PixelBox::new(3, 4, 4, 5), 10, 10).unwrap();
        assert_eq!(
            roi,
            Roi {
                x: 3,
                y: 4,
                width: 1,
                height: 1
            }
        );
        assert!(roi.contains(3, 4) && !roi.contains(4, 4));
    }

    #[test]
    fn huge_coordinates_do_not_overflow() {
        let roi = clamp_box(PixelBox::new(i64::MIN, i64::MIN, i64::MAX, i64::MAX), 7, 3).unwrap();
        assert_eq!(
            roi,
            Roi {
                x: 0,
                y: 0,
                width: 7,
                height: 3
            }
        );
    }
}
