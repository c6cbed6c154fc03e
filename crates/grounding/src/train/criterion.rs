//! The loss of one decoder layer (official `SetCriterion`): sigmoid focal loss, L1 and 1 − GIoU of the
//! matched boxes, each divided by the number of target boxes.

use super::{Target, TrainConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// The three loss terms of one decoder layer, each divided by the number of target boxes.
pub struct LayerLoss<B: Backend> {
    /// Sigmoid focal loss over every query and class.
    pub class: Tensor<B, 1>,
    /// L1 of the matched boxes.
    pub bbox: Tensor<B, 1>,
    /// 1 − GIoU of the matched boxes.
    pub giou: Tensor<B, 1>,
}

/// Loss of one decoder layer given the matches of every image.
pub fn layer_loss<B: Backend>(
    logits: Tensor<B, 3>,
    boxes: Tensor<B, 3>,
    targets: &[Target],
    matches: &[Vec<(usize, usize)>],
    cfg: &TrainConfig,
) -> LayerLoss<B> {
    let device = logits.device();
    let [n, q, c] = logits.dims();
    let num_boxes = (targets.iter().map(|t| t.boxes.len()).sum::<usize>()).max(1) as f64;
    let mut onehot = vec![0f32; n * q * c];
    let mut idx = Vec::new();
    let mut tgt = Vec::new();
    for (i, (m, t)) in matches.iter().zip(targets).enumerate() {
        for &(qi, ti) in m {
            let label = t.labels[ti].min(c - 1);
            onehot[(i * q + qi) * c + label] = 1.0;
            idx.push((i * q + qi) as i64);
            tgt.extend_from_slice(&t.boxes[ti]);
        }
    }
    let t = Tensor::<B, 3>::from_data(TensorData::new(onehot, [n, q, c]), &device);
    let (alpha, gamma) = (f64::from(cfg.focal_alpha), f64::from(cfg.focal_gamma));
    let p = sigmoid(logits.clone());
    // Binary cross-entropy with logits: max(x, 0) − x·t + log(1 + e^{−|x|}).
    let ce =
        relu(logits.clone()) - logits.clone() * t.clone() + (logits.abs().neg().exp() + 1.0).log();
    let p_t = p.clone() * t.clone() + (p.neg() + 1.0) * (t.clone().neg() + 1.0);
    let alpha_t = t.clone() * alpha + (t.neg() + 1.0) * (1.0 - alpha);
    let focal = ce * (p_t.neg() + 1.0).powf_scalar(gamma) * alpha_t;
    let class = focal.sum() / num_boxes;
    if idx.is_empty() {
        let zero = Tensor::<B, 1>::zeros([1], &device);
        return LayerLoss {
            class,
            bbox: zero.clone(),
            giou: zero,
        };
    }
    let m = idx.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [m]), &device);
    let src = boxes.reshape([n * q, 4]).select(0, idx);
    let tgt = Tensor::<B, 2>::from_data(TensorData::new(tgt, [m, 4]), &device);
    let bbox = (src.clone() - tgt.clone()).abs().sum() / num_boxes;
    let xyxy = |b: Tensor<B, 2>| {
        let cx = b.clone().narrow(1, 0, 1);
        let cy = b.clone().narrow(1, 1, 1);
        let w = b.clone().narrow(1, 2, 1);
        let h = b.narrow(1, 3, 1);
        (
            cx.clone() - w.clone() * 0.5,
            cy.clone() - h.clone() * 0.5,
            cx + w * 0.5,
            cy + h * 0.5,
        )
    };
    let (ax1, ay1, ax2, ay2) = xyxy(src);
    let (bx1, by1, bx2, by2) = xyxy(tgt);
    let area_a = (ax2.clone() - ax1.clone()) * (ay2.clone() - ay1.clone());
    let area_b = (bx2.clone() - bx1.clone()) * (by2.clone() - by1.clone());
    let iw = (ax2.clone().min_pair(bx2.clone()) - ax1.clone().max_pair(bx1.clone())).clamp_min(0.0);
    let ih = (ay2.clone().min_pair(by2.clone()) - ay1.clone().max_pair(by1.clone())).clamp_min(0.0);
    let inter = iw * ih;
    let union = area_a + area_b - inter.clone();
    let iou = inter / union.clone();
    let cw = ax2.max_pair(bx2) - ax1.min_pair(bx1);
    let ch = ay2.max_pair(by2) - ay1.min_pair(by1);
    let enclose = cw * ch;
    let giou = iou - (enclose.clone() - union) / enclose;
    let giou = (giou.neg() + 1.0).sum() / num_boxes;
    LayerLoss { class, bbox, giou }
}
