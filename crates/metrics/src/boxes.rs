//! Box metrics for grounding: IoU and generalised IoU of axis-aligned boxes.

use crate::PrecisionRule;

/// An axis-aligned box `[x1, y1, x2, y2]` in pixels (`x2`, `y2` exclusive for integer boxes).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BoxXyxy {
    /// Left edge.
    pub x1: f64,
    /// Top edge.
    pub y1: f64,
    /// Right edge.
    pub x2: f64,
    /// Bottom edge.
    pub y2: f64,
}

impl BoxXyxy {
    /// A box from its corners.
    pub fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// Area, 0 for an empty or inverted box.
    pub fn area(&self) -> f64 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    fn intersection(&self, other: &Self) -> f64 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        w * h
    }
}

/// IoU of two boxes; 0 when their union is empty.
///
/// # Examples
/// ```
/// use pslg_metrics::{box_iou, BoxXyxy};
/// let a = BoxXyxy::new(0.0, 0.0, 2.0, 2.0);
/// let b = BoxXyxy::new(1.0, 0.0, 3.0, 2.0);
/// assert!((box_iou(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
/// ```
pub fn box_iou(a: &BoxXyxy, b: &BoxXyxy) -> f64 {
    let inter = a.intersection(b);
    let union = a.area() + b.area() - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Generalised IoU (Rezatofighi et al., CVPR 2019): `IoU − (C − U) / C` with `C` the area of the smallest
/// enclosing box; in [−1, 1]. Returns 0 when the enclosing box is empty.
///
/// # Examples
/// ```
/// use pslg_metrics::{generalized_box_iou, BoxXyxy};
/// let a = BoxXyxy::new(0.0, 0.0, 1.0, 1.0);
/// let b = BoxXyxy::new(2.0, 0.0, 3.0, 1.0);
/// // IoU 0, union 2, enclosing box 3 → −1/3.
/// assert!((generalized_box_iou(&a, &b) + 1.0 / 3.0).abs() < 1e-12);
/// ```
pub fn generalized_box_iou(a: &BoxXyxy, b: &BoxXyxy) -> f64 {
    let inter = a.intersection(b);
    let union = a.area() + b.area() - inter;
    let hull = BoxXyxy::new(
        a.x1.min(b.x1),
        a.y1.min(b.y1),
        a.x2.max(b.x2),
        a.y2.max(b.y2),
    )
    .area();
    if hull <= 0.0 {
        return 0.0;
    }
    let iou = if union <= 0.0 { 0.0 } else { inter / union };
    iou - (hull - union) / hull
}

/// IoU and generalised IoU of two `xyxy` boxes in `f32`, as the LQVG matcher and loss compute them (GIoU:
/// Rezatofighi et al. 2019). An empty union gives IoU 0; an empty enclosing box leaves GIoU = IoU.
///
/// ```
/// let (iou, giou) = pslg_metrics::iou_giou([0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]);
/// assert!((iou - 1.0 / 3.0).abs() < 1e-6 && (giou - iou).abs() < 1e-6);
/// ```
pub fn iou_giou(a: [f32; 4], b: [f32; 4]) -> (f32, f32) {
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    let iou = if union > 0.0 { inter / union } else { 0.0 };
    let cw = a[2].max(b[2]) - a[0].min(b[0]);
    let ch = a[3].max(b[3]) - a[1].min(b[1]);
    let c = cw * ch;
    let giou = if c > 0.0 { iou - (c - union) / c } else { iou };
    (iou, giou)
}

/// Box metrics of a grounding evaluation as LQVG's official inference reports them: Pr@0.5 with
/// [`PrecisionRule::Above`] (IoU strictly above 0.5), mean IoU and cumulative IoU.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct BoxMetrics {
    /// Samples.
    pub n: usize,
    /// Fraction with IoU strictly above 0.5 ([`PrecisionRule::Above`]).
    pub pr_at_05: f64,
    /// Mean per-sample IoU.
    pub mean_iou: f64,
    /// Σ intersection / Σ union.
    pub cum_iou: f64,
}

impl BoxMetrics {
    /// Scores predicted against target boxes (`xyxy`, same units).
    pub fn compute(pairs: &[([f32; 4], [f32; 4])]) -> Self {
        let (mut hits, mut sum, mut inter, mut union) = (0usize, 0f64, 0f64, 0f64);
        for (p, t) in pairs {
            let (iou, _) = iou_giou(*p, *t);
            if PrecisionRule::Above.hit(f64::from(iou), 0.5) {
                hits += 1;
            }
            sum += f64::from(iou);
            let iw = (p[2].min(t[2]) - p[0].max(t[0])).max(0.0);
            let ih = (p[3].min(t[3]) - p[1].max(t[1])).max(0.0);
            let i = f64::from(iw * ih);
            let a = f64::from((p[2] - p[0]).max(0.0) * (p[3] - p[1]).max(0.0));
            let b = f64::from((t[2] - t[0]).max(0.0) * (t[3] - t[1]).max(0.0));
            inter += i;
            union += a + b - i;
        }
        let n = pairs.len();
        Self {
            n,
            pr_at_05: if n > 0 { hits as f64 / n as f64 } else { 0.0 },
            mean_iou: if n > 0 { sum / n as f64 } else { 0.0 },
            cum_iou: if union > 0.0 { inter / union } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identical_boxes() {
        let a = BoxXyxy::new(3.0, 4.0, 10.0, 8.0);
        assert_eq!(box_iou(&a, &a), 1.0);
        assert_eq!(generalized_box_iou(&a, &a), 1.0);
    }

    #[test]
    fn degenerate_boxes_do_not_divide_by_zero() {
        let a = BoxXyxy::new(1.0, 1.0, 1.0, 1.0);
        assert_eq!(box_iou(&a, &a), 0.0);
        assert_eq!(generalized_box_iou(&a, &a), 0.0);
    }

    fn arb_box() -> impl Strategy<Value = BoxXyxy> {
        (0.0..50.0f64, 0.0..50.0f64, 0.1..50.0f64, 0.1..50.0f64)
            .prop_map(|(x, y, w, h)| BoxXyxy::new(x, y, x + w, y + h))
    }

    proptest! {
        #[test]
        fn giou_is_bounded_by_iou(a in arb_box(), b in arb_box()) {
            let iou = box_iou(&a, &b);
            let giou = generalized_box_iou(&a, &b);
            prop_assert!((0.0..=1.0).contains(&iou));
            prop_assert!(giou <= iou + 1e-12 && giou >= -1.0 - 1e-12);
            prop_assert!((iou - box_iou(&b, &a)).abs() < 1e-12);
        }
    }
}
