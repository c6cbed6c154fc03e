//! The prompt encoder (`segment_anything/modeling/prompt_encoder.py`): random-Fourier position encoding of
//! points and box corners, learned point-type embeddings, mask downscaling, the no-mask embedding.

use crate::SamConfig;
use crate::common::LayerNorm2d;
use crate::kernels::gelu;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Position encoding with a random Gaussian matrix: `[sin(2π·(2c−1)·G), cos(…)]`.
#[derive(Module, Debug)]
pub struct PositionEmbeddingRandom<B: Backend> {
    /// `(2, prompt_dim / 2)`, a buffer in the official code.
    pub positional_encoding_gaussian_matrix: Param<Tensor<B, 2>>,
}

impl<B: Backend> PositionEmbeddingRandom<B> {
    /// Encodes normalised coordinates `(…, 2)` in [0, 1] (x, y) to `(…, prompt_dim)`.
    fn encode<const D: usize>(&self, coords: Tensor<B, D>) -> Tensor<B, D> {
        let g = self.positional_encoding_gaussian_matrix.val();
        let [_, f] = g.dims();
        let dims = coords.dims();
        let n: usize = dims[..D - 1].iter().product();
        let c = (coords.reshape([n, 2]) * 2.0 - 1.0).matmul(g) * (2.0 * std::f64::consts::PI);
        let out = Tensor::cat(vec![c.clone().sin(), c.cos()], 1);
        let mut shape = dims;
        shape[D - 1] = 2 * f;
        out.reshape(shape)
    }

    /// The dense encoding of an `h × w` grid of cell centres: `(1, prompt_dim, h, w)`.
    pub fn grid(&self, h: usize, w: usize, device: &B::Device) -> Tensor<B, 4> {
        let mut xy = Vec::with_capacity(h * w * 2);
        for i in 0..h {
            for j in 0..w {
                xy.push((j as f32 + 0.5) / w as f32);
                xy.push((i as f32 + 0.5) / h as f32);
            }
        }
        let coords = Tensor::<B, 1>::from_floats(xy.as_slice(), device).reshape([h, w, 2]);
        let pe = self.encode(coords); // (h, w, C)
        pe.permute([2, 0, 1]).unsqueeze::<4>()
    }

    /// Encodes pixel coordinates `(B, N, 2)` of an `image_size`-square input.
    fn with_coords(&self, coords: Tensor<B, 3>, image_size: usize) -> Tensor<B, 3> {
        self.encode(coords / image_size as f64)
    }
}

/// Mask-input downscaling (official `mask_downscaling.0`–`.6`): conv 2×2/2, LayerNorm2d, GELU, conv 2×2/2,
/// LayerNorm2d, GELU, conv 1×1.
#[derive(Module, Debug)]
pub struct MaskDownscaling<B: Backend> {
    /// `.0`.
    pub conv1: Conv2d<B>,
    /// `.1`.
    pub ln1: LayerNorm2d<B>,
    /// `.3`.
    pub conv2: Conv2d<B>,
    /// `.4`.
    pub ln2: LayerNorm2d<B>,
    /// `.6`.
    pub conv3: Conv2d<B>,
}

/// Encodes points, boxes and mask inputs into sparse and dense prompt embeddings.
#[derive(Module, Debug)]
pub struct PromptEncoder<B: Backend> {
    /// Position encoding.
    pub pe_layer: PositionEmbeddingRandom<B>,
    /// Embeddings of negative points, positive points, box top-left and box bottom-right corners.
    pub point_embeddings: Vec<Embedding<B>>,
    /// Embedding of the padding point.
    pub not_a_point_embed: Embedding<B>,
    /// Mask-input downscaling.
    pub mask_downscaling: MaskDownscaling<B>,
    /// Dense embedding when no mask is given.
    pub no_mask_embed: Embedding<B>,
    #[module(skip)]
    image_size: usize,
    #[module(skip)]
    grid: usize,
}

/// A batch-of-one prompt in the encoder input's pixel frame (already resized).
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedPrompt<B: Backend> {
    /// Points `(1, N, 2)` and labels (1 foreground, 0 background, −1 padding).
    pub points: Option<(Tensor<B, 3>, Vec<i32>)>,
    /// Box corners `(1, 4)`: x1, y1, x2, y2.
    pub boxes: Option<Tensor<B, 2>>,
    /// Low-resolution mask input `(1, 1, 4h, 4w)`.
    pub masks: Option<Tensor<B, 4>>,
}

impl<B: Backend> PromptEncoder<B> {
    /// A zero-initialised encoder of `cfg`'s shape.
    pub fn new(cfg: &SamConfig, device: &B::Device) -> Self {
        let (d, m) = (cfg.prompt_dim, cfg.mask_in_chans);
        let emb = || EmbeddingConfig::new(1, d).init(device);
        Self {
            pe_layer: PositionEmbeddingRandom {
                positional_encoding_gaussian_matrix: Param::from_tensor(Tensor::zeros(
                    [2, d / 2],
                    device,
                )),
            },
            point_embeddings: (0..4).map(|_| emb()).collect(),
            not_a_point_embed: emb(),
            mask_downscaling: MaskDownscaling {
                conv1: Conv2dConfig::new([1, m / 4], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
                ln1: LayerNorm2d::new(m / 4, device),
                conv2: Conv2dConfig::new([m / 4, m], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
                ln2: LayerNorm2d::new(m, device),
                conv3: Conv2dConfig::new([m, d], [1, 1]).init(device),
            },
            no_mask_embed: emb(),
            image_size: cfg.image_size,
            grid: cfg.grid(),
        }
    }

    /// The dense position encoding of the image embedding grid, `(1, prompt_dim, h, w)`.
    pub fn dense_pe(&self, device: &B::Device) -> Tensor<B, 4> {
        self.pe_layer.grid(self.grid, self.grid, device)
    }

    /// Sparse `(1, N, C)` and dense `(1, C, h, w)` embeddings of a prompt.
    pub(crate) fn forward(
        &self,
        prompt: &EncodedPrompt<B>,
        device: &B::Device,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let d = self.no_mask_embed.weight.dims()[1];
        let mut parts: Vec<Tensor<B, 3>> = Vec::new();
        if let Some((coords, labels)) = &prompt.points {
            let mut coords = coords.clone() + 0.5;
            let mut labels = labels.clone();
            if prompt.boxes.is_none() {
                coords = Tensor::cat(vec![coords, Tensor::zeros([1, 1, 2], device)], 1);
                labels.push(-1);
            }
            let pe = self.pe_layer.with_coords(coords, self.image_size); // (1, N, C)
            let rows: Vec<Tensor<B, 3>> = labels
                .iter()
                .enumerate()
                .map(|(i, &l)| {
                    let row = pe.clone().narrow(1, i, 1);
                    let w = |e: &Embedding<B>| e.weight.val().reshape([1, 1, d]);
                    match l {
                        -1 => w(&self.not_a_point_embed),
                        0 => row + w(&self.point_embeddings[0]),
                        1 => row + w(&self.point_embeddings[1]),
                        _ => row,
                    }
                })
                .collect();
            parts.push(Tensor::cat(rows, 1));
        }
        if let Some(b) = &prompt.boxes {
            let corners = (b.clone() + 0.5).reshape([1, 2, 2]);
            let pe = self.pe_layer.with_coords(corners, self.image_size);
            let w = |e: &Embedding<B>| e.weight.val().reshape([1, 1, d]);
            let tl = pe.clone().narrow(1, 0, 1) + w(&self.point_embeddings[2]);
            let br = pe.narrow(1, 1, 1) + w(&self.point_embeddings[3]);
            parts.push(Tensor::cat(vec![tl, br], 1));
        }
        let sparse = if parts.is_empty() {
            Tensor::zeros([1, 0, d], device)
        } else {
            Tensor::cat(parts, 1)
        };
        let dense = match &prompt.masks {
            None => self.no_mask_dense(),
            Some(m) => {
                let md = &self.mask_downscaling;
                let x = gelu(md.ln1.forward(md.conv1.forward(m.clone())));
                let x = gelu(md.ln2.forward(md.conv2.forward(x)));
                md.conv3.forward(x)
            }
        };
        (sparse, dense)
    }

    /// The dense embedding of a prompt without a mask input: `no_mask_embed` on every cell, `(1, C, h, w)`.
    pub(crate) fn no_mask_dense(&self) -> Tensor<B, 4> {
        let d = self.no_mask_embed.weight.dims()[1];
        self.no_mask_embed
            .weight
            .val()
            .reshape([1, d, 1, 1])
            .expand([1, d, self.grid, self.grid])
    }
}
