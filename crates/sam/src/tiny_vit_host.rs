//! Host kernels of MobileSAM's TinyViT on `flex` / `ndarray`, all on channels-last tokens `(B, H, W, C)`:
//! the window partition with its zero padding, the inverse partition fused with the residual add and the
//! crop, depthwise convolutions, and the convolutional stages ([`TinyViT::forward_host`]: patch embedding,
//! MBConv blocks, patch merging) with BatchNorm folded and GELU and residuals fused into the products.
//!
//! As Burn tensor ops, each of these is a chain of strided copies: padding by concatenation, a
//! six-dimensional permute made contiguous, and a permute to `(B, C, H, W)` and back around the local
//! convolution. At MobileSAM's first attention stage (128² tokens, 128 channels) the partition and its
//! inverse took 50–70 ms a block on `flex`; here each is one pass over the tokens. The convolutional
//! stages keep the tokens channels-last too, so that their 1×1 convolutions are plain row products.

use crate::conv_host::{conv_tokens, tap_major};
use crate::kernels::{Depthwise, gelu_in_place, host_f32, simd};
use crate::linear_host::{Activation, Residual, affine_rows};
use crate::tiny_vit::{Conv2dBn, MbConv, PatchMerging, TinyPatchEmbed, TinyViT, TinyVitLayer};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use faer::MatRef;
use rayon::prelude::*;

/// The token grid `(B, H, W, C)`, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    /// Batch.
    pub b: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Grid {
    /// The grid a convolution of geometry `geo` with `c` output channels makes of this one.
    pub(crate) fn convolved(self, geo: Depthwise, c: usize) -> Grid {
        Grid {
            h: geo.out(self.h),
            w: geo.out(self.w),
            c,
            ..self
        }
    }

    /// Windows per row and per column for window side `ws`, after padding to a multiple of `ws`.
    fn windows(self, ws: usize) -> (usize, usize) {
        (self.h.div_ceil(ws), self.w.div_ceil(ws))
    }
}

/// The official `window_partition` with its zero padding: tokens `x` on `grid` → `(B · nh · nw, ws², C)`,
/// window by window in row-major window order, each window's tokens row-major.
pub(crate) fn partition(x: &[f32], grid: Grid, ws: usize) -> Vec<f32> {
    let Grid { b, h, w, c } = grid;
    debug_assert_eq!(x.len(), b * h * w * c);
    let (nh, nw) = grid.windows(ws);
    let mut out = vec![0.0f32; b * nh * nw * ws * ws * c];
    out.par_chunks_mut(ws * ws * c)
        .enumerate()
        .for_each(|(g, window)| {
            let (bi, wy, wx) = (g / (nh * nw), (g / nw) % nh, g % nw);
            let x0 = wx * ws;
            let cols = ws.min(w - x0);
            for (iy, row) in window.chunks_exact_mut(ws * c).enumerate() {
                let y = wy * ws + iy;
                if y >= h {
                    break; // padding rows stay zero
                }
                let start = ((bi * h + y) * w + x0) * c;
                row[..cols * c].copy_from_slice(&x[start..start + cols * c]);
            }
        });
    out
}

/// The official `window_unpartition`, its crop and the residual add: `x += unpartition(windows)`, where
/// `windows` is laid out as [`partition`]'s output.
pub(crate) fn unpartition_add(x: &mut [f32], grid: Grid, ws: usize, windows: &[f32]) {
    let Grid { b, h, w, c } = grid;
    let (nh, nw) = grid.windows(ws);
    debug_assert_eq!(x.len(), b * h * w * c);
    debug_assert_eq!(windows.len(), b * nh * nw * ws * ws * c);
    x.par_chunks_mut(w * c).enumerate().for_each(|(r, row)| {
        simd(|| {
            let (bi, y) = (r / h, r % h);
            let (wy, iy) = (y / ws, y % ws);
            for wx in 0..nw {
                let g = (bi * nh + wy) * nw + wx;
                let x0 = wx * ws;
                let cols = ws.min(w - x0);
                let src = &windows[(g * ws + iy) * ws * c..][..cols * c];
                let dst = &mut row[x0 * c..(x0 + cols) * c];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        })
    });
}

/// A depthwise `k × k` convolution (stride and kernel in `geo`, zero padding `k / 2`) on channels-last
/// tokens, then `act`: `weight` `(C, 1, k, k)` as PyTorch stores it, `bias` `(C)`. Each output row is a
/// task; each tap adds `w[·, ky, kx] ⊙ x[iy, ix, ·]` over the channels, which are contiguous and
/// vectorise. Returns the output and its grid.
pub(crate) fn depthwise_nhwc(
    x: &[f32],
    grid: Grid,
    weight: &[f32],
    bias: &[f32],
    geo: Depthwise,
    act: Activation,
) -> (Vec<f32>, Grid) {
    let Grid { b, h, w, c } = grid;
    let Depthwise { k, stride: s } = geo;
    debug_assert_eq!(x.len(), b * h * w * c);
    debug_assert_eq!(weight.len(), c * k * k);
    let p = k / 2;
    let out_grid = grid.convolved(geo, c);
    let (ho, wo) = (out_grid.h, out_grid.w);
    // Taps laid out (ky, kx, C) so that a tap's channel weights are contiguous.
    let taps = tap_major(weight, 1, k * k);
    let mut out = vec![0.0f32; b * ho * wo * c];
    if out.is_empty() {
        return (out, out_grid);
    }
    out.par_chunks_mut(wo * c).enumerate().for_each(|(r, row)| {
        simd(|| {
            let (bi, oy) = (r / ho, r % ho);
            for px in row.chunks_exact_mut(c) {
                px.copy_from_slice(bias);
            }
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                    continue;
                };
                let src = &x[(bi * h + iy) * w * c..][..w * c];
                for kx in 0..k {
                    let tap = &taps[(ky * k + kx) * c..][..c];
                    // Output columns ox with 0 ≤ ox·s + kx − p < w.
                    let lo = p.saturating_sub(kx).div_ceil(s);
                    let hi = (w + p).saturating_sub(kx).div_ceil(s).min(wo);
                    for ox in lo..hi {
                        let ix = ox * s + kx - p;
                        let dst = &mut row[ox * c..][..c];
                        let v = &src[ix * c..][..c];
                        for ((d, v), t) in dst.iter_mut().zip(v).zip(tap) {
                            *d += t * v;
                        }
                    }
                }
            }
        });
        if act == Activation::Gelu {
            gelu_in_place(row);
        }
    });
    (out, out_grid)
}

/// Channels-last tokens on the host: values `(B, H, W, C)`, row-major, and their grid.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    /// The values.
    pub values: Vec<f32>,
    /// Their grid.
    pub grid: Grid,
}

impl Tokens {
    /// The tokens of a `(B, H, W, C)` tensor.
    fn from_tensor<B: Backend>(x: Tensor<B, 4>) -> Self {
        let [b, h, w, c] = x.dims();
        Self {
            values: host_f32(x),
            grid: Grid { b, h, w, c },
        }
    }

    /// The `(B, H, W, C)` tensor of these tokens.
    fn into_tensor<B: Backend>(self, device: &B::Device) -> Tensor<B, 4> {
        let Grid { b, h, w, c } = self.grid;
        Tensor::from_data(TensorData::new(self.values, [b, h, w, c]), device)
    }
}

impl<B: Backend> Conv2dBn<B> {
    /// The convolution (BatchNorm folded) on host tokens, then `act`; `residual` (tokens of the output's
    /// shape) is added before `act`. A 1×1 convolution is a row product with the epilogue fused, a
    /// depthwise one [`depthwise_nhwc`], any other [`conv_tokens`].
    pub(crate) fn forward_host(
        &self,
        x: &Tokens,
        act: Activation,
        residual: Option<Vec<f32>>,
    ) -> Tokens {
        let (weight, bias, [k, stride, groups]) = self.host_parts();
        let c = x.grid.c;
        let o = bias.len();
        let geo = Depthwise { k, stride };
        if k == 1 && stride == 1 && groups == 1 {
            // (out, in) row-major is the (in × out) matrix column-major.
            let w = MatRef::from_column_major_slice(&weight, c, o);
            let residual = residual.map_or(Residual::None, Residual::Inside);
            let values = affine_rows(&x.values, w, &bias, act, residual);
            return Tokens {
                values,
                grid: Grid { c: o, ..x.grid },
            };
        }
        // The residual, if any, goes in after the convolution and before the activation.
        let conv_act = if residual.is_some() {
            Activation::Identity
        } else {
            act
        };
        let (mut values, grid) = if groups == c && groups == o {
            depthwise_nhwc(&x.values, x.grid, &weight, &bias, geo, conv_act)
        } else if groups == 1 {
            conv_tokens(&x.values, x.grid, &weight, geo, Some(&bias), conv_act)
        } else {
            // Grouped convolutions other than depthwise: not in TinyViT; Burn's op on a copy.
            let device = B::Device::default();
            let t = x.clone().into_tensor::<B>(&device).permute([0, 3, 1, 2]);
            let y = Tokens::from_tensor(self.forward(t).permute([0, 2, 3, 1]));
            let mut values = y.values;
            if residual.is_none() && act == Activation::Gelu {
                values.par_chunks_mut(1 << 14).for_each(gelu_in_place);
            }
            (values, y.grid)
        };
        if let Some(r) = residual {
            values
                .par_chunks_mut(1 << 14)
                .zip(r.par_chunks(1 << 14))
                .for_each(|(v, r)| {
                    simd(|| v.iter_mut().zip(r).for_each(|(v, r)| *v += r));
                    if act == Activation::Gelu {
                        gelu_in_place(v);
                    }
                });
        }
        Tokens { values, grid }
    }
}

impl<B: Backend> TinyPatchEmbed<B> {
    /// [`TinyPatchEmbed::forward`] on host tokens.
    pub(crate) fn forward_host(&self, x: &Tokens) -> Tokens {
        let y = self.conv1.forward_host(x, Activation::Gelu, None);
        self.conv2.forward_host(&y, Activation::Identity, None)
    }
}

impl<B: Backend> MbConv<B> {
    /// [`MbConv::forward`] on host tokens: the residual and the last GELU fused into the projection.
    pub(crate) fn forward_host(&self, x: Tokens) -> Tokens {
        let y = self.conv1.forward_host(&x, Activation::Gelu, None);
        let y = self.conv2.forward_host(&y, Activation::Gelu, None);
        self.conv3
            .forward_host(&y, Activation::Gelu, Some(x.values))
    }
}

impl<B: Backend> PatchMerging<B> {
    /// [`PatchMerging::forward`] on host tokens.
    pub(crate) fn forward_host(&self, x: &Tokens) -> Tokens {
        let y = self.conv1.forward_host(x, Activation::Gelu, None);
        let y = self.conv2.forward_host(&y, Activation::Gelu, None);
        self.conv3.forward_host(&y, Activation::Identity, None)
    }
}

impl<B: Backend> TinyViT<B> {
    /// [`TinyViT::forward`] on the host: channels-last tokens from the image on; the attention blocks take
    /// them as `(B, H, W, C)` tensors (their own host kernels), the neck as well.
    pub(crate) fn forward_host(
        &self,
        x: Tensor<B, 4>,
        on_stage: &mut dyn FnMut(&str),
    ) -> Tensor<B, 4> {
        let device = x.device();
        let mut tokens = self
            .patch_embed
            .forward_host(&Tokens::from_tensor(x.permute([0, 2, 3, 1])));
        on_stage("patch_embed");
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                TinyVitLayer::Conv(l) => {
                    for block in &l.blocks {
                        tokens = block.forward_host(tokens);
                    }
                    tokens = l.downsample.forward_host(&tokens);
                }
                TinyVitLayer::Attention(l) => {
                    let mut x = tokens.into_tensor::<B>(&device);
                    for block in &l.blocks {
                        x = block.forward(x);
                    }
                    // Moving a uniquely owned host tensor's buffer in and out copies nothing.
                    let t = Tokens::from_tensor(x);
                    tokens = match &l.downsample {
                        Some(d) => d.forward_host(&t),
                        None => t,
                    };
                }
            }
            on_stage(&format!("layers.{i}"));
        }
        let y = self.neck.forward_tokens(tokens.into_tensor(&device));
        on_stage("neck");
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_encoder::{window_partition, window_unpartition};
    use crate::kernels::{Depthwise, depthwise_host};
    use crate::test_util::max_abs_diff;
    use burn::tensor::{Distribution, Tensor, TensorData};
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    fn grid(b: usize, h: usize, w: usize, c: usize) -> Grid {
        Grid { b, h, w, c }
    }

    fn random(shape: [usize; 4]) -> (Tensor<B, 4>, Vec<f32>) {
        let t = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default());
        let v = t.clone().into_data().to_vec::<f32>().expect("f32");
        (t, v)
    }

    /// Partition and the fused inverse against the tensor-op versions, with padding on both sides, none,
    /// and a window larger than the grid.
    #[test]
    fn partition_and_unpartition_match_tensor_ops() {
        for (grid, ws) in [
            (grid(2, 10, 12, 3), 7),
            (grid(1, 14, 7, 5), 7),
            (grid(1, 4, 5, 2), 7),
        ] {
            let Grid { b, h, w, c } = grid;
            let (x, xv) = random([b, h, w, c]);
            let (want, padded) = window_partition(x.clone(), ws);
            let got = partition(&xv, grid, ws);
            assert_eq!(
                max_abs_diff(&got, &want.clone().into_data().to_vec::<f32>().unwrap()),
                0.0
            );
            // Unpartition something other than the partition itself, so the crop matters.
            let windows = want.clone() * 2.0 + 1.0;
            let sum = x.clone() + window_unpartition(windows.clone(), ws, padded, (h, w));
            let mut got = xv.clone();
            let wv = windows.into_data().to_vec::<f32>().unwrap();
            unpartition_add(&mut got, grid, ws, &wv);
            assert!(max_abs_diff(&got, &sum.into_data().to_vec::<f32>().unwrap()) < 1e-6);
        }
    }

    /// The channels-last depthwise convolution against the channels-first kernel, for k = 3 and 5, strides
    /// 1 and 2, on grids narrower than the kernel's reach and of odd sides.
    #[test]
    fn depthwise_nhwc_matches_channels_first() {
        for (grid, k, stride) in [
            (grid(2, 9, 6, 7), 3, 1),
            (grid(1, 3, 2, 4), 5, 1),
            (grid(2, 9, 7, 5), 3, 2),
            (grid(1, 8, 8, 3), 3, 2),
        ] {
            let Grid { b, h, w, c } = grid;
            let (x, xv) = random([b, h, w, c]);
            let (_, weight) = random([c, 1, k, k]);
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.2).collect();
            let geo = Depthwise { k, stride };
            let (ho, wo) = (geo.out(h), geo.out(w));
            let nchw = x.permute([0, 3, 1, 2]).into_data().to_vec::<f32>().unwrap();
            let want = depthwise_host(&nchw, [b, c, h, w], &weight, &bias, geo);
            let want = Tensor::<B, 4>::from_data(
                TensorData::new(want, [b, c, ho, wo]),
                &Default::default(),
            )
            .permute([0, 2, 3, 1])
            .into_data()
            .to_vec::<f32>()
            .unwrap();
            let (got, out) = depthwise_nhwc(&xv, grid, &weight, &bias, geo, Activation::Identity);
            assert_eq!((out.h, out.w, out.c), (ho, wo, c));
            assert!(max_abs_diff(&got, &want) < 1e-5, "k = {k}, stride {stride}");
        }
    }
}
