//! The whole model (official `modeling/sam.py`): encoder, prompt encoder, decoder, and the preprocessing of
//! an image into the encoder's input. Checkpoints: `load.rs`; mask post-processing: `postprocess.rs`.

use crate::image_encoder::ImageEncoder;
use crate::mask_decoder::MaskDecoder;
use crate::prompt_encoder::PromptEncoder;
use crate::{SamConfig, SamError};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;

/// ImageNet pixel mean and standard deviation (0–255 scale) of the official `Sam`.
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// See [`PIXEL_MEAN`].
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Segment Anything: image encoder, prompt encoder, mask decoder.
#[derive(Module, Debug)]
pub struct Sam<B: Backend> {
    /// Image encoder (SAM's ViT or MobileSAM's TinyViT).
    pub image_encoder: ImageEncoder<B>,
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
            image_encoder: ImageEncoder::new(&config, device),
            prompt_encoder: PromptEncoder::new(&config, device),
            mask_decoder: MaskDecoder::new(&config, device),
            config,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &SamConfig {
        &self.config
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
}
