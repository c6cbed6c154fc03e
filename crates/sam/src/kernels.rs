//! Fused CPU kernels for the encoder's hot spots, with the plain tensor-op composition as the fallback.
//!
//! On a backend whose tensors live in host memory (`flex`, `ndarray`), two steps of SAM's ViT are not
//! served well by a chain of Burn tensor ops:
//!
//! * attention with the decomposed relative-position bias: as tensor ops, the scores of all windows and
//!   heads are materialised, then two broadcast adds over them (`attn + rel_h[…, :, None] +
//!   rel_w[…, None, :]`) and a softmax made of five ops. On Burn 0.21's `flex` backend, one 4096 × 4096
//!   head took 150 ms for the adds and 35 ms for the softmax (`docs/performance.md`);
//!   [`attention_host`] computes each block of query rows of each head from scores to output in one task
//!   (faer matrix products, the bias and softmax in one pass over each row);
//! * GELU: the erf form (as `nn.GELU()` in the official code), evaluated by `libm::erff` one element at a
//!   time on one thread (112 ms for 4096 × 3072 on `flex`); [`gelu`] evaluates it with a vectorisable
//!   polynomial on all threads.
//!
//! * depthwise convolutions (MobileSAM's MBConv, patch merging and local convolutions): Burn's grouped
//!   convolution took 121 ms for 256 channels at 256² (`flex`); [`depthwise_conv`] runs each channel's
//!   k × k stencil as row-wise multiply-adds, one channel per task (~20× faster).
//!
//! Each kernel takes the tensor's buffer (moved, not copied, out of a uniquely owned `flex` tensor),
//! works on it with rayon, and hands it back. Any other backend (CUDA) runs the tensor ops, which the unit
//! tests compare with the fused kernels (`image_encoder.rs` for the attention).

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// Which implementation SAM uses for the steps that have fused host kernels: the encoder's attention with
/// the relative-position bias, GELU, and the mask post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPolicy {
    /// Fused kernels on the tensor's host buffer (`into_data`, rayon / faer, `from_data`).
    Host,
    /// Burn's tensor ops: any backend, and the only choice that keeps an autodiff graph.
    TensorOps,
}

impl KernelPolicy {
    /// The policy for backend `B` on `device`, decided by type, never by the backend's name:
    /// [`KernelPolicy::Host`] for exactly the backends whose tensors are plain host memory —
    /// `burn_flex::Flex` (feature `flex`) and `burn_ndarray::NdArray` with `f32` elements (feature
    /// `ndarray`) — and [`KernelPolicy::TensorOps`] for every other backend, including `Autodiff<…>` of
    /// those two: the host path goes through `into_data`, which would cut the graph.
    pub fn for_backend<B: Backend>(device: &B::Device) -> Self {
        use std::any::TypeId;
        if B::ad_enabled(device) {
            return Self::TensorOps;
        }
        let host: &[TypeId] = &[
            #[cfg(feature = "flex")]
            TypeId::of::<burn_flex::Flex>(),
            #[cfg(feature = "ndarray")]
            TypeId::of::<burn_ndarray::NdArray<f32>>(),
        ];
        if host.contains(&TypeId::of::<B>()) {
            Self::Host
        } else {
            Self::TensorOps
        }
    }
}

/// Whether the fused host kernels serve `B` ([`KernelPolicy::for_backend`]).
pub(crate) fn on_host<B: Backend>(device: &B::Device) -> bool {
    KernelPolicy::for_backend::<B>(device) == KernelPolicy::Host
}

/// The `f32` values of `x`, row-major: the buffer moved out of a uniquely owned host tensor, or, when its
/// bytes are not aligned for `f32`, read value by value.
pub(crate) fn host_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    let data = x.into_data().convert::<f32>();
    if data.as_slice::<f32>().is_err() {
        return data.iter::<f32>().collect();
    }
    // The dtype is f32 and the bytes cast (checked just above): `into_vec` takes the buffer.
    data.into_vec::<f32>().unwrap_or_default()
}

/// Runs `f` on the `f32` values of `x` (row-major) and returns them as a tensor of the same shape.
fn map_host<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(&mut [f32]),
) -> Tensor<B, D> {
    let device = x.device();
    let shape = x.dims();
    let mut data = x.into_data();
    if data.dtype != DType::F32 {
        data = data.convert::<f32>();
    }
    match data.as_mut_slice::<f32>() {
        Ok(values) => f(values),
        Err(_) => {
            // An unaligned buffer: work on a copy.
            let mut values: Vec<f32> = data.iter::<f32>().collect();
            f(&mut values);
            data = TensorData::new(values, shape);
        }
    }
    Tensor::from_data(data, &device)
}

/// `e^x` to ~1 ulp for `x` in `[-87.3, 88]` (clamped outside): Cody–Waite reduction `x = n·ln 2 + r` and
/// the Cephes degree-6 polynomial for `e^r`, written without branches or calls so that it vectorises.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.0);
    let k = x * LOG2_E + SHIFTER;
    let n = k - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let er = p * r * r + r + 1.0;
    // 2^n from the integer in k's mantissa (n + 127 stays in 1..=254 after the clamp, bar rounding).
    let n_int = k.to_bits().wrapping_sub(SHIFTER.to_bits()) as i32;
    let scale = f32::from_bits(((n_int + 127).clamp(1, 254) as u32) << 23);
    er * scale
}

/// `erf(x)` to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26) with the exponential above.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// GELU in the erf form, `x · (1 + erf(x / √2)) / 2`, elementwise. On the host it runs the fused kernel on
/// all threads; elsewhere Burn's `gelu`.
pub(crate) fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if !on_host::<B>(&x.device()) {
        return activation::gelu(x);
    }
    map_host(x, |v| v.par_chunks_mut(1 << 14).for_each(gelu_in_place))
}

/// GELU (erf form) of every value of `v`, in place, on this thread, vectorised for the best instruction
/// set the CPU has ([`simd`]).
pub(crate) fn gelu_in_place(v: &mut [f32]) {
    simd(|| {
        for e in v {
            *e = 0.5 * *e * (1.0 + erf(*e * std::f32::consts::FRAC_1_SQRT_2));
        }
    })
}

/// Runs `f` compiled for the widest vector instruction set this CPU has (AVX2 + FMA on x86-64 when present,
/// chosen at run time by `pulp`, faer's dispatcher). The workspace builds for baseline x86-64 (SSE2), so a
/// loop outside `simd` vectorises 4 wide at most; inside it, with everything it calls inlined, 8 wide.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Geometry of a square convolution (depthwise or not): `k × k` kernel, `stride`, zero padding `k / 2` on
/// every side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Depthwise {
    /// Kernel side (odd).
    pub k: usize,
    /// Stride.
    pub stride: usize,
}

impl Depthwise {
    /// Output side for an input side `n`: `(n + 2·(k/2) − k) / stride + 1`.
    pub fn out(self, n: usize) -> usize {
        (n + 2 * (self.k / 2) - self.k) / self.stride + 1
    }
}

/// A depthwise convolution of `x` `(B, C, H, W)` with `weight` `(C, 1, k, k)` and `bias` `(C)`: on the host
/// the row-wise kernel below, elsewhere Burn's grouped `conv2d`.
pub(crate) fn depthwise_conv<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    geo: Depthwise,
) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    if !on_host::<B>(&device) {
        let (s, p) = (geo.stride, geo.k / 2);
        return burn::tensor::module::conv2d(
            x,
            weight,
            Some(bias),
            burn::tensor::ops::ConvOptions::new([s, s], [p, p], [1, 1], c),
        );
    }
    let xs = host_f32(x);
    let ws = host_f32(weight);
    let bs = host_f32(bias);
    let (ho, wo) = (geo.out(h), geo.out(w));
    let out = depthwise_host(&xs, [b, c, h, w], &ws, &bs, geo);
    Tensor::from_data(TensorData::new(out, [b, c, ho, wo]), &device)
}

/// [`depthwise_conv`] on row-major host buffers: one output plane per task; each kernel tap adds
/// `w · x[row, ix…]` over the output columns whose input column is inside the image (stride-1 rows are
/// contiguous and vectorise).
pub(crate) fn depthwise_host(
    x: &[f32],
    [b, c, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    geo: Depthwise,
) -> Vec<f32> {
    let (k, s, p) = (geo.k, geo.stride, geo.k / 2);
    let (ho, wo) = (geo.out(h), geo.out(w));
    let mut out = vec![0f32; b * c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane, o)| {
            simd(|| {
                let ch = plane % c;
                let input = &x[plane * h * w..(plane + 1) * h * w];
                let taps = &weight[ch * k * k..(ch + 1) * k * k];
                o.fill(bias[ch]);
                for oy in 0..ho {
                    let row = &mut o[oy * wo..(oy + 1) * wo];
                    for ky in 0..k {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &input[iy as usize * w..(iy as usize + 1) * w];
                        for kx in 0..k {
                            let t = taps[ky * k + kx];
                            // Output columns ox with 0 ≤ ox·s + kx − p < w.
                            let lo = p.saturating_sub(kx).div_ceil(s);
                            let hi = ((w + p - kx).div_ceil(s)).min(wo);
                            if lo >= hi {
                                continue;
                            }
                            if s == 1 {
                                let start = lo + kx - p;
                                for (r, v) in
                                    row[lo..hi].iter_mut().zip(&src[start..start + hi - lo])
                                {
                                    *r += t * v;
                                }
                            } else {
                                for (ox, r) in row.iter_mut().enumerate().take(hi).skip(lo) {
                                    *r += t * src[ox * s + kx - p];
                                }
                            }
                        }
                    }
                }
            })
        });
    out
}

/// Largest value of a row, eight lanes at a time (vectorises, unlike a fold with `f32::max`).
#[inline(always)]
pub(crate) fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for l in lanes {
        m = m.max(l);
    }
    m
}

/// `e^(v − max)` in place; returns the sum (eight partial sums, for vectorisation).
#[inline(always)]
pub(crate) fn exp_sum(row: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for (s, v) in lanes.iter_mut().zip(c) {
            *v = exp(*v - max);
            *s += *v;
        }
    }
    let mut sum = 0.0;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum + lanes.iter().sum::<f32>()
}

/// Sizes of one [`attention_host`] call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionShape {
    /// Grids (windows, or 1 for global attention) × batch.
    pub grids: usize,
    /// Grid height and width in tokens.
    pub h: usize,
    /// Grid width.
    pub w: usize,
    /// Heads.
    pub heads: usize,
    /// Channels per head.
    pub head_dim: usize,
}

/// SAM's multi-head attention with the decomposed relative-position bias (official `Attention.forward`:
/// `softmax(scale · q·kᵀ + rel_h + rel_w) · v`), fused on the host: each task takes a block of query rows
/// of one grid, and for every head computes the scores (one matrix product), adds the bias, applies the
/// softmax and multiplies by the values straight into its rows of the output. No `N × N` matrix of all heads
/// is ever allocated (a task's scratch is `rows × N`), and no head is copied out of `qkv`.
///
/// The bias follows `get_rel_pos` / `add_decomposed_rel_pos`: for the query at grid position `(i, j)` and
/// the key at `(k_h, k_w)`, `q · Th[i − k_h + H − 1] + q · Tw[j − k_w + W − 1]` with the unscaled `q`; both
/// are read from the products `q · Thᵀ` and `q · Twᵀ` over the whole tables.
///
/// # Shapes
/// * `qkv`: `(G, H·W, 3, heads, hd)` row-major (the `qkv` linear's output).
/// * `table_h`: `(2H − 1, hd)`; `table_w`: `(2W − 1, hd)`.
/// * output: `(G, H·W, heads · hd)`.
pub(crate) fn attention_host(
    qkv: &[f32],
    shape: AttentionShape,
    table_h: &[f32],
    table_w: &[f32],
    scale: f32,
) -> Vec<f32> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let AttentionShape {
        grids,
        h,
        w,
        heads,
        head_dim: hd,
    } = shape;
    let n = h * w;
    let c = heads * hd;
    let (th_rows, tw_rows) = (2 * h - 1, 2 * w - 1);
    debug_assert_eq!(qkv.len(), grids * n * 3 * c);
    debug_assert_eq!(table_h.len(), th_rows * hd);
    debug_assert_eq!(table_w.len(), tw_rows * hd);
    // Query rows per task: whole grid rows, at most 256 queries (the 4096-token global grid gives 16 tasks
    // of 4 rows; a 14 × 14 window is one task).
    let grid_rows = (1..=h)
        .rev()
        .find(|k| h % k == 0 && k * w <= 256)
        .unwrap_or(1);
    let rows = grid_rows * w;
    let th = MatRef::from_row_major_slice(table_h, th_rows, hd);
    let tw = MatRef::from_row_major_slice(table_w, tw_rows, hd);
    let mut out = vec![0.0f32; grids * n * c];
    out.par_chunks_mut(rows * c)
        .enumerate()
        .for_each(|(task, out_rows)| {
            let tasks_per_grid = n / rows;
            let (g, r0) = (task / tasks_per_grid, (task % tasks_per_grid) * rows);
            let mut scores = vec![0.0f32; rows * n];
            let mut rel_h = vec![0.0f32; rows * th_rows];
            let mut rel_w = vec![0.0f32; rows * tw_rows];
            let mut bias_w = vec![0.0f32; w];
            let grid = &qkv[g * n * 3 * c..(g + 1) * n * 3 * c];
            // Row `t` of q / k / v for head `head` starts at `(t·3 + which)·C + head·hd`, rows 3·C apart.
            let part = |which: usize, head: usize, first: usize, count: usize| {
                let start = (first * 3 + which) * c + head * hd;
                MatRef::from_row_major_slice_with_stride(
                    &grid[start..start + (count - 1) * 3 * c + hd],
                    count,
                    hd,
                    3 * c,
                )
            };
            for head in 0..heads {
                let q = part(0, head, r0, rows);
                let k = part(1, head, 0, n);
                let v = part(2, head, 0, n);
                let mut s = MatMut::from_row_major_slice_mut(&mut scores, rows, n);
                matmul(
                    s.as_mut(),
                    Accum::Replace,
                    q,
                    k.transpose(),
                    scale,
                    Par::Seq,
                );
                matmul(
                    MatMut::from_row_major_slice_mut(&mut rel_h, rows, th_rows),
                    Accum::Replace,
                    q,
                    th.transpose(),
                    1.0,
                    Par::Seq,
                );
                matmul(
                    MatMut::from_row_major_slice_mut(&mut rel_w, rows, tw_rows),
                    Accum::Replace,
                    q,
                    tw.transpose(),
                    1.0,
                    Par::Seq,
                );
                simd(|| {
                    for (r, row) in scores.chunks_exact_mut(n).enumerate() {
                        let (i, j) = ((r0 + r) / w, (r0 + r) % w);
                        let rh = &rel_h[r * th_rows..(r + 1) * th_rows];
                        let rw = &rel_w[r * tw_rows..(r + 1) * tw_rows];
                        for (kw, b) in bias_w.iter_mut().enumerate() {
                            *b = rw[j + w - 1 - kw];
                        }
                        for (kh, seg) in row.chunks_exact_mut(w).enumerate() {
                            let bh = rh[i + h - 1 - kh];
                            for (x, &bw) in seg.iter_mut().zip(&bias_w) {
                                *x += bh + bw;
                            }
                        }
                        let max = row_max(row);
                        let inv = 1.0 / exp_sum(row, max);
                        for x in row.iter_mut() {
                            *x *= inv;
                        }
                    }
                });
                // The transpose of a column-major view: faer 0.24.4's `from_row_major_slice_with_stride_mut`
                // builds a column-major matrix (unit row stride), unlike its `MatRef` counterpart.
                let o = MatMut::from_column_major_slice_with_stride_mut(
                    &mut out_rows[head * hd..(rows - 1) * c + (head + 1) * hd],
                    hd,
                    rows,
                    c,
                )
                .transpose_mut();
                let p = MatRef::from_row_major_slice(&scores, rows, n);
                matmul(o, Accum::Replace, p, v, 1.0, Par::Seq);
            }
        });
    out
}

/// The decomposed relative-position bias and the softmax of SAM's attention as Burn tensor ops (any
/// backend): `softmax_k(scale · attn[b, q, k] + rel_h[b, q, k_h] + rel_w[b, q, k_w])`, key `k = k_h · W + k_w`.
///
/// # Shapes
/// * `attn`: `(M, H·W, H·W)` unscaled `q·kᵀ` logits.
/// * `rel_h`: `(M, H, W, H)` (query row, query column, key row); `rel_w`: `(M, H, W, W)`.
/// * output: `(M, H·W, H·W)` attention weights.
pub(crate) fn rel_pos_softmax_ops<B: Backend>(
    attn: Tensor<B, 3>,
    scale: f64,
    rel_h: Tensor<B, 4>,
    rel_w: Tensor<B, 4>,
) -> Tensor<B, 3> {
    let [m, h, w, _] = rel_h.dims();
    let n = h * w;
    let attn = (attn * scale).reshape([m, h, w, h, w])
        + rel_h.reshape([m, h, w, h, 1])
        + rel_w.reshape([m, h, w, 1, w]);
    activation::softmax(attn.reshape([m, n, n]), 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn host_kernels_serve_exactly_the_host_backends_never_autodiff() {
        use burn::backend::Autodiff;
        let d = Default::default();
        assert_eq!(KernelPolicy::for_backend::<B>(&d), KernelPolicy::Host);
        assert_eq!(
            KernelPolicy::for_backend::<burn_flex::Flex>(&Default::default()),
            KernelPolicy::Host
        );
        assert_eq!(
            KernelPolicy::for_backend::<Autodiff<B>>(&d),
            KernelPolicy::TensorOps
        );
        assert_eq!(
            KernelPolicy::for_backend::<Autodiff<burn_flex::Flex>>(&Default::default()),
            KernelPolicy::TensorOps
        );
    }

    #[test]
    fn gelu_keeps_the_autodiff_graph() {
        use burn::backend::Autodiff;
        type A = Autodiff<B>;
        let x = Tensor::<A, 1>::from_floats([-1.0, 0.0, 2.0], &Default::default()).require_grad();
        let grads = gelu(x.clone()).sum().backward();
        let g = x
            .grad(&grads)
            .expect("GELU on an autodiff backend must keep the graph")
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // d/dx x·Φ(x) at 0 is Φ(0) = 0.5.
        assert!((g[1] - 0.5).abs() < 1e-5, "{g:?}");
    }

    fn max_abs(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f32;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.336_54));
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn depthwise_kernel_matches_grouped_conv2d() {
        use burn::tensor::Distribution;
        use burn::tensor::module::conv2d;
        use burn::tensor::ops::ConvOptions;
        let device = Default::default();
        // Odd and even sides, strides 1 and 2, kernels 3 and 5.
        for (h, w, k, s) in [(7, 9, 3, 1), (8, 6, 3, 2), (5, 5, 5, 1), (9, 4, 5, 2)] {
            let (b, c) = (2, 3);
            let x = Tensor::<B, 4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let wt = Tensor::<B, 4>::random([c, 1, k, k], Distribution::Normal(0.0, 1.0), &device);
            let bias = Tensor::<B, 1>::random([c], Distribution::Normal(0.0, 1.0), &device);
            let want = conv2d(
                x.clone(),
                wt.clone(),
                Some(bias.clone()),
                ConvOptions::new([s, s], [k / 2, k / 2], [1, 1], c),
            );
            let v = |t: Tensor<B, 4>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
            let geo = Depthwise { k, stride: s };
            let wv: Vec<f32> = wt.clone().into_data().to_vec().unwrap();
            let bv: Vec<f32> = bias.clone().into_data().to_vec().unwrap();
            let got = depthwise_host(&v(x.clone()), [b, c, h, w], &wv, &bv, geo);
            assert_eq!(got.len(), want.dims().iter().product::<usize>());
            // The dispatching wrapper gives the same.
            assert_eq!(v(depthwise_conv(x, wt, bias, geo)), got);
            let want = v(want);
            let d = crate::test_util::max_abs_diff(&want, &got);
            assert!(d < 1e-5, "{h}x{w} k{k} s{s}: max difference {d}");
        }
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f32;
        for i in 0..=100_000 {
            let x = -6.0 + 12.0 * i as f32 / 100_000.0;
            let reference = libm_erf(x as f64) as f32;
            worst = worst.max((erf(x) - reference).abs());
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
    }

    /// erf in f64 by its Maclaurin series (|x| < 3) and the asymptotic expansion beyond: a reference
    /// independent of the A&S formula under test.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let mut term = a;
            let mut sum = a;
            for n in 1..200 {
                term *= -a * a / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) ≈ e^{−a²}/(a√π) · (1 − 1/(2a²) + 3/(4a⁴) − 15/(8a⁶))
            let z = 1.0 / (2.0 * a * a);
            let series = 1.0 - z + 3.0 * z * z - 15.0 * z * z * z;
            1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
        };
        v.copysign(x)
    }

    #[test]
    fn fused_gelu_matches_burn_gelu() {
        let device = Default::default();
        let x = Tensor::<B, 2>::random([37, 301], Distribution::Normal(0.0, 3.0), &device);
        let want: Vec<f32> = activation::gelu(x.clone())
            .into_data()
            .to_vec()
            .unwrap_or_default();
        let got: Vec<f32> = gelu(x).into_data().to_vec().unwrap_or_default();
        assert_eq!(want.len(), got.len());
        assert!(max_abs(&want, &got) < 2e-6, "{}", max_abs(&want, &got));
    }
}

#[cfg(test)]
mod attention_tests {
    use super::*;

    /// The official `Attention.forward` core, written out with loops.
    fn naive(qkv: &[f32], s: AttentionShape, th: &[f32], tw: &[f32], scale: f32) -> Vec<f32> {
        let (n, c, hd) = (s.h * s.w, s.heads * s.head_dim, s.head_dim);
        let at = |g: usize, t: usize, which: usize, head: usize, d: usize| {
            qkv[((g * n + t) * 3 + which) * c + head * hd + d]
        };
        let mut out = vec![0.0; s.grids * n * c];
        for g in 0..s.grids {
            for head in 0..s.heads {
                for qi in 0..n {
                    let (i, j) = (qi / s.w, qi % s.w);
                    let mut logits = vec![0.0f32; n];
                    for (kj, l) in logits.iter_mut().enumerate() {
                        let (kh, kw) = (kj / s.w, kj % s.w);
                        let mut dot = 0.0;
                        let mut bh = 0.0;
                        let mut bw = 0.0;
                        for d in 0..hd {
                            let q = at(g, qi, 0, head, d);
                            dot += q * at(g, kj, 1, head, d);
                            bh += q * th[(i + s.h - 1 - kh) * hd + d];
                            bw += q * tw[(j + s.w - 1 - kw) * hd + d];
                        }
                        *l = dot * scale + bh + bw;
                    }
                    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for d in 0..hd {
                        out[(g * n + qi) * c + head * hd + d] =
                            (0..n).map(|kj| e[kj] / z * at(g, kj, 2, head, d)).sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn host_attention_matches_loops() {
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // Several windows of 25 queries (rows not a multiple of the 8 lanes), a non-square grid, and a grid
        // of 1024 queries split into tasks of 256.
        for s in [
            AttentionShape {
                grids: 2,
                h: 5,
                w: 5,
                heads: 3,
                head_dim: 4,
            },
            AttentionShape {
                grids: 1,
                h: 3,
                w: 7,
                heads: 2,
                head_dim: 5,
            },
            AttentionShape {
                grids: 1,
                h: 32,
                w: 32,
                heads: 2,
                head_dim: 8,
            },
        ] {
            let (n, c) = (s.h * s.w, s.heads * s.head_dim);
            let qkv: Vec<f32> = (0..s.grids * n * 3 * c).map(|_| 2.0 * rnd()).collect();
            let th: Vec<f32> = (0..(2 * s.h - 1) * s.head_dim).map(|_| rnd()).collect();
            let tw: Vec<f32> = (0..(2 * s.w - 1) * s.head_dim).map(|_| rnd()).collect();
            let want = naive(&qkv, s, &th, &tw, 0.5);
            let got = attention_host(&qkv, s, &th, &tw, 0.5);
            let err = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "{s:?}: max error {err}");
        }
    }
}
