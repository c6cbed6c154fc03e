//! The deformable sampling of [`crate::ms_deform_attn_core`] as one fused loop over host memory: the CPU
//! counterpart of Deformable DETR's CUDA kernel (`ms_deform_attn_im2col_bilinear`), with the semantics of
//! its PyTorch fallback (`grid_sample`, bilinear, zero padding, `align_corners = False`).
//!
//! As tensor ops, the sampling gathers `queries · heads · levels · points · 4` value rows of the head
//! width into a temporary before the weighted sum: at LQVG's 800² input that is 6.8 M rows of 32 values
//! (870 MB) per encoder layer, written once, read once, and freshly faulted in each time. Here each query's
//! output row accumulates its samples in place, so the only memory touched is the values, the locations,
//! the weights and the output.
//!
//! Used on the backends whose tensors are host memory (`flex`, `ndarray` with `f32`) when no autodiff graph
//! is recorded ([`HostSampling::for_backend`]); every other case runs the tensor ops, which the unit tests
//! compare with this loop.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Queries per parallel task (each writes `heads · head_dim` outputs per query).
const QUERIES_PER_TASK: usize = 64;

/// Whether backend `B` samples with the fused host loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSampling {
    /// The fused loop over the tensors' host buffers.
    Fused,
    /// Burn's tensor ops: any backend, and the only choice that keeps an autodiff graph.
    TensorOps,
}

impl HostSampling {
    /// [`HostSampling::Fused`] for exactly `burn_flex::Flex` (feature `flex`) and
    /// `burn_ndarray::NdArray<f32>` (feature `ndarray`) without autodiff, decided by type;
    /// [`HostSampling::TensorOps`] for every other backend.
    pub fn for_backend<B: Backend>(device: &B::Device) -> Self {
        use std::any::TypeId;
        let b = TypeId::of::<B>();
        let fused = !B::ad_enabled(device) && (is_flex(b) || is_ndarray(b));
        if fused { Self::Fused } else { Self::TensorOps }
    }
}

#[cfg(feature = "flex")]
fn is_flex(b: std::any::TypeId) -> bool {
    b == std::any::TypeId::of::<burn_flex::Flex>()
}
#[cfg(not(feature = "flex"))]
fn is_flex(_: std::any::TypeId) -> bool {
    false
}
#[cfg(feature = "ndarray")]
fn is_ndarray(b: std::any::TypeId) -> bool {
    b == std::any::TypeId::of::<burn_ndarray::NdArray<f32>>()
}
#[cfg(not(feature = "ndarray"))]
fn is_ndarray(_: std::any::TypeId) -> bool {
    false
}

/// The row-major `f32` values of `x` (the buffer itself when the backend hands it over).
fn values<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    let data = x.into_data().convert::<f32>();
    match data.as_slice::<f32>() {
        Ok(_) => data.into_vec::<f32>().unwrap_or_default(),
        Err(_) => data.iter::<f32>().collect(),
    }
}

/// The fused core: same arguments and result as [`crate::ms_deform_attn_core`].
pub(crate) fn ms_deform_attn_core_host<B: Backend>(
    value: Tensor<B, 4>,
    shapes: &[(usize, usize)],
    locations: Tensor<B, 6>,
    weights: Tensor<B, 5>,
) -> Tensor<B, 3> {
    let device = value.device();
    let [n, s, m, d] = value.dims();
    let [_, lq, _, l, p, _] = locations.dims();
    let value = values(value);
    let locations = values(locations);
    let weights = values(weights);
    let mut starts = Vec::with_capacity(shapes.len());
    let mut start = 0;
    for &(h, w) in shapes {
        starts.push(start);
        start += h * w;
    }
    let row = m * d;
    let mut out = vec![0.0f32; n * lq * row];
    out.par_chunks_mut(QUERIES_PER_TASK * row)
        .enumerate()
        .for_each(|(task, block)| {
            for (i, out_q) in block.chunks_mut(row).enumerate() {
                // Global query index over (batch, query).
                let gq = task * QUERIES_PER_TASK + i;
                let b = gq / lq;
                let batch_value = &value[b * s * row..(b + 1) * s * row];
                for head in 0..m {
                    let acc = &mut out_q[head * d..(head + 1) * d];
                    let first = (gq * m + head) * l * p;
                    for (level, (&(h, w), &level_start)) in shapes.iter().zip(&starts).enumerate() {
                        for point in 0..p {
                            let k = first + level * p + point;
                            let (x, y) = (locations[2 * k], locations[2 * k + 1]);
                            let attention = weights[k];
                            sample_bilinear(
                                batch_value,
                                (h, w, level_start),
                                (head, m, d),
                                (x * w as f32 - 0.5, y * h as f32 - 0.5),
                                attention,
                                acc,
                            );
                        }
                    }
                }
            }
        });
    Tensor::from_data(TensorData::new(out, [n, lq, row]), &device)
}

/// Adds `attention ×` the bilinear sample at pixel coordinates `(px, py)` of one level of one head to
/// `acc`: the four neighbours weighted `(1 − fx)(1 − fy)`, `fx (1 − fy)`, `(1 − fx) fy`, `fx fy`, those
/// outside the `h × w` map skipped (zero padding).
#[inline]
fn sample_bilinear(
    value: &[f32],
    (h, w, level_start): (usize, usize, usize),
    (head, heads, d): (usize, usize, usize),
    (px, py): (f32, f32),
    attention: f32,
    acc: &mut [f32],
) {
    let x0 = px.floor();
    let y0 = py.floor();
    let fx = px - x0;
    let fy = py - y0;
    // Non-finite or far-away locations contribute nothing (every corner is outside).
    if !(x0 >= -1.0 && y0 >= -1.0 && x0 < w as f32 && y0 < h as f32) {
        return;
    }
    let (x0, y0) = (x0 as i64, y0 as i64);
    for (dx, dy, wx, wy) in [
        (0, 0, 1.0 - fx, 1.0 - fy),
        (1, 0, fx, 1.0 - fy),
        (0, 1, 1.0 - fx, fy),
        (1, 1, fx, fy),
    ] {
        let (xi, yi) = (x0 + dx, y0 + dy);
        if xi < 0 || yi < 0 || xi >= w as i64 || yi >= h as i64 {
            continue;
        }
        let weight = wx * wy * attention;
        let pos = level_start + yi as usize * w + xi as usize;
        let src = &value[(pos * heads + head) * d..(pos * heads + head + 1) * d];
        for (a, &v) in acc.iter_mut().zip(src) {
            *a += weight * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{HostSampling, ms_deform_attn_core, ms_deform_attn_core_tensor_ops};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tensor};

    /// The fused loop against the tensor ops on `B`: two images, odd level sizes, locations reaching
    /// 0.3 outside the maps on every side (so corners fall off each edge).
    fn fused_matches_tensor_ops<B: Backend>() {
        let device = Default::default();
        assert_eq!(HostSampling::for_backend::<B>(&device), HostSampling::Fused);
        let shapes = [(9, 7), (5, 4), (3, 2)];
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let (n, lq, m, d, p) = (2, 70, 3, 5, 2);
        let value = Tensor::<B, 4>::random([n, s, m, d], Distribution::Normal(0.0, 1.0), &device);
        let loc = Tensor::<B, 6>::random(
            [n, lq, m, shapes.len(), p, 2],
            Distribution::Uniform(-0.3, 1.3),
            &device,
        );
        let w = Tensor::<B, 5>::random(
            [n, lq, m, shapes.len(), p],
            Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let fused = ms_deform_attn_core(value.clone(), &shapes, loc.clone(), w.clone());
        let ops = ms_deform_attn_core_tensor_ops(value, &shapes, loc, w);
        assert_eq!(fused.dims(), [n, lq, m * d]);
        let fused = fused.into_data().to_vec::<f32>().expect("f32");
        let ops = ops.into_data().to_vec::<f32>().expect("f32");
        let worst = fused
            .iter()
            .zip(&ops)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "fused vs tensor ops: {worst}");
        assert!(ops.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn fused_sampling_matches_tensor_ops_on_flex() {
        fused_matches_tensor_ops::<burn_flex::Flex>();
    }

    #[test]
    fn fused_sampling_matches_tensor_ops_on_ndarray() {
        fused_matches_tensor_ops::<burn_ndarray::NdArray<f32>>();
    }

    #[test]
    fn autodiff_keeps_the_tensor_ops() {
        type Ad = burn::backend::Autodiff<burn_ndarray::NdArray<f32>>;
        assert_eq!(
            HostSampling::for_backend::<Ad>(&Default::default()),
            HostSampling::TensorOps
        );
    }
}
