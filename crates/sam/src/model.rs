//! The whole model: encoder, prompt encoder, decoder; checkpoint loading; pre- and post-processing.

use crate::image_encoder::ImageEncoderViT;
use crate::kernels::on_host;
use crate::load::{KEY_MAP, is_safetensors, read_shapes, remap_patterns, to_official};

/// Prefix of the mask decoder's keys in an official state dict.
const DECODER_PREFIX: &str = "mask_decoder.";
use crate::mask_decoder::MaskDecoder;
use crate::prompt_encoder::PromptEncoder;
use crate::{SamConfig, SamError};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};
use burn_store::{
    BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use image::RgbImage;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// ImageNet pixel mean and standard deviation (0–255 scale) of the official `Sam`.
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// See [`PIXEL_MEAN`].
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Segment Anything: image encoder, prompt encoder, mask decoder.
#[derive(Module, Debug)]
pub struct Sam<B: Backend> {
    /// ViT image encoder.
    pub image_encoder: ImageEncoderViT<B>,
    /// Prompt encoder.
    pub prompt_encoder: PromptEncoder<B>,
    /// Mask decoder.
    pub mask_decoder: MaskDecoder<B>,
    #[module(skip)]
    config: SamConfig,
}

impl<B: Backend> Sam<B> {
    /// A model of `config`'s shape with placeholder weights (load a checkpoint into it).
    ///
    /// # Errors
    /// [`SamError::Config`] for an invalid configuration.
    pub fn new(config: SamConfig, device: &B::Device) -> Result<Self, SamError> {
        config.validate()?;
        Ok(Self {
            image_encoder: ImageEncoderViT::new(&config, device),
            prompt_encoder: PromptEncoder::new(&config, device),
            mask_decoder: MaskDecoder::new(&config, device),
            config,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    /// Loads an official checkpoint (`sam_vit_{b,l,h}_*.pth`, or a `.safetensors` export of the same state
    /// dict) unmodified, the architecture inferred from its shapes ([`SamConfig::infer`]); `decoder_heads`
    /// (not visible in shapes) defaults to the official 8.
    ///
    /// # Errors
    /// [`SamError::ReadCheckpoint`] for an unreadable or truncated file; [`SamError::Config`] when the shapes
    /// are not SAM's; [`SamError::MissingTensor`] / [`SamError::UnexpectedTensor`] /
    /// [`SamError::ShapeMismatch`] naming the key.
    pub fn load(
        path: impl AsRef<Path>,
        decoder_heads: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, SamError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        let config = SamConfig::infer(&shapes, decoder_heads.unwrap_or(8))?;
        Self::load_checked(path, config, &shapes, device)
    }

    /// Loads a checkpoint into the given architecture (e.g. a named variant), checking every tensor.
    ///
    /// # Errors
    /// As [`Sam::load`].
    pub fn load_with_config(
        path: impl AsRef<Path>,
        config: SamConfig,
        device: &B::Device,
    ) -> Result<Self, SamError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        Self::load_checked(path, config, &shapes, device)
    }

    /// Official key → shape of every tensor this architecture needs.
    pub fn expected_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
            .into_iter()
            .map(|s| {
                let path = s.full_path();
                // The adapter renames LayerNorm gamma/beta back to weight/bias.
                (to_official(&path), s.shape.to_vec())
            })
            .collect()
    }

    /// Writes the mask decoder alone as a safetensors file with the official key names
    /// (`mask_decoder.…`): what `pslg finetune-decoder` produces and [`Sam::load_decoder`] reads.
    ///
    /// # Errors
    /// [`SamError::WriteCheckpoint`] (naming the file) when it cannot be written.
    pub fn save_decoder(&self, path: impl AsRef<Path>) -> Result<(), SamError> {
        let path = path.as_ref();
        let mut store = SafetensorsStore::from_file(path)
            .with_to_adapter(BurnToPyTorchAdapter)
            .overwrite(true)
            .with_key_remapping("^", DECODER_PREFIX);
        for (official, port) in KEY_MAP {
            if official.starts_with(DECODER_PREFIX) {
                store =
                    store.with_key_remapping(format!("^{}", port.replace('.', r"\.")), *official);
            }
        }
        self.mask_decoder
            .save_into(&mut store)
            .map_err(|e| SamError::WriteCheckpoint {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Replaces the mask decoder's weights with those of `path`: a file [`Sam::save_decoder`] wrote (a
    /// fine-tuned decoder), or any SAM checkpoint of the same architecture (only its `mask_decoder.*`
    /// tensors are read). The image and prompt encoders are untouched.
    ///
    /// # Errors
    /// [`SamError::ReadCheckpoint`] for an unreadable file; [`SamError::MissingTensor`] /
    /// [`SamError::ShapeMismatch`] / [`SamError::UnexpectedTensor`] naming the decoder key that does not fit
    /// (e.g. a decoder fine-tuned from another SAM variant).
    pub fn load_decoder(mut self, path: impl AsRef<Path>) -> Result<Self, SamError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        let expected: BTreeMap<String, Vec<usize>> = self
            .expected_shapes()
            .into_iter()
            .filter(|(k, _)| k.starts_with(DECODER_PREFIX))
            .collect();
        check_shapes(
            path,
            &expected,
            &shapes,
            |k| k.starts_with(DECODER_PREFIX),
            || format!("the mask decoder of {:?}", self.config),
        )?;
        let read_err = |reason: String| SamError::ReadCheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        // Official decoder keys → the decoder's own paths: the Sequential renames, then the prefix dropped.
        let prefix = format!("^{}", DECODER_PREFIX.replace('.', r"\."));
        let patterns: Vec<(String, String)> = remap_patterns()
            .into_iter()
            .filter(|(from, _)| from.starts_with(&prefix))
            .chain([(prefix.clone(), String::new())])
            .collect();
        let result = if is_safetensors(path) {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true);
            for (from, to) in &patterns {
                store = store.with_key_remapping(from, to);
            }
            self.mask_decoder
                .load_from(&mut store)
                .map_err(|e| read_err(e.to_string()))?
        } else {
            let mut store = PytorchStore::from_file(path)
                .map_indices_contiguous(false)
                .allow_partial(true);
            for (from, to) in &patterns {
                store = store.with_key_remapping(from, to);
            }
            self.mask_decoder
                .load_from(&mut store)
                .map_err(|e| read_err(e.to_string()))?
        };
        if !result.errors.is_empty() || !result.missing.is_empty() {
            return Err(read_err(format!(
                "{} decoder tensor(s) could not be applied: {:?} {:?}",
                result.errors.len() + result.missing.len(),
                result.errors.first(),
                result.missing.first()
            )));
        }
        Ok(self)
    }

    fn load_checked(
        path: &Path,
        config: SamConfig,
        shapes: &BTreeMap<String, Vec<usize>>,
        device: &B::Device,
    ) -> Result<Self, SamError> {
        let mut model = Self::new(config, device)?;
        let expected = model.expected_shapes();
        check_shapes(
            path,
            &expected,
            shapes,
            |_| true,
            || format!("{:?}", model.config),
        )?;
        let read_err = |reason: String| SamError::ReadCheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        let result = if is_safetensors(path) {
            let mut store =
                SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
            for (from, to) in remap_patterns() {
                store = store.with_key_remapping(&from, &to);
            }
            model
                .load_from(&mut store)
                .map_err(|e| read_err(e.to_string()))?
        } else {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            for (from, to) in remap_patterns() {
                store = store.with_key_remapping(&from, &to);
            }
            model
                .load_from(&mut store)
                .map_err(|e| read_err(e.to_string()))?
        };
        if !result.errors.is_empty() || !result.missing.is_empty() {
            return Err(read_err(format!(
                "{} tensor(s) could not be applied: {:?} {:?}",
                result.errors.len() + result.missing.len(),
                result.errors.first(),
                result.missing.first()
            )));
        }
        Ok(model)
    }

    /// The encoder input of a resized image (`ResizeLongestSide` output, longer side = image size):
    /// `(x − mean) / std`, zero-padded at the bottom and right to the square input, `(1, 3, S, S)`.
    ///
    /// # Errors
    /// [`SamError::Image`] when the image is empty or larger than the input.
    pub fn preprocess(
        &self,
        resized: &RgbImage,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, SamError> {
        let s = self.config.image_size;
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        if w == 0 || h == 0 || w > s || h > s {
            return Err(SamError::Image(format!(
                "resized image is {w}x{h}; it must be non-empty and fit the {s}x{s} input"
            )));
        }
        let mut data = vec![0f32; 3 * s * s];
        for (x, y, p) in resized.enumerate_pixels() {
            for c in 0..3 {
                data[c * s * s + y as usize * s + x as usize] =
                    (f32::from(p[c]) - PIXEL_MEAN[c]) / PIXEL_STD[c];
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(data, [1, 3, s, s]),
            device,
        ))
    }

    /// Encodes a preprocessed input `(1, 3, S, S)` into the image embedding `(1, C, S/16, S/16)`.
    pub fn encode(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        self.image_encoder.forward(input)
    }

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
        let s = self.config.image_size;
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
        let s = self.config.image_size;
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
        let s = self.config.image_size;
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

/// Checks a checkpoint's tensor shapes against the architecture's: every expected key present with its shape,
/// and no key that `in_scope` claims left over (`what` describes the architecture for the message).
fn check_shapes(
    path: &Path,
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, Vec<usize>>,
    in_scope: impl Fn(&str) -> bool,
    what: impl FnOnce() -> String,
) -> Result<(), SamError> {
    for (key, want) in expected {
        match found.get(key) {
            None => {
                return Err(SamError::MissingTensor {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    expected: want.clone(),
                });
            }
            Some(got) if got != want => {
                return Err(SamError::ShapeMismatch {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    found: got.clone(),
                    expected: want.clone(),
                });
            }
            Some(_) => {}
        }
    }
    if let Some((key, shape)) = found
        .iter()
        .find(|(k, _)| in_scope(k) && !expected.contains_key(*k))
    {
        return Err(SamError::UnexpectedTensor {
            path: path.to_path_buf(),
            key: key.clone(),
            shape: shape.clone(),
            what: what(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
            patch_size: 8,
            embed_dim: 16,
            depth: 1,
            num_heads: 2,
            mlp_dim: 32,
            window_size: 4,
            global_attn_indexes: vec![0],
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
                let d = got
                    .iter()
                    .zip(&reference)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    d < 1e-4,
                    "{name} {input:?} -> {original:?}: max difference {d}"
                );
            }
        }
    }
}
