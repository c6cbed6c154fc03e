//! Box metrics for grounding: IoU and generalised IoU of axis-aligned boxes.

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
