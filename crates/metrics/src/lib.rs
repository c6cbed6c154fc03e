//! Metrics for referring segmentation and visual grounding, as the RRSIS evaluation code computes them.
//!
//! * [`mask_stats`] — intersection and union of one predicted mask with its ground truth.
//! * [`Accumulator`] — a streaming evaluation: feed one sample at a time (only its two counts are kept), read a
//!   [`Summary`] with mIoU (mean per-sample IoU), oIoU (ΣI / ΣU), Pr@0.5…0.9 (IoU ≥ X) and per-category mIoU.
//! * [`BoxXyxy`], [`box_iou`], [`generalized_box_iou`], [`iou_giou`], [`BoxMetrics`] — box metrics for
//!   grounding.
//!
//! Segmentation conventions follow RMSIN's `test.py`: a sample whose union is empty has IoU 0, and precision at
//! X counts the samples with IoU **≥** X ([`PrecisionRule::AtLeast`]). LQVG's grounding evaluation counts IoU
//! **>** 0.5 ([`PrecisionRule::Above`], used by [`BoxMetrics`]). Both rules are kept, each where its reference
//! uses it, so that the numbers compare with the papers' tables.
//!
//! # Examples
//! ```
//! use pslg_metrics::{mask_stats, Accumulator};
//! let gt = [true, true, false, false];
//! let pred = [true, false, false, false];
//! let stats = mask_stats(&pred, &gt).unwrap();
//! assert_eq!((stats.intersection, stats.union), (1, 2));
//! let mut acc = Accumulator::new();
//! acc.add(stats, Some("vehicle"));
//! let s = acc.summary();
//! assert_eq!(s.n, 1);
//! assert!((s.miou - 0.5).abs() < 1e-12);
//! ```
#![warn(missing_docs)]

mod boxes;

pub use boxes::{BoxMetrics, BoxXyxy, box_iou, generalized_box_iou, iou_giou};

use std::collections::BTreeMap;

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsError {
    /// The prediction and the ground truth do not hold the same number of pixels.
    #[error(
        "prediction has {pred} pixels but the ground truth has {gt}: resize the prediction to the ground-truth \
         size (width × height) before scoring"
    )]
    SizeMismatch {
        /// Pixels in the prediction.
        pred: usize,
        /// Pixels in the ground truth.
        gt: usize,
    },
}

/// How a Pr@X column counts a sample whose IoU is exactly X.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionRule {
    /// IoU ≥ X: RMSIN's `test.py` (the RRSIS segmentation tables, [`Accumulator`]).
    AtLeast,
    /// IoU > X: LQVG's / TransVG's grounding evaluation ([`BoxMetrics`]).
    Above,
}

impl PrecisionRule {
    /// Whether a sample of IoU `iou` counts at threshold `x`.
    ///
    /// ```
    /// use pslg_metrics::PrecisionRule;
    /// assert!(PrecisionRule::AtLeast.hit(0.5, 0.5));
    /// assert!(!PrecisionRule::Above.hit(0.5, 0.5));
    /// ```
    pub fn hit(self, iou: f64, x: f64) -> bool {
        match self {
            Self::AtLeast => iou >= x,
            Self::Above => iou > x,
        }
    }
}

/// The IoU thresholds of the Pr@X columns of RRSIS tables.
pub const PRECISION_THRESHOLDS: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// Intersection and union pixel counts of one prediction against its ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskStats {
    /// Pixels that are foreground in both masks.
    pub intersection: u64,
    /// Pixels that are foreground in at least one mask.
    pub union: u64,
}

impl MaskStats {
    /// IoU = I / U, and 0 when the union is empty (RMSIN convention).
    pub fn iou(&self) -> f64 {
        if self.union == 0 {
            0.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }
}

/// Counts intersection and union of two masks given as flat slices of foreground flags.
///
/// # Errors
/// [`MetricsError::SizeMismatch`] when the slices differ in length.
pub fn mask_stats(pred: &[bool], gt: &[bool]) -> Result<MaskStats, MetricsError> {
    mask_stats_by(pred, gt, |&p| p, |&g| g)
}

/// Like [`mask_stats`] for any pixel type: `is_pred` and `is_gt` say which pixels are foreground
/// (e.g. `|&v: &u8| v > 0` for 0/255 PNG masks).
///
/// # Errors
/// [`MetricsError::SizeMismatch`] when the slices differ in length.
pub fn mask_stats_by<P, G>(
    pred: &[P],
    gt: &[G],
    is_pred: impl Fn(&P) -> bool,
    is_gt: impl Fn(&G) -> bool,
) -> Result<MaskStats, MetricsError> {
    if pred.len() != gt.len() {
        return Err(MetricsError::SizeMismatch {
            pred: pred.len(),
            gt: gt.len(),
        });
    }
    let mut stats = MaskStats::default();
    for (p, g) in pred.iter().zip(gt) {
        let (p, g) = (is_pred(p), is_gt(g));
        stats.intersection += u64::from(p & g);
        stats.union += u64::from(p | g);
    }
    Ok(stats)
}

/// Running totals of one group of samples (the whole set or one category).
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    n: u64,
    iou_sum: f64,
    intersection: u64,
    union: u64,
    hits: [u64; PRECISION_THRESHOLDS.len()],
}

impl Totals {
    fn add(&mut self, stats: MaskStats) {
        let iou = stats.iou();
        self.n += 1;
        self.iou_sum += iou;
        self.intersection += stats.intersection;
        self.union += stats.union;
        for (hit, t) in self.hits.iter_mut().zip(PRECISION_THRESHOLDS) {
            *hit += u64::from(PrecisionRule::AtLeast.hit(iou, t));
        }
    }

    fn miou(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.iou_sum / self.n as f64
        }
    }
}

/// Streaming evaluation of referring segmentation: memory is constant in the number of samples
/// (plus one entry per category).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accumulator {
    all: Totals,
    per_category: BTreeMap<String, Totals>,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample, optionally tagged with its category (for per-category mIoU).
    pub fn add(&mut self, stats: MaskStats, category: Option<&str>) {
        self.all.add(stats);
        if let Some(c) = category {
            self.per_category
                .entry(c.to_owned())
                .or_default()
                .add(stats);
        }
    }

    /// Number of samples added so far.
    pub fn len(&self) -> u64 {
        self.all.n
    }

    /// Whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.all.n == 0
    }

    /// Metrics of the samples added so far (all zero when there are none).
    pub fn summary(&self) -> Summary {
        let all = &self.all;
        let n = all.n.max(1) as f64;
        let precision = PRECISION_THRESHOLDS
            .iter()
            .zip(all.hits)
            .map(|(&t, h)| (t, if all.n == 0 { 0.0 } else { h as f64 / n }))
            .collect();
        Summary {
            n: all.n,
            miou: all.miou(),
            oiou: if all.union == 0 {
                0.0
            } else {
                all.intersection as f64 / all.union as f64
            },
            precision,
            per_category: self
                .per_category
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        CategorySummary {
                            n: v.n,
                            miou: v.miou(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Per-category part of a [`Summary`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CategorySummary {
    /// Samples of this category.
    pub n: u64,
    /// Mean per-sample IoU of this category, in [0, 1].
    pub miou: f64,
}

/// Metrics of an evaluation, as fractions in [0, 1] (multiply by 100 for the tables).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: u64,
    /// Mean of per-sample IoU.
    pub miou: f64,
    /// Overall IoU: total intersection over total union.
    pub oiou: f64,
    /// `(X, fraction of samples with IoU ≥ X)` for X in [`PRECISION_THRESHOLDS`].
    pub precision: Vec<(f64, f64)>,
    /// mIoU per category, sorted by name.
    pub per_category: BTreeMap<String, CategorySummary>,
}

impl Summary {
    /// Precision at threshold `x` (one of [`PRECISION_THRESHOLDS`]), or `None` for another threshold.
    pub fn precision_at(&self, x: f64) -> Option<f64> {
        self.precision
            .iter()
            .find(|(t, _)| (t - x).abs() < 1e-9)
            .map(|&(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_union_is_zero_iou() {
        let s = mask_stats(&[false, false], &[false, false]).unwrap();
        assert_eq!(s.iou(), 0.0);
    }

    #[test]
    fn size_mismatch_is_an_error() {
        assert_eq!(
            mask_stats(&[true], &[true, false]),
            Err(MetricsError::SizeMismatch { pred: 1, gt: 2 })
        );
    }

    #[test]
    fn summary_matches_hand_computation() {
        let mut acc = Accumulator::new();
        // IoU 1.0, 0.5 (I=1, U=2), 0.0 (I=0, U=3), 0.75 (I=3, U=4)
        acc.add(
            MaskStats {
                intersection: 4,
                union: 4,
            },
            Some("a"),
        );
        acc.add(
            MaskStats {
                intersection: 1,
                union: 2,
            },
            Some("a"),
        );
        acc.add(
            MaskStats {
                intersection: 0,
                union: 3,
            },
            Some("b"),
        );
        acc.add(
            MaskStats {
                intersection: 3,
                union: 4,
            },
            None,
        );
        let s = acc.summary();
        assert_eq!(s.n, 4);
        assert!((s.miou - (1.0 + 0.5 + 0.0 + 0.75) / 4.0).abs() < 1e-12);
        assert!((s.oiou - 8.0 / 13.0).abs() < 1e-12);
        assert_eq!(s.precision_at(0.5), Some(0.75));
        assert_eq!(s.precision_at(0.6), Some(0.5));
        assert_eq!(s.precision_at(0.9), Some(0.25));
        assert_eq!(s.precision_at(0.55), None);
        assert_eq!(s.per_category["a"], CategorySummary { n: 2, miou: 0.75 });
        assert_eq!(s.per_category["b"], CategorySummary { n: 1, miou: 0.0 });
    }

    #[test]
    fn empty_accumulator_is_all_zero() {
        let s = Accumulator::new().summary();
        assert_eq!((s.n, s.miou, s.oiou), (0, 0.0, 0.0));
        assert!(s.precision.iter().all(|&(_, p)| p == 0.0));
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn iou_is_symmetric_and_bounded(bits in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..200)) {
                let (a, b): (Vec<bool>, Vec<bool>) = bits.into_iter().unzip();
                let ab = mask_stats(&a, &b).unwrap();
                let ba = mask_stats(&b, &a).unwrap();
                prop_assert_eq!(ab, ba);
                prop_assert!(ab.intersection <= ab.union);
                prop_assert!((0.0..=1.0).contains(&ab.iou()));
                let aa = mask_stats(&a, &a).unwrap();
                prop_assert_eq!(aa.iou(), if a.iter().any(|&x| x) { 1.0 } else { 0.0 });
            }
        }
    }
}
