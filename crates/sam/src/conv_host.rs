//! Convolutions on channels-last tokens `(B, H, W, C)` on the host: SAM's neck (official `neck`: 1×1 conv,
//! `LayerNorm2d`, 3×3 conv, `LayerNorm2d`) and MobileSAM's patch embedding.
//!
//! Both encoders end with tokens `(B, H, W, C)`. Through Burn's ops, the neck first makes a
//! `(B, C, H, W)` copy, convolves through `flex`'s im2col, and normalises over channels with five
//! broadcast ops. Here the convolutions are products on the tokens themselves: a 1×1 convolution is one
//! `(pixels, C_in) · (C_in, C_out)` product; a `k × k` one gathers the `k²` neighbours of a few hundred
//! output pixels at a time (each neighbour's channels are contiguous) and multiplies the gathered block by
//! the weight laid out `(k² · C_in) × C_out`. The norm runs over each pixel's contiguous channels.

use crate::kernels::{Depthwise, gelu_in_place, simd};
use crate::linear_host::Activation;
use crate::tiny_vit_host::Grid;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Output pixels per task: the gathered block (`PIXELS × k² · C_in`, 2.4 MB at 3×3 × 256) stays in cache.
const PIXELS: usize = 256;

/// A `k × k` convolution with stride `stride` and zero padding `k / 2` from tokens `x` on `grid` to
/// `(B, H', W', C_out)`, then `act`. `weight` is `(C_out, C_in, k, k)` as PyTorch stores it; `bias` is
/// `(C_out)` or absent. Returns the output and its grid.
pub(crate) fn conv_tokens(
    x: &[f32],
    grid: Grid,
    weight: &[f32],
    geo: Depthwise,
    bias: Option<&[f32]>,
    act: Activation,
) -> (Vec<f32>, Grid) {
    let Grid { b, h, w, c } = grid;
    let Depthwise { k, stride: s } = geo;
    let taps = k * k;
    let o = weight.len() / (c * taps);
    debug_assert_eq!(x.len(), b * h * w * c);
    debug_assert_eq!(weight.len(), o * c * taps);
    let p = k / 2;
    let out_grid = grid.convolved(geo, o);
    let (ho, wo) = (out_grid.h, out_grid.w);
    // Rows ordered (tap, input channel) like the gathered neighbours.
    let wm = tap_major(weight, c, taps);
    let wm = MatRef::from_row_major_slice(&wm, taps * c, o);
    let mut out = vec![0.0f32; b * ho * wo * o];
    if out.is_empty() {
        return (out, out_grid);
    }
    out.par_chunks_mut(PIXELS * o)
        .enumerate()
        .for_each_init(Vec::new, |gathered, (block, dst)| {
            let first = block * PIXELS;
            let pixels = dst.len() / o;
            if let Some(bias) = bias {
                for row in dst.chunks_exact_mut(o) {
                    row.copy_from_slice(bias);
                }
            }
            let lhs = if k == 1 && s == 1 {
                MatRef::from_row_major_slice(&x[first * c..(first + pixels) * c], pixels, c)
            } else {
                gathered.clear();
                gathered.resize(pixels * taps * c, 0.0);
                for (i, row) in gathered.chunks_exact_mut(taps * c).enumerate() {
                    let q = first + i;
                    let (bi, oy, ox) = (q / (ho * wo), (q / wo) % ho, q % wo);
                    for ky in 0..k {
                        let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                            continue;
                        };
                        for kx in 0..k {
                            let Some(ix) = (ox * s + kx).checked_sub(p).filter(|&ix| ix < w) else {
                                continue;
                            };
                            let src = ((bi * h + iy) * w + ix) * c;
                            row[(ky * k + kx) * c..][..c].copy_from_slice(&x[src..src + c]);
                        }
                    }
                }
                MatRef::from_row_major_slice(gathered, pixels, taps * c)
            };
            let accum = if bias.is_some() {
                Accum::Add
            } else {
                Accum::Replace
            };
            matmul(
                MatMut::from_row_major_slice_mut(dst, pixels, o),
                accum,
                lhs,
                wm,
                1.0,
                Par::Seq,
            );
            if act == Activation::Gelu {
                gelu_in_place(dst);
            }
        });
    (out, out_grid)
}

/// A PyTorch convolution kernel `(C_out, C_in, k, k)` (`taps` = k²) laid out as the row-major
/// `(k² · C_in) × C_out` matrix, rows ordered (tap, input channel): row `t · C_in + ci` holds every output
/// channel's weight for input channel `ci` at tap `t`. A depthwise kernel `(C, 1, k, k)` (`c_in` 1) becomes
/// `(k², C)`: each tap's channel weights contiguous.
pub(crate) fn tap_major(weight: &[f32], c_in: usize, taps: usize) -> Vec<f32> {
    let o = weight.len() / (c_in * taps).max(1);
    let mut out = vec![0.0f32; taps * c_in * o];
    for oc in 0..o {
        for ci in 0..c_in {
            for t in 0..taps {
                out[(t * c_in + ci) * o + oc] = weight[(oc * c_in + ci) * taps + t];
            }
        }
    }
    out
}

/// The official `LayerNorm2d` on channels-last values: each pixel's `C` channels (`weight.len()`) are
/// normalised to zero mean and unit variance (biased, `eps` added), then scaled and shifted; in place.
pub(crate) fn layer_norm_channels(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let c = weight.len();
    x.par_chunks_mut(c * 64).for_each(|rows| {
        simd(|| {
            for px in rows.chunks_exact_mut(c) {
                let mean = px.iter().sum::<f32>() / c as f32;
                let var = px.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
                let inv = 1.0 / (var + eps).sqrt();
                for ((v, g), s) in px.iter_mut().zip(weight).zip(bias) {
                    *v = (*v - mean) * inv * g + s;
                }
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::LayerNorm2d;
    use crate::kernels::Depthwise;
    use crate::test_util::max_abs_diff;
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tensor};
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    fn grid(b: usize, h: usize, w: usize, c: usize) -> Grid {
        Grid { b, h, w, c }
    }

    fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().expect("f32")
    }

    /// 1×1, 3×3 and 5×5 convolutions, with and without bias, strides 1 and 2, over a pixel count that
    /// leaves a partial block, against Burn's `Conv2d` on the `(B, C, H, W)` view.
    #[test]
    fn token_convolutions_match_conv2d() {
        let device = Default::default();
        let grid = grid(2, 13, 11, 6);
        let x = Tensor::<B, 4>::random([2, 13, 11, 6], Distribution::Normal(0.0, 1.0), &device);
        for (k, bias, stride) in [
            (1, false, 1),
            (1, true, 1),
            (3, false, 1),
            (3, true, 1),
            (5, true, 1),
            (3, true, 2),
            (1, false, 2),
        ] {
            let conv = Conv2dConfig::new([6, 5], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_bias(bias)
                .init::<B>(&device);
            let want = conv
                .forward(x.clone().permute([0, 3, 1, 2]))
                .permute([0, 2, 3, 1]);
            let want_dims = want.dims();
            let want = values(want);
            let b = conv.bias.as_ref().map(|b| values(b.val()));
            let (got, out) = conv_tokens(
                &values(x.clone()),
                grid,
                &values(conv.weight.val()),
                Depthwise { k, stride },
                b.as_deref(),
                Activation::Identity,
            );
            assert_eq!([out.b, out.h, out.w, out.c], want_dims);
            assert!(
                max_abs_diff(&got, &want) < 1e-4,
                "k = {k}, bias {bias}, stride {stride}"
            );
        }
    }

    #[test]
    fn channel_norm_matches_layer_norm_2d() {
        let device = Default::default();
        let mut norm = LayerNorm2d::<B>::new(7, &device);
        norm.weight =
            Param::from_tensor(Tensor::random([7], Distribution::Normal(1.0, 0.5), &device));
        norm.bias =
            Param::from_tensor(Tensor::random([7], Distribution::Normal(0.0, 0.5), &device));
        let x = Tensor::<B, 4>::random([1, 5, 3, 7], Distribution::Normal(2.0, 3.0), &device);
        let want = values(
            norm.forward(x.clone().permute([0, 3, 1, 2]))
                .permute([0, 2, 3, 1]),
        );
        let mut got = values(x);
        layer_norm_channels(
            &mut got,
            &values(norm.weight.val()),
            &values(norm.bias.val()),
            1e-6,
        );
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }
}
