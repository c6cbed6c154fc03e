//! Segment Anything (SAM) in [Burn](https://burn.dev): the ViT image encoder, the prompt encoder and the
//! mask decoder of the official `segment_anything` package, loading Meta's checkpoints unmodified, and
//! MobileSAM's TinyViT encoder (`mobile_sam`, `weights/mobile_sam.pt`) in place of the ViT.
//!
//! * [`SamConfig`]: the architecture; [`SamConfig::vit_b`], [`SamConfig::vit_l`], [`SamConfig::vit_h`],
//!   MobileSAM's [`SamConfig::vit_t`] and any small configuration (image size, widths, depths, windows,
//!   heads, prompt dim).
//! * [`Sam::load`]: an official `.pth` (or `.safetensors`) state dict through `burn-store`, the architecture
//!   inferred from the tensor shapes ([`SamConfig::infer`]); every missing, unexpected or mis-shaped tensor is
//!   a [`SamError`] naming the key and the shapes.
//! * [`SamPredictor`]: `set_image` once (ResizeLongestSide with Pillow's bilinear resampling reproduced
//!   bit-exactly, normalisation, padding), then many [`SamPredictor::predict`] calls with points, a box and
//!   an optional low-resolution mask.
//!
//! * [`finetune`] (feature `train`): the mask decoder fine-tuned on a referring dataset (Table 4).
//!
//! The port follows `segment_anything/modeling/*.py` (Apache-2.0, facebookresearch/segment-anything) module
//! by module; the parity tests compare every intermediate output with the official code on the same weights
//! (`scripts/sam_reference.py`).
//!
//! ```no_run
//! use burn_ndarray::NdArray;
//! use pslg_sam::{Prompt, Sam, SamPredictor};
//!
//! let device = Default::default();
//! let sam = Sam::<NdArray>::load("sam_vit_b_01ec64.pth", None, &device)?;
//! let image = image::open("scene.png").unwrap().to_rgb8();
//! let mut predictor = SamPredictor::new(sam, device);
//! predictor.set_image(&image)?;
//! let out = predictor.predict(&Prompt::default().with_box([10.0, 20.0, 200.0, 180.0]), false)?;
//! let mask = out.best_mask();
//! # Ok::<(), pslg_sam::SamError>(())
//! ```

mod common;
mod config;
mod conv_host;
mod error;
#[cfg(feature = "train")]
pub mod finetune;
mod image_encoder;
mod kernels;
mod linear_host;
mod load;
mod mask_decoder;
mod model;
pub mod npy;
mod postprocess;
mod predictor;
mod prompt_encoder;
pub mod resize;
#[cfg(test)]
mod test_util;
mod tiny_vit;
mod tiny_vit_host;
mod transformer;
mod window_attention;

pub use common::{LayerNorm2d, MlpBlock};
pub use config::{EncoderConfig, SamConfig, TinyVitConfig, VitConfig};
pub use error::SamError;
pub use image_encoder::{ImageEncoder, ImageEncoderViT, Neck};
pub use kernels::KernelPolicy;
pub use mask_decoder::{DecoderImageCache, MaskDecoder};
pub use model::Sam;
pub use predictor::{ImageEmbedding, Prediction, Prompt, SamPredictor};
pub use prompt_encoder::PromptEncoder;
pub use tiny_vit::{
    AttentionLayer, BatchNormStats, Conv2dBn, ConvKernel, ConvLayer, MbConv, PatchMerging,
    TinyAttention, TinyMlp, TinyPatchEmbed, TinyViT, TinyVitBlock, TinyVitLayer,
};
pub use transformer::{DecoderAttention, TwoWayAttentionBlock, TwoWayTransformer};
