//! Which candidate mask stage 2 returns, and why: the tightness test of a box prompt.
//!
//! A box prompt is drawn tight around its object, so the object reaches every side of the box and crosses
//! almost every row and every column of it (the *tightness prior* of Lempitsky et al., "Image segmentation
//! with a bounding box prior", ICCV 2009). GrabCut's failure mode on a box is the opposite: the cut keeps one
//! part of the object (a fuselage without its wings, the sunlit half of a tank) or a patch of background and
//! drops the rest. [`Tightness::of`] measures the fraction of the box's rows and columns a candidate mask
//! crosses; the box path ([`crate::BoxSegmenter`]) returns the first MBO attempt whose smaller fraction is at
//! least `min_span`, and the box itself when none is.
//!
//! Tuned by cross-validation over the dev set's images (`docs/quality.md`): with the cleanup of the chosen
//! mask in place, both halves pick 0.8, which also keeps every category within reach of the box (a laxer
//! threshold passes bridge and harbour masks that keep only the deck or the piers).

use image::GrayImage;
use pslg_cfpg::Roi;

/// How much of a box a mask spans: the fractions of the box's rows and of its columns that hold at least one
/// foreground pixel of the mask, and the fraction of the box's pixels it keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tightness {
    /// Fraction of the box's rows with a foreground pixel inside the box, in [0, 1].
    pub rows: f64,
    /// Fraction of the box's columns with a foreground pixel inside the box, in [0, 1].
    pub columns: f64,
    /// Foreground pixels inside the box over the box's area, in [0, 1].
    pub kept: f64,
}

impl Tightness {
    /// Measures `mask` (nonzero = foreground, the image's size) inside `roi` (clamped to the mask).
    pub fn of(mask: &GrayImage, roi: Roi) -> Self {
        let x1 = roi.x.saturating_add(roi.width).min(mask.width());
        let y1 = roi.y.saturating_add(roi.height).min(mask.height());
        let (x0, y0) = (roi.x.min(x1), roi.y.min(y1));
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        if w == 0 || h == 0 {
            return Self {
                rows: 0.0,
                columns: 0.0,
                kept: 0.0,
            };
        }
        let stride = mask.width() as usize;
        let raw = mask.as_raw();
        let mut columns = vec![false; w];
        let (mut rows, mut kept) = (0usize, 0usize);
        for y in y0 as usize..y1 as usize {
            let row = &raw[y * stride + x0 as usize..y * stride + x1 as usize];
            let mut any = false;
            for (c, &v) in columns.iter_mut().zip(row) {
                if v != 0 {
                    *c = true;
                    any = true;
                    kept += 1;
                }
            }
            rows += usize::from(any);
        }
        let cols = columns.iter().filter(|&&c| c).count();
        Self {
            rows: rows as f64 / h as f64,
            columns: cols as f64 / w as f64,
            kept: kept as f64 / (w * h) as f64,
        }
    }

    /// The smaller of the row and column fractions: what the tightness test compares with `min_span`.
    pub fn span(&self) -> f64 {
        self.rows.min(self.columns)
    }
}

/// The candidate stage 2 returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Candidate {
    /// MBO attempt number `k` (0 = the first, with the configured γ; 1 = the retry with the retry γ).
    Mbo(usize),
    /// The box itself: no MBO attempt passed the tightness test.
    Box,
    /// SAM's mask (SAM path): MBO kept too little of it.
    SamMask,
}

/// One MBO attempt of the box path: its smoothness weight and how much of the box its mask spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// The smoothness weight γ it ran with.
    pub gamma: f64,
    /// Its mask's coverage of the box.
    pub tightness: Tightness,
}

/// What stage 2 returned and why: every MBO attempt with its measure, and the one chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The returned candidate.
    pub chosen: Candidate,
    /// The MBO attempts in the order they ran (empty without MBO).
    pub attempts: Vec<Attempt>,
    /// The threshold the attempts were held to: `min_span` for the box path (rows and columns), the kept
    /// fraction of SAM's mask for the SAM path.
    pub threshold: f64,
    /// Radius in pixels of the closing applied to the returned MBO mask ([`crate::cleanup::close_in_box`];
    /// 0: none, always so for the box and SAM's mask).
    pub closing_radius: u8,
}

impl Choice {
    /// A one-line reason for people, e.g. "MBO attempt 2 (γ 6 spans 0.92 of the box's rows and 0.88 of its
    /// columns; needed ≥ 0.80), closed with a disk of radius 4 px".
    pub fn reason(&self) -> String {
        let describe = |a: &Attempt| {
            format!(
                "γ {} spans {:.2} of the box's rows and {:.2} of its columns",
                a.gamma, a.tightness.rows, a.tightness.columns
            )
        };
        match self.chosen {
            Candidate::Mbo(k) => match self.attempts.get(k) {
                Some(a) => format!(
                    "MBO attempt {} ({}; needed ≥ {:.2}){}",
                    k + 1,
                    describe(a),
                    self.threshold,
                    match self.closing_radius {
                        0 => String::new(),
                        r => format!(", closed with a disk of radius {r} px"),
                    }
                ),
                None => format!("MBO attempt {}", k + 1),
            },
            Candidate::Box => {
                let tried: Vec<String> = self.attempts.iter().map(describe).collect();
                format!(
                    "the box itself: no MBO attempt spans ≥ {:.2} of the box's rows and columns ({})",
                    self.threshold,
                    tried.join("; ")
                )
            }
            Candidate::SamMask => {
                format!("SAM's mask: MBO kept less than {:.2} of it", self.threshold)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn tightness_counts_rows_columns_and_pixels_inside_the_box() {
        // A 10×8 image, box (2, 1) 6×5; an L-shaped mask inside it plus a pixel outside that must not count.
        let mut m = GrayImage::new(10, 8);
        for y in 1..6 {
            m.put_pixel(2, y, Luma([255])); // the left column, all 5 rows
        }
        for x in 2..5 {
            m.put_pixel(x, 5, Luma([255])); // the bottom row, 3 of 6 columns
        }
        m.put_pixel(9, 7, Luma([255]));
        let roi = Roi {
            x: 2,
            y: 1,
            width: 6,
            height: 5,
        };
        let t = Tightness::of(&m, roi);
        assert_eq!(t.rows, 1.0);
        assert_eq!(t.columns, 0.5);
        assert!((t.kept - 7.0 / 30.0).abs() < 1e-12);
        assert_eq!(t.span(), 0.5);
        // A box reaching past the mask is clamped; an empty one measures zero.
        let past = Tightness::of(
            &m,
            Roi {
                x: 8,
                y: 6,
                width: 10,
                height: 10,
            },
        );
        assert_eq!((past.rows, past.columns), (0.5, 0.5));
        let empty = Tightness::of(
            &m,
            Roi {
                x: 20,
                y: 0,
                width: 3,
                height: 3,
            },
        );
        assert_eq!(empty.span(), 0.0);
    }

    #[test]
    fn reasons_name_the_candidate_and_the_measure() {
        let a = Attempt {
            gamma: 15.0,
            tightness: Tightness {
                rows: 0.5,
                columns: 0.9,
                kept: 0.2,
            },
        };
        let b = Attempt {
            gamma: 6.0,
            tightness: Tightness {
                rows: 0.95,
                columns: 0.8,
                kept: 0.4,
            },
        };
        let chose = Choice {
            chosen: Candidate::Mbo(1),
            attempts: vec![a, b],
            threshold: 0.7,
            closing_radius: 4,
        };
        assert!(chose.reason().starts_with("MBO attempt 2 (γ 6 spans 0.95"));
        assert!(
            chose
                .reason()
                .ends_with("closed with a disk of radius 4 px")
        );
        let fell = Choice {
            chosen: Candidate::Box,
            ..chose
        };
        assert!(fell.reason().starts_with("the box itself"));
        assert!(fell.reason().contains("γ 15 spans 0.50"));
    }
}
