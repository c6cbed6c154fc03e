//! Mask post-processing (official `Sam.postprocess_masks`): low-resolution logits to the original image size.

use crate::Sam;
use crate::kernels::on_host;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

impl<B: Backend> Sam<B> {
    /// Mask logits at the original size (official `postprocess_masks`): bilinear (align_corners = false)
    /// to the square input, crop to the resized image `input_hw`, bilinear to `original_hw`.
    ///
    /// Both resizes and the crop are linear and separable, so they are composed on the host into one
    /// `(H, h)` matrix per axis: no `S × S` intermediate per mask. Each row of those matrices has at most
    /// four non-zero weights (two bilinear taps of two bilinear taps), so on a host backend (`flex`,
    /// `ndarray`) they are applied as a sparse separable filter (~3 MFLOP per 640 × 480 mask instead of the
    /// dense products' 0.22 GFLOP); elsewhere as two matrix products ([`Sam::postprocess_products`]).
    /// [`Sam::postprocess_interpolate`] is the literal two-step version.
    pub fn postprocess(
        &self,
        low_res: Tensor<B, 4>,
        input_hw: (usize, usize),
        original_hw: (usize, usize),
    ) -> Tensor<B, 4> {
        if on_host::<B>(&low_res.device()) {
            self.postprocess_host(low_res, input_hw, original_hw)
        } else {
            self.postprocess_products(low_res, input_hw, original_hw)
        }
    }

    /// [`Sam::postprocess`] on the host: the composed matrices' non-zero taps, rows then columns, one rayon
    /// task per output row.
    fn postprocess_host(
        &self,
        low_res: Tensor<B, 4>,
        input_hw: (usize, usize),
        original_hw: (usize, usize),
    ) -> Tensor<B, 4> {
        let [b, m, lh, lw] = low_res.dims();
        let s = self.config().image_size;
        let device = low_res.device();
        let (oh, ow) = original_hw;
        let ty = sparse_rows(&resample_matrix(lh, s, input_hw.0, oh), lh);
        let tx = sparse_rows(&resample_matrix(lw, s, input_hw.1, ow), lw);
        let data = low_res.into_data().convert::<f32>();
        let values: Vec<f32> = match data.as_slice::<f32>() {
            Ok(v) => v.to_vec(),
            Err(_) => data.iter::<f32>().collect(),
        };
        let mut out = vec![0f32; b * m * oh * ow];
        out.par_chunks_mut(ow).enumerate().for_each(|(r, row)| {
            let (plane, o) = (r / oh, r % oh);
            let src = &values[plane * lh * lw..(plane + 1) * lh * lw];
            // This output row as a mix of the plane's low-res rows, then resampled along the columns.
            let mut mixed = vec![0f32; lw];
            for &(l, a) in &ty[o] {
                for (acc, &v) in mixed.iter_mut().zip(&src[l * lw..(l + 1) * lw]) {
                    *acc += a * v;
                }
            }
            for (x, taps) in row.iter_mut().zip(&tx) {
                *x = taps.iter().map(|&(j, w)| w * mixed[j]).sum();
            }
        });
        Tensor::from_data(TensorData::new(out, [b, m, oh, ow]), &device)
    }

    /// [`Sam::postprocess`] as two dense matrix products with the composed resampling matrices (the path
    /// for device backends; the host path gives the same values up to rounding).
    pub fn postprocess_products(
        &self,
        low_res: Tensor<B, 4>,
        input_hw: (usize, usize),
        original_hw: (usize, usize),
    ) -> Tensor<B, 4> {
        let [b, m, lh, lw] = low_res.dims();
        let s = self.config().image_size;
        let device = low_res.device();
        let (oh, ow) = original_hw;
        let wy = resample_matrix(lh, s, input_hw.0, oh); // (oh, lh)
        let wx = resample_matrix(lw, s, input_hw.1, ow); // (ow, lw)
        let wy = Tensor::<B, 2>::from_data(TensorData::new(wy, [oh, lh]), &device);
        let wxt = Tensor::<B, 2>::from_data(TensorData::new(wx, [ow, lw]), &device).transpose();
        // Rows first: (oh, lh) · (lh, B·M·lw) is one product; then (B·M·oh, lw) · (lw, ow).
        let planes = low_res
            .reshape([b * m, lh, lw])
            .swap_dims(0, 1)
            .reshape([lh, b * m * lw]);
        let rows = wy.matmul(planes).reshape([oh, b * m, lw]).swap_dims(0, 1);
        rows.reshape([b * m * oh, lw])
            .matmul(wxt)
            .reshape([b, m, oh, ow])
    }

    /// [`Sam::postprocess`] step by step as the official code does it (two `interpolate` calls and a crop);
    /// same values up to rounding, slower.
    pub fn postprocess_interpolate(
        &self,
        low_res: Tensor<B, 4>,
        input_hw: (usize, usize),
        original_hw: (usize, usize),
    ) -> Tensor<B, 4> {
        let s = self.config().image_size;
        let opts = || InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
        let x = interpolate(low_res, [s, s], opts());
        let x = x.narrow(2, 0, input_hw.0).narrow(3, 0, input_hw.1);
        interpolate(x, [original_hw.0, original_hw.1], opts())
    }
}

/// One axis of PyTorch's bilinear resize (align_corners = false, no antialias) from `n_in` to `n_out` samples
/// as `(source index, weight)` taps: source coordinate `(i + ½)·n_in/n_out − ½` clamped at 0, its floor and
/// the next sample (clamped to the last).
fn bilinear_taps(n_in: usize, n_out: usize) -> Vec<[(usize, f64); 2]> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|i| {
            let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            let l = src - i0 as f64;
            [(i0, 1.0 - l), (i1, l)]
        })
        .collect()
}

/// The `(n_out, n_low)` matrix (row-major, f32) of one axis of `postprocess_masks`: bilinear from `n_low` to
/// `square`, keep the first `n_crop`, bilinear to `n_out`.
pub(crate) fn resample_matrix(
    n_low: usize,
    square: usize,
    n_crop: usize,
    n_out: usize,
) -> Vec<f32> {
    let up = bilinear_taps(n_low, square);
    let down = bilinear_taps(n_crop.clamp(1, square), n_out);
    let mut w = vec![0f64; n_out * n_low];
    for (o, taps) in down.iter().enumerate() {
        for &(c, a) in taps {
            for &(l, b) in &up[c] {
                w[o * n_low + l] += a * b;
            }
        }
    }
    w.into_iter().map(|v| v as f32).collect()
}

/// The non-zero `(column, weight)` entries of each row of a row-major matrix with `cols` columns.
fn sparse_rows(w: &[f32], cols: usize) -> Vec<Vec<(usize, f32)>> {
    w.chunks(cols)
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|&(_, &v)| v != 0.0)
                .map(|(j, &v)| (j, v))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SamConfig;
    use burn::tensor::Distribution;
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    /// The composed resampling equals the two official interpolations with the crop between them, for
    /// downsizing, upsizing and odd sizes.
    #[test]
    fn composed_postprocess_matches_two_interpolations() {
        let device = Default::default();
        let cfg = SamConfig {
            image_size: 64,
            encoder: crate::EncoderConfig::Vit(crate::VitConfig {
                patch_size: 8,
                embed_dim: 16,
                depth: 1,
                num_heads: 2,
                mlp_dim: 32,
                window_size: 4,
                global_attn_indexes: vec![0],
            }),
            prompt_dim: 16,
            mask_in_chans: 4,
            decoder_depth: 1,
            decoder_heads: 2,
            decoder_mlp_dim: 32,
            iou_head_hidden_dim: 16,
            iou_head_depth: 2,
            num_multimask_outputs: 3,
        };
        let sam = Sam::<B>::new(cfg, &device).unwrap();
        let low = Tensor::<B, 4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 4.0), &device);
        for (input, original) in [
            ((48, 64), (30, 40)),
            ((64, 37), (101, 59)),
            ((64, 64), (64, 64)),
        ] {
            let reference = sam.postprocess_interpolate(low.clone(), input, original);
            let reference = reference.into_data().to_vec::<f32>().unwrap();
            // `postprocess` takes the sparse host path on this backend; the products are the device path.
            for (name, got) in [
                ("host", sam.postprocess(low.clone(), input, original)),
                (
                    "products",
                    sam.postprocess_products(low.clone(), input, original),
                ),
            ] {
                assert_eq!(got.dims(), [1, 3, original.0, original.1]);
                let got = got.into_data().to_vec::<f32>().unwrap();
                let d = crate::test_util::max_abs_diff(&got, &reference);
                assert!(
                    d < 1e-4,
                    "{name} {input:?} -> {original:?}: max difference {d}"
                );
            }
        }
    }
}
