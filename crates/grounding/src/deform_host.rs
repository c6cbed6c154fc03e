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
//! is recorded ([`HostKernels::for_backend`]); every other case runs the tensor ops, which the unit tests
//! compare with this loop.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Queries per parallel task (each writes `heads · head_dim` outputs per query).
const QUERIES_PER_TASK: usize = 64;

/// Whether backend `B` runs LQVG's fused host kernels (the deformable sampling here, the feed-forward
/// network in `ffn_host.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKernels {
    /// The fused loops over the tensors' host buffers.
    Fused,
    /// Burn's tensor ops: any backend, and the only choice that keeps an autodiff graph.
    TensorOps,
}

impl HostKernels {
    /// [`HostKernels::Fused`] for exactly `burn_flex::Flex` (feature `flex`) and
    /// `burn_ndarray::NdArray<f32>` (feature `ndarray`) without autodiff, decided by type;
    /// [`HostKernels::TensorOps`] for every other backend.
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
pub(crate) fn host_values<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
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
    let locations = host_values(locations);
    let weights = host_values(weights);
    let grid = Grid::new(host_values(value), shapes, (n, s, m, d), p);
    let out = grid.run(n * lq, |gq, head, samples| {
        let first = (gq * m + head) * l * p;
        for (k, sample) in samples.iter_mut().enumerate() {
            let i = first + k;
            *sample = (locations[2 * i], locations[2 * i + 1], weights[i]);
        }
    });
    Tensor::from_data(TensorData::new(out, [n, lq, m * d]), &device)
}

/// The whole sampling step of `MSDeformAttn` after its three projections, fused: `value (N, S, M, D)`,
/// the raw `offsets (N, Lq, M·L·P·2)` and attention `logits (N, Lq, M·L·P)` of the queries, and their
/// `reference` points or boxes `(N, Lq, L, 2 | 4)` → `(N, Lq, M·D)`. Per query and head, the logits are
/// softmaxed over levels × points and each location is formed as in [`crate::MsDeformAttn::forward`]
/// (`reference + offset / (W, H)`, or `centre + offset / P · (w, h) · 0.5` for boxes), in the same `f32`
/// operation order; nothing of size `(N, Lq, M, L, P)` is materialised.
pub(crate) fn ms_deform_attn_host<B: Backend>(
    value: Tensor<B, 4>,
    offsets: Tensor<B, 3>,
    logits: Tensor<B, 3>,
    reference: Tensor<B, 4>,
    shapes: &[(usize, usize)],
    points: usize,
) -> Tensor<B, 3> {
    let device = value.device();
    let [n, s, m, d] = value.dims();
    let [_, lq, l, k] = reference.dims();
    let offsets = host_values(offsets);
    let logits = host_values(logits);
    let reference = host_values(reference);
    let p = points;
    let grid = Grid::new(host_values(value), shapes, (n, s, m, d), p);
    let out = grid.run(n * lq, |gq, head, samples| {
        let first = (gq * m + head) * l * p;
        let row = &logits[first..first + l * p];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (sample, &z) in samples.iter_mut().zip(row) {
            let e = (z - max).exp();
            sum += e;
            sample.2 = e;
        }
        for (level, &(h, w)) in shapes.iter().enumerate() {
            let r = &reference[(gq * l + level) * k..(gq * l + level + 1) * k];
            for point in 0..p {
                let j = level * p + point;
                let (ox, oy) = (offsets[2 * (first + j)], offsets[2 * (first + j) + 1]);
                let sample = &mut samples[j];
                sample.2 /= sum;
                (sample.0, sample.1) = if k == 4 {
                    (
                        r[0] + ox / p as f32 * r[2] * 0.5,
                        r[1] + oy / p as f32 * r[3] * 0.5,
                    )
                } else {
                    (r[0] + ox / w as f32, r[1] + oy / h as f32)
                };
            }
        }
    });
    Tensor::from_data(TensorData::new(out, [n, lq, m * d]), &device)
}

/// The values of every level of a batch, laid out `(N, S, M, D)`, and the geometry to sample them.
struct Grid<'a> {
    value: Vec<f32>,
    shapes: &'a [(usize, usize)],
    starts: Vec<usize>,
    /// Images.
    n: usize,
    /// Positions per image (all levels).
    s: usize,
    heads: usize,
    head_dim: usize,
    points: usize,
}

impl<'a> Grid<'a> {
    fn new(
        value: Vec<f32>,
        shapes: &'a [(usize, usize)],
        (n, s, heads, head_dim): (usize, usize, usize, usize),
        points: usize,
    ) -> Self {
        let mut starts = Vec::with_capacity(shapes.len());
        let mut start = 0;
        for &(h, w) in shapes {
            starts.push(start);
            start += h * w;
        }
        Self {
            value,
            shapes,
            starts,
            n,
            s,
            heads,
            head_dim,
            points,
        }
    }

    /// The output rows `(queries, M·D)` of `queries` global queries (over batch × query). For each query
    /// `gq` and head, `fill(gq, head, samples)` writes the `(x, y, attention)` of its `L · P` samples,
    /// level-major, `x`, `y` in `[0, 1]` of the level's map.
    fn run(
        &self,
        queries: usize,
        fill: impl Fn(usize, usize, &mut [(f32, f32, f32)]) + Sync,
    ) -> Vec<f32> {
        let (m, d, p) = (self.heads, self.head_dim, self.points);
        let row = m * d;
        let lq = queries / self.n.max(1);
        let mut out = vec![0.0f32; queries * row];
        out.par_chunks_mut(QUERIES_PER_TASK * row)
            .enumerate()
            .for_each(|(task, block)| {
                let mut samples = vec![(0.0, 0.0, 0.0); self.shapes.len() * p];
                for (i, out_q) in block.chunks_mut(row).enumerate() {
                    let gq = task * QUERIES_PER_TASK + i;
                    let b = gq / lq.max(1);
                    let batch_value = &self.value[b * self.s * row..(b + 1) * self.s * row];
                    for head in 0..m {
                        fill(gq, head, &mut samples);
                        let acc = &mut out_q[head * d..(head + 1) * d];
                        for (level, (&(h, w), &level_start)) in
                            self.shapes.iter().zip(&self.starts).enumerate()
                        {
                            for &(x, y, attention) in &samples[level * p..(level + 1) * p] {
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
        out
    }
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
    use crate::{
        HostKernels, MsDeformAttn, ReferencePoints, ms_deform_attn_core,
        ms_deform_attn_core_tensor_ops,
    };
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tensor};

    /// The fused loop against the tensor ops on `B`: two images, odd level sizes, locations reaching
    /// 0.3 outside the maps on every side (so corners fall off each edge).
    fn fused_matches_tensor_ops<B: Backend>() {
        let device = Default::default();
        assert_eq!(HostKernels::for_backend::<B>(&device), HostKernels::Fused);
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
        let worst = crate::test_util::max_abs_diff(&fused, &ops);
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

    /// The whole module, fused (softmax, locations, sampling in one loop) against the tensor ops, for
    /// reference points (encoder) and reference boxes (decoder with box refinement).
    #[test]
    fn fused_module_matches_tensor_ops_for_points_and_boxes() {
        type B = burn_flex::Flex;
        let device = Default::default();
        let shapes = [(6, 5), (3, 3)];
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let (n, lq, c, m, p) = (2, 9, 16, 4, 3);
        let attn = MsDeformAttn::<B>::new(c, shapes.len(), m, p, &device);
        let query = Tensor::<B, 3>::random([n, lq, c], Distribution::Normal(0.0, 1.0), &device);
        let input = Tensor::<B, 3>::random([n, s, c], Distribution::Normal(0.0, 1.0), &device);
        for k in [2, 4] {
            let r = Tensor::<B, 3>::random([n, lq, k], Distribution::Uniform(0.05, 0.95), &device)
                .reshape([n, lq, 1, k])
                .expand([n, lq, shapes.len(), k]);
            let reference = if k == 4 {
                ReferencePoints::Boxes(r)
            } else {
                ReferencePoints::Points(r)
            };
            let run = |sampling| {
                attn.forward_with(query.clone(), &reference, input.clone(), &shapes, sampling)
                    .into_data()
                    .to_vec::<f32>()
                    .expect("f32")
            };
            let fused = run(HostKernels::Fused);
            let ops = run(HostKernels::TensorOps);
            assert_eq!(fused.len(), n * lq * c);
            let worst = crate::test_util::max_abs_diff(&fused, &ops);
            assert!(worst < 1e-5, "k = {k}: fused vs tensor ops {worst}");
        }
    }

    #[test]
    fn autodiff_keeps_the_tensor_ops() {
        type Ad = burn::backend::Autodiff<burn_ndarray::NdArray<f32>>;
        assert_eq!(
            HostKernels::for_backend::<Ad>(&Default::default()),
            HostKernels::TensorOps
        );
    }
}
