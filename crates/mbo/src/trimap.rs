//! The trimap: known background, probable background/foreground and hard foreground (GrabCut's T_B, T_U, T_F).

use image::GrayImage;
use imageproc::distance_transform::Norm;
use pslg_core::Roi;

/// Label of a trimap pixel (OpenCV's grabCut codes: 0 bg, 1 fg, 2 probably bg, 3 probably fg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TrimapLabel {
    /// Certainly background: fixed, not a graph node.
    Background = 0,
    /// Certainly foreground: fixed, not a graph node.
    Foreground = 1,
    /// Initially background, free to change.
    ProbablyBackground = 2,
    /// Initially foreground, free to change.
    ProbablyForeground = 3,
}

impl TrimapLabel {
    /// Whether the label counts as foreground in the initial labelling.
    pub fn is_foreground(self) -> bool {
        matches!(
            self,
            TrimapLabel::Foreground | TrimapLabel::ProbablyForeground
        )
    }

    /// Whether the pixel is fixed (not a graph node).
    pub fn is_hard(self) -> bool {
        matches!(self, TrimapLabel::Foreground | TrimapLabel::Background)
    }
}

/// Per-pixel constraints and initial labelling for [`MaskRefiner::refine`](crate::MaskRefiner::refine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trimap {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) labels: Vec<TrimapLabel>,
}

impl Trimap {
    /// Every pixel set to `label`.
    pub fn filled(width: u32, height: u32, label: TrimapLabel) -> Self {
        Self {
            width,
            height,
            labels: vec![label; width as usize * height as usize],
        }
    }

    /// GrabCut rectangle initialisation: outside `rect` certainly background, inside probably foreground.
    /// The part of `rect` outside the image is ignored.
    pub fn from_rect(width: u32, height: u32, rect: Roi) -> Self {
        let mut t = Self::filled(width, height, TrimapLabel::Background);
        for y in rect.y..rect.y.saturating_add(rect.height).min(height) {
            for x in rect.x..rect.x.saturating_add(rect.width).min(width) {
                t.labels[y as usize * width as usize + x as usize] =
                    TrimapLabel::ProbablyForeground;
            }
        }
        t
    }

    /// Initialisation from a mask (e.g. SAM's; nonzero = foreground), §3.3: the mask eroded by `erode_radius`
    /// is the confident interior ([`TrimapLabel::Foreground`] when `hard_interior`, otherwise probably
    /// foreground); pixels farther than `band_radius` outside the mask are certainly background; the band in
    /// between keeps the mask's label as a probable one. Radii are in pixels with a square (L∞) element.
    pub fn from_mask(
        mask: &GrayImage,
        erode_radius: u8,
        band_radius: u8,
        hard_interior: bool,
    ) -> Self {
        let interior = imageproc::morphology::erode(mask, Norm::LInf, erode_radius);
        let reach = imageproc::morphology::dilate(mask, Norm::LInf, band_radius);
        let labels = mask
            .pixels()
            .zip(interior.pixels())
            .zip(reach.pixels())
            .map(|((m, i), r)| match (m[0] != 0, i[0] != 0, r[0] != 0) {
                (_, true, _) if hard_interior => TrimapLabel::Foreground,
                (true, _, _) => TrimapLabel::ProbablyForeground,
                (false, _, true) => TrimapLabel::ProbablyBackground,
                (false, _, false) => TrimapLabel::Background,
            })
            .collect();
        Self {
            width: mask.width(),
            height: mask.height(),
            labels,
        }
    }

    /// Marks every pixel outside `rect` as certainly background (a box prompt's constraint on a mask
    /// initialisation). Parts of `rect` outside the trimap are ignored.
    pub fn set_background_outside(&mut self, rect: Roi) {
        let (x1, y1) = (
            rect.x.saturating_add(rect.width),
            rect.y.saturating_add(rect.height),
        );
        for y in 0..self.height {
            for x in 0..self.width {
                if x < rect.x || x >= x1 || y < rect.y || y >= y1 {
                    self.labels[y as usize * self.width as usize + x as usize] =
                        TrimapLabel::Background;
                }
            }
        }
    }

    /// Marks the pixels within `radius` (Euclidean, pixel centres) of `(cx, cy)` as certainly foreground — the
    /// CFPG point and its neighbourhood. Pixels outside the image are ignored.
    pub fn set_foreground_disk(&mut self, cx: f64, cy: f64, radius: f64) {
        let r = radius.max(0.5);
        let (x0, x1) = (
            (cx - r).floor().max(0.0) as u32,
            ((cx + r).ceil().max(0.0) as u32).min(self.width),
        );
        let (y0, y1) = (
            (cy - r).floor().max(0.0) as u32,
            ((cy + r).ceil().max(0.0) as u32).min(self.height),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.labels[y as usize * self.width as usize + x as usize] =
                        TrimapLabel::Foreground;
                }
            }
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major labels.
    pub fn labels(&self) -> &[TrimapLabel] {
        &self.labels
    }

    /// The initial labelling as a 0/255 mask.
    pub fn initial_mask(&self) -> GrayImage {
        let data = self
            .labels
            .iter()
            .map(|l| if l.is_foreground() { 255 } else { 0 })
            .collect();
        GrayImage::from_raw(self.width, self.height, data)
            .unwrap_or_else(|| GrayImage::new(self.width, self.height))
    }
}
