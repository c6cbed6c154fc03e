//! Pixel boxes, their conversions, and the region of interest: the box prompt clamped to the image (Eq. 4).
//!
//! [`PixelBox`] is the one box type of the workspace: whole pixels, `x2`/`y2` exclusive. Other forms convert
//! to it explicitly: continuous `[x1, y1, x2, y2]` pixel corners ([`PixelBox::covering`]), normalised
//! `cx, cy, w, h` as DETR-style models predict them ([`PixelBox::from_cxcywh_normalised`]); map coordinates
//! go through `pslg-geo`.

use crate::BoxError;
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

    /// Width `x2 − x1` (negative for an inverted box).
    pub fn width(&self) -> i64 {
        self.x2 - self.x1
    }

    /// Height `y2 − y1` (negative for an inverted box).
    pub fn height(&self) -> i64 {
        self.y2 - self.y1
    }

    /// The corners as continuous pixel coordinates `[x1, y1, x2, y2]` (what SAM's box prompt takes).
    pub fn to_xyxy_f32(&self) -> [f32; 4] {
        [
            self.x1 as f32,
            self.y1 as f32,
            self.x2 as f32,
            self.y2 as f32,
        ]
    }

    /// The smallest box of whole pixels covering the continuous corners `b = [x1, y1, x2, y2]` (any two
    /// opposite corners), clamped to a `width × height` image and at least one pixel wide and high where the
    /// image has pixels. Non-finite corners give the empty box `(0, 0, 0, 0)`, which [`clamp_box`] rejects.
    ///
    /// # Examples
    /// ```
    /// use pslg_core::PixelBox;
    /// assert_eq!(PixelBox::covering([10.2, 5.0, 20.7, 9.5], 100, 100), PixelBox::new(10, 5, 21, 10));
    /// assert_eq!(PixelBox::covering([-3.0, 0.0, 500.0, 1.0], 100, 100), PixelBox::new(0, 0, 100, 1));
    /// ```
    pub fn covering(b: [f32; 4], width: u32, height: u32) -> Self {
        if b.iter().any(|v| !v.is_finite()) {
            return Self::new(0, 0, 0, 0);
        }
        let clamp = |v: f32, hi: u32| f64::from(v).clamp(0.0, f64::from(hi));
        let x1 = clamp(b[0].min(b[2]), width).floor() as i64;
        let y1 = clamp(b[1].min(b[3]), height).floor() as i64;
        let x2 = clamp(b[0].max(b[2]), width).ceil() as i64;
        let y2 = clamp(b[1].max(b[3]), height).ceil() as i64;
        Self::new(
            x1,
            y1,
            x2.max(x1 + 1).min(i64::from(width)),
            y2.max(y1 + 1).min(i64::from(height)),
        )
    }

    /// A normalised `[cx, cy, w, h]` box (fractions of the image side, DETR's output form) as the whole
    /// pixels covering it in a `width × height` image ([`PixelBox::covering`] of its corners).
    ///
    /// # Examples
    /// ```
    /// use pslg_core::PixelBox;
    /// // Corners at x 37.5..62.5, y 87.5..112.5: the whole pixels covering them.
    /// assert_eq!(
    ///     PixelBox::from_cxcywh_normalised([0.5, 0.5, 0.25, 0.125], 100, 200),
    ///     PixelBox::new(37, 87, 63, 113)
    /// );
    /// ```
    pub fn from_cxcywh_normalised(b: [f32; 4], width: u32, height: u32) -> Self {
        let (w, h) = (width as f32, height as f32);
        let [cx, cy, bw, bh] = b;
        Self::covering(
            [
                (cx - bw / 2.0) * w,
                (cy - bh / 2.0) * h,
                (cx + bw / 2.0) * w,
                (cy + bh / 2.0) * h,
            ],
            width,
            height,
        )
    }
}

/// A box given as text that is not `x1,y1,x2,y2` with integer pixel coordinates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("box {0:?} is not x1,y1,x2,y2 with integer pixel coordinates (x2/y2 exclusive)")]
pub struct ParseBoxError(pub String);

impl std::str::FromStr for PixelBox {
    type Err = ParseBoxError;

    /// Parses `x1,y1,x2,y2` (integers, pixels, `x2`/`y2` exclusive; spaces allowed): a command-line box.
    ///
    /// ```
    /// use pslg_core::PixelBox;
    /// assert_eq!("1, 2,3,4".parse::<PixelBox>().unwrap(), PixelBox::new(1, 2, 3, 4));
    /// assert!("1.5,2,3,4".parse::<PixelBox>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self, ParseBoxError> {
        let bad = || ParseBoxError(text.to_owned());
        let v: Vec<i64> = text
            .split(',')
            .map(|s| s.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [x1, y1, x2, y2] = v[..] else {
            return Err(bad());
        };
        Ok(Self::new(x1, y1, x2, y2))
    }
}

impl From<Roi> for PixelBox {
    fn from(r: Roi) -> Self {
        Self::new(
            i64::from(r.x),
            i64::from(r.y),
            i64::from(r.x) + i64::from(r.width),
            i64::from(r.y) + i64::from(r.height),
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
/// * [`BoxError::EmptyImage`] when the image has no pixels.
/// * [`BoxError::DegenerateBox`] when the box is inverted or has zero width or height.
/// * [`BoxError::BoxOutsideImage`] when nothing of the box lies inside the image.
///
/// # Examples
/// ```
/// use pslg_core::{clamp_box, PixelBox, Roi};
/// let roi = clamp_box(PixelBox::new(-5, 2, 4, 20), 10, 10).unwrap();
/// assert_eq!(roi, Roi { x: 0, y: 2, width: 4, height: 8 });
/// ```
pub fn clamp_box(bbox: PixelBox, width: u32, height: u32) -> Result<Roi, BoxError> {
    if width == 0 || height == 0 {
        return Err(BoxError::EmptyImage { width, height });
    }
    if bbox.x2 <= bbox.x1 || bbox.y2 <= bbox.y1 {
        return Err(BoxError::DegenerateBox { bbox });
    }
    let x1 = bbox.x1.clamp(0, i64::from(width));
    let x2 = bbox.x2.clamp(0, i64::from(width));
    let y1 = bbox.y1.clamp(0, i64::from(height));
    let y2 = bbox.y2.clamp(0, i64::from(height));
    if x2 <= x1 || y2 <= y1 {
        return Err(BoxError::BoxOutsideImage {
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
pub fn crop_roi(image: &RgbImage, bbox: PixelBox) -> Result<(RgbImage, Roi), BoxError> {
    let roi = clamp_box(bbox, image.width(), image.height())?;
    let crop = image::imageops::crop_imm(image, roi.x, roi.y, roi.width, roi.height).to_image();
    Ok((crop, roi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_boxes() {
        assert_eq!(
            "-5,0,3,9".parse::<PixelBox>(),
            Ok(PixelBox::new(-5, 0, 3, 9))
        );
        for bad in ["1,2,3", "1,2,3,4,5", "a,b,c,d", "", "1.5,2,3,4"] {
            assert_eq!(
                bad.parse::<PixelBox>(),
                Err(ParseBoxError(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_bad_boxes() {
        assert!(matches!(
            clamp_box(PixelBox::new(5, 5, 5, 9), 10, 10),
            Err(BoxError::DegenerateBox { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(5, 5, 3, 9), 10, 10),
            Err(BoxError::DegenerateBox { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(10, 0, 20, 5), 10, 10),
            Err(BoxError::BoxOutsideImage { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(-9, -9, 0, 0), 10, 10),
            Err(BoxError::BoxOutsideImage { .. })
        ));
        assert!(matches!(
            clamp_box(PixelBox::new(0, 0, 1, 1), 0, 10),
            Err(BoxError::EmptyImage { .. })
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
