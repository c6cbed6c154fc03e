//! The training target in the decoder's low-resolution frame, and the loss.

use super::FinetuneError;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use image::GrayImage;

/// The ground-truth mask in the decoder's low-resolution frame: resized (bilinear) as SAM resizes the image
/// (longest side = `image_size`), zero-padded to `image_size²`, averaged over `low × low` cells. Values in
/// [0, 1], row-major `low × low`.
///
/// # Errors
/// [`FinetuneError::InvalidParam`] when `image_size` is not a multiple of `low`.
pub fn low_res_target(
    mask: &GrayImage,
    image_size: u32,
    low: u32,
) -> Result<Vec<f32>, FinetuneError> {
    if low == 0 || !image_size.is_multiple_of(low) {
        return Err(FinetuneError::InvalidParam {
            name: "low-resolution side",
            value: format!("{low} (input {image_size})"),
        });
    }
    let (nh, nw) = crate::resize::preprocess_shape(mask.height(), mask.width(), image_size);
    let resized = image::imageops::resize(mask, nw, nh, image::imageops::FilterType::Triangle);
    let r = image_size / low;
    let mut out = vec![0f32; (low * low) as usize];
    for (x, y, v) in resized.enumerate_pixels() {
        out[((y / r) * low + x / r) as usize] += f32::from(v[0]) / 255.0;
    }
    let cell = (r * r) as f32;
    out.iter_mut().for_each(|v| *v /= cell);
    Ok(out)
}

/// Mean binary cross-entropy of `logits` against soft `targets` (numerically stable form
/// `max(x, 0) − x·t + log(1 + e^{−|x|})`).
pub fn bce_with_logits<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    targets: Tensor<B, D>,
) -> Tensor<B, 1> {
    let x = logits;
    let loss = x.clone().clamp_min(0.0) - x.clone() * targets + x.abs().neg().exp().log1p();
    loss.mean()
}
