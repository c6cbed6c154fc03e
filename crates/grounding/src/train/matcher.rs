//! Hungarian matching of queries to targets (official `models/matcher.py`): focal class cost, L1 and GIoU.

use super::{Target, TermWeights};
use pathfinding::prelude::{Matrix, kuhn_munkres_min};
use pslg_metrics::iou_giou;

/// `(cx, cy, w, h)` → `(x1, y1, x2, y2)`.
pub fn cxcywh_to_xyxy(b: [f32; 4]) -> [f32; 4] {
    [
        b[0] - 0.5 * b[2],
        b[1] - 0.5 * b[3],
        b[0] + 0.5 * b[2],
        b[1] + 0.5 * b[3],
    ]
}

/// Matches each target of one image to a distinct query minimising
/// `costs.class · focal_cost + costs.bbox · L1 + costs.giou · (−GIoU)` (the official matcher's cost; with one
/// target this is its minimum-cost query). `logits` `(Q, C)` and `boxes` `(Q, 4)` are row-major host values.
/// Returns `(query, target)` pairs.
pub fn match_queries(
    logits: &[f32],
    boxes: &[f32],
    classes: usize,
    target: &Target,
    costs: TermWeights,
    alpha: f32,
    gamma: f32,
) -> Vec<(usize, usize)> {
    let q = boxes.len() / 4;
    let t = target.boxes.len();
    if t == 0 || q == 0 {
        return Vec::new();
    }
    let mut cost = vec![vec![0f64; q]; t];
    for (ti, (tb, &label)) in target.boxes.iter().zip(&target.labels).enumerate() {
        for qi in 0..q {
            let p = 1.0 / (1.0 + (-logits[qi * classes + label.min(classes - 1)]).exp());
            let neg = (1.0 - alpha) * p.powf(gamma) * -((1.0 - p + 1e-8).ln());
            let pos = alpha * (1.0 - p).powf(gamma) * -((p + 1e-8).ln());
            let b = &boxes[qi * 4..qi * 4 + 4];
            let l1: f32 = (0..4).map(|k| (b[k] - tb[k]).abs()).sum();
            let (_, giou) = iou_giou(
                cxcywh_to_xyxy([b[0], b[1], b[2], b[3]]),
                cxcywh_to_xyxy(*tb),
            );
            cost[ti][qi] =
                f64::from(costs.class * (pos - neg) + costs.bbox * l1 - costs.giou * giou);
        }
    }
    if t > q {
        // More targets than queries: match the first `q` targets.
        cost.truncate(q);
    }
    // Kuhn–Munkres on integer costs (micro-units), rows = targets ≤ columns = queries.
    let rows = cost.len();
    let mut m = Matrix::new(rows, q, 0i64);
    for (r, row) in cost.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            m[(r, c)] = if v.is_finite() {
                (v * 1e6).round() as i64
            } else {
                i64::MAX / 4
            };
        }
    }
    let (_, assignment) = kuhn_munkres_min(&m);
    assignment
        .into_iter()
        .enumerate()
        .map(|(ti, qi)| (qi, ti))
        .collect()
}
