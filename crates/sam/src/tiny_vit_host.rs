//! Host kernels of the TinyViT block ([`crate::tiny_vit::TinyVitBlock`] on `flex` / `ndarray`): the window
//! partition with its zero padding, the inverse partition fused with the residual add and the crop, and the
//! depthwise local convolution on channels-last tokens.
//!
//! As Burn tensor ops, each of these is a chain of strided copies: padding by concatenation, a
//! six-dimensional permute made contiguous, and a permute to `(B, C, H, W)` and back around the local
//! convolution. At MobileSAM's first attention stage (128² tokens, 128 channels) the partition and its
//! inverse took 50–70 ms a block on `flex`; here each is one pass over the tokens.

use crate::kernels::simd;
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

/// A stride-1 depthwise `k × k` convolution with zero padding `k / 2` on channels-last tokens: `weight`
/// `(C, 1, k, k)` as PyTorch stores it, `bias` `(C)`. Each output row is a task; each tap adds
/// `w[·, ky, kx] ⊙ x[iy, ix, ·]` over the channels, which are contiguous and vectorise.
pub(crate) fn depthwise_nhwc(
    x: &[f32],
    grid: Grid,
    weight: &[f32],
    bias: &[f32],
    k: usize,
) -> Vec<f32> {
    let Grid { b, h, w, c } = grid;
    debug_assert_eq!(x.len(), b * h * w * c);
    debug_assert_eq!(weight.len(), c * k * k);
    let p = k / 2;
    // Taps laid out (ky, kx, C) so that a tap's channel weights are contiguous.
    let mut taps = vec![0.0f32; k * k * c];
    for ch in 0..c {
        for t in 0..k * k {
            taps[t * c + ch] = weight[ch * k * k + t];
        }
    }
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(w * c).enumerate().for_each(|(r, row)| {
        simd(|| {
            let (bi, y) = (r / h, r % h);
            for px in row.chunks_exact_mut(c) {
                px.copy_from_slice(bias);
            }
            for ky in 0..k {
                let Some(iy) = (y + ky).checked_sub(p).filter(|&iy| iy < h) else {
                    continue;
                };
                let src = &x[(bi * h + iy) * w * c..][..w * c];
                for kx in 0..k {
                    let tap = &taps[(ky * k + kx) * c..][..c];
                    // Output columns ox with 0 ≤ ox + kx − p < w.
                    let lo = p.saturating_sub(kx);
                    let hi = (w + p).saturating_sub(kx).min(w);
                    for ox in lo..hi {
                        let ix = ox + kx - p;
                        let dst = &mut row[ox * c..][..c];
                        let s = &src[ix * c..][..c];
                        for ((d, s), t) in dst.iter_mut().zip(s).zip(tap) {
                            *d += t * s;
                        }
                    }
                }
            }
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_encoder::{window_partition, window_unpartition};
    use crate::kernels::{Depthwise, depthwise_host};
    use burn::tensor::{Distribution, Tensor, TensorData};
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    fn random(shape: [usize; 4]) -> (Tensor<B, 4>, Vec<f32>) {
        let t = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default());
        let v = t.clone().into_data().to_vec::<f32>().expect("f32");
        (t, v)
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    }

    /// Partition and the fused inverse against the tensor-op versions, with padding on both sides, none,
    /// and a window larger than the grid.
    #[test]
    fn partition_and_unpartition_match_tensor_ops() {
        for (grid, ws) in [
            (
                Grid {
                    b: 2,
                    h: 10,
                    w: 12,
                    c: 3,
                },
                7,
            ),
            (
                Grid {
                    b: 1,
                    h: 14,
                    w: 7,
                    c: 5,
                },
                7,
            ),
            (
                Grid {
                    b: 1,
                    h: 4,
                    w: 5,
                    c: 2,
                },
                7,
            ),
        ] {
            let Grid { b, h, w, c } = grid;
            let (x, xv) = random([b, h, w, c]);
            let (want, padded) = window_partition(x.clone(), ws);
            let got = partition(&xv, grid, ws);
            assert_eq!(
                worst(&got, &want.clone().into_data().to_vec::<f32>().unwrap()),
                0.0
            );
            // Unpartition something other than the partition itself, so the crop matters.
            let windows = want.clone() * 2.0 + 1.0;
            let sum = x.clone() + window_unpartition(windows.clone(), ws, padded, (h, w));
            let mut got = xv.clone();
            let wv = windows.into_data().to_vec::<f32>().unwrap();
            unpartition_add(&mut got, grid, ws, &wv);
            assert!(worst(&got, &sum.into_data().to_vec::<f32>().unwrap()) < 1e-6);
        }
    }

    /// The channels-last depthwise convolution against the channels-first kernel, for k = 3 and 5 on a
    /// grid narrower than the kernel's reach.
    #[test]
    fn depthwise_nhwc_matches_channels_first() {
        for (grid, k) in [
            (
                Grid {
                    b: 2,
                    h: 9,
                    w: 6,
                    c: 7,
                },
                3,
            ),
            (
                Grid {
                    b: 1,
                    h: 3,
                    w: 2,
                    c: 4,
                },
                5,
            ),
        ] {
            let Grid { b, h, w, c } = grid;
            let (x, xv) = random([b, h, w, c]);
            let (_, weight) = random([c, 1, k, k]);
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.2).collect();
            let nchw = x.permute([0, 3, 1, 2]).into_data().to_vec::<f32>().unwrap();
            let want = depthwise_host(
                &nchw,
                [b, c, h, w],
                &weight,
                &bias,
                Depthwise { k, stride: 1 },
            );
            let want =
                Tensor::<B, 4>::from_data(TensorData::new(want, [b, c, h, w]), &Default::default())
                    .permute([0, 2, 3, 1])
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap();
            let got = depthwise_nhwc(&xv, grid, &weight, &bias, k);
            assert!(worst(&got, &want) < 1e-5, "k = {k}");
        }
    }
}
