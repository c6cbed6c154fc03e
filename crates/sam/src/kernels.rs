//! Fused CPU kernels for the encoder's hot spots, with the plain tensor-op composition as the fallback.
//!
//! On a backend whose tensors live in host memory (`flex`, `ndarray`), two steps of SAM's ViT are not
//! served well by a chain of Burn tensor ops:
//!
//! * the decomposed relative-position bias (`attn + rel_h[…, :, None] + rel_w[…, None, :]`) followed by
//!   the softmax: two broadcast adds over the `N × N` score matrix, then a softmax made of five ops. On
//!   Burn 0.21's `flex` backend, one 4096 × 4096 head took 150 ms for the adds and 35 ms for the softmax
//!   (`docs/performance.md`); [`rel_pos_softmax`] does both in one pass over each row, in place;
//! * GELU: the erf form (as `nn.GELU()` in the official code), evaluated by `libm::erff` one element at a
//!   time on one thread (112 ms for 4096 × 3072 on `flex`); [`gelu`] evaluates it with a vectorisable
//!   polynomial on all threads.
//!
//! Each kernel takes the tensor's buffer (moved, not copied, out of a uniquely owned `flex` tensor),
//! works on it with rayon, and hands it back. Any other backend (CUDA) runs the tensor ops, which the unit
//! tests compare with the fused kernels.

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// Whether the fused host kernels serve `B`: its tensors are in host memory, so moving a buffer out and back
/// costs nothing (`flex`) or one copy (`ndarray`).
pub(crate) fn on_host<B: Backend>(device: &B::Device) -> bool {
    matches!(B::name(device).as_str(), "flex" | "ndarray")
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
    map_host(x, |v| {
        v.par_chunks_mut(1 << 14).for_each(|c| {
            for e in c {
                *e = 0.5 * *e * (1.0 + erf(*e * std::f32::consts::FRAC_1_SQRT_2));
            }
        })
    })
}

/// Largest value of a row, eight lanes at a time (vectorises, unlike a fold with `f32::max`).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
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
fn exp_sum(row: &mut [f32], max: f32) -> f32 {
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

/// The decomposed relative-position bias and the softmax of SAM's attention (official
/// `add_decomposed_rel_pos` followed by `attn.softmax(dim=-1)`):
/// `softmax_k(scale · attn[b, q, k] + rel_h[b, q, k_h] + rel_w[b, q, k_w])` with key `k = k_h · W + k_w`.
///
/// # Shapes
/// * `attn`: `(M, H·W, H·W)` unscaled `q·kᵀ` logits.
/// * `rel_h`: `(M, H, W, H)` (query row, query column, key row).
/// * `rel_w`: `(M, H, W, W)` (query row, query column, key column).
/// * output: `(M, H·W, H·W)` attention weights.
pub(crate) fn rel_pos_softmax<B: Backend>(
    attn: Tensor<B, 3>,
    scale: f64,
    rel_h: Tensor<B, 4>,
    rel_w: Tensor<B, 4>,
) -> Tensor<B, 3> {
    let [m, h, w, _] = rel_h.dims();
    let n = h * w;
    if !on_host::<B>(&attn.device()) {
        return rel_pos_softmax_ops(attn, scale, rel_h, rel_w);
    }
    let to_vec = |t: Tensor<B, 4>| -> Vec<f32> {
        let data = t.into_data().convert::<f32>();
        data.iter::<f32>().collect()
    };
    let (rh, rw) = (to_vec(rel_h), to_vec(rel_w));
    debug_assert_eq!(rh.len(), m * n * h);
    debug_assert_eq!(rw.len(), m * n * w);
    let scale = scale as f32;
    map_host(attn, |a| {
        a.par_chunks_mut(n)
            .zip(rh.par_chunks(h).zip(rw.par_chunks(w)))
            .for_each(|(row, (rh, rw))| {
                for (seg, &bias_h) in row.chunks_exact_mut(w).zip(rh) {
                    for (s, &bias_w) in seg.iter_mut().zip(rw) {
                        *s = *s * scale + (bias_h + bias_w);
                    }
                }
                let max = row_max(row);
                let inv = 1.0 / exp_sum(row, max);
                for v in row.iter_mut() {
                    *v *= inv;
                }
            })
    })
}

/// [`rel_pos_softmax`] as Burn tensor ops (any backend).
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

    #[test]
    fn fused_rel_pos_softmax_matches_tensor_ops() {
        let device = Default::default();
        // A grid that is not square, rows not a multiple of the 8 lanes.
        let (m, h, w) = (3, 5, 7);
        let n = h * w;
        let attn = Tensor::<B, 3>::random([m, n, n], Distribution::Normal(0.0, 4.0), &device);
        let rh = Tensor::<B, 4>::random([m, h, w, h], Distribution::Normal(0.0, 2.0), &device);
        let rw = Tensor::<B, 4>::random([m, h, w, w], Distribution::Normal(0.0, 2.0), &device);
        let want: Vec<f32> = rel_pos_softmax_ops(attn.clone(), 0.37, rh.clone(), rw.clone())
            .into_data()
            .to_vec()
            .unwrap_or_default();
        let got: Vec<f32> = rel_pos_softmax(attn, 0.37, rh, rw)
            .into_data()
            .to_vec()
            .unwrap_or_default();
        assert_eq!(want.len(), m * n * n);
        assert!(max_abs(&want, &got) < 1e-6, "{}", max_abs(&want, &got));
        for row in got.chunks(n) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
