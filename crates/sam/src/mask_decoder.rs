//! The mask decoder (`segment_anything/modeling/mask_decoder.py`, `transformer.py`): a two-way transformer
//! between prompt tokens and image embedding, output upscaling, hypernetwork MLPs, IoU head.

use crate::SamConfig;
use crate::common::LayerNorm2d;
use crate::kernels::gelu;
use crate::transformer::TwoWayTransformer;
use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

/// A multi-layer perceptron with ReLU between layers (official `MLP`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// The layers.
    pub layers: Vec<Linear<B>>,
}

impl<B: Backend> Mlp<B> {
    fn new(input: usize, hidden: usize, output: usize, depth: usize, device: &B::Device) -> Self {
        let dims: Vec<usize> = std::iter::once(input)
            .chain(std::iter::repeat_n(hidden, depth - 1))
            .chain(std::iter::once(output))
            .collect();
        Self {
            layers: dims
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
        }
    }

    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// Output upscaling (official `output_upscaling.0`–`.4`): transposed conv 2×2/2, LayerNorm2d, GELU,
/// transposed conv 2×2/2, GELU.
#[derive(Module, Debug)]
pub struct OutputUpscaling<B: Backend> {
    /// `.0`.
    pub deconv1: ConvTranspose2d<B>,
    /// `.1`.
    pub ln: LayerNorm2d<B>,
    /// `.3`.
    pub deconv2: ConvTranspose2d<B>,
}

/// A 2×2, stride-2 transposed convolution on channel-last pixels: `(P, C)` → `(4·P, O)`, output pixel
/// `4p + 2a + b` being tap `(a, b)` of input pixel `p`. The kernel tiles do not overlap, so each output is one
/// dot product over C — the transposed convolution's own arithmetic — done as a single matmul with the
/// kernel reordered to `(C, 2, 2, O)`; no image-sized tensor is ever permuted.
fn deconv2x2_pixels<B: Backend>(layer: &ConvTranspose2d<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [p, c] = x.dims();
    let wt = layer.weight.val(); // (C, O, 2, 2)
    let o = wt.dims()[1];
    let kernel = wt.permute([0, 2, 3, 1]).reshape([c, 4 * o]);
    let y = x.matmul(kernel).reshape([4 * p, o]);
    match &layer.bias {
        Some(bias) => y + bias.val().reshape([1, o]),
        None => y,
    }
}

/// Channel-wise LayerNorm2d of channel-last pixels `(P, C)` (same statistics as on NCHW): the backend's fused
/// last-dimension layer norm (`eps` 1e-6 as the official `LayerNorm2d`), one pass instead of eight
/// broadcast tensor ops.
fn layer_norm_pixels<B: Backend>(ln: &LayerNorm2d<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
        x.into_primitive().tensor(),
        ln.weight.val().into_primitive().tensor(),
        Some(ln.bias.val().into_primitive().tensor()),
        1e-6,
    )))
}

/// Copies `x` into a contiguous buffer (a reshape that cannot be a view forces the copy on every backend):
/// image-token tensors are used many times per prediction, and elementwise ops on a transposed view take
/// the backends' slow strided paths.
fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    x.reshape([dims.iter().product::<usize>()]).reshape(dims)
}

/// What the mask decoder computes from the image alone, shared by every prompt without a mask input
/// ([`MaskDecoder::image_cache`]): the image tokens `(1, h·w, C)` (embedding + dense prompt embedding), their
/// position encoding, and the first block's token → image keys and values.
#[derive(Debug, Clone)]
pub struct DecoderImageCache<B: Backend> {
    keys: Tensor<B, 3>,
    key_pe: Tensor<B, 3>,
    first_kv: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    grid: (usize, usize),
}

/// Predicts masks and their IoU from an image embedding and prompt embeddings.
#[derive(Module, Debug)]
pub struct MaskDecoder<B: Backend> {
    /// Two-way transformer.
    pub transformer: TwoWayTransformer<B>,
    /// IoU token.
    pub iou_token: Embedding<B>,
    /// Mask tokens (1 + multimask outputs).
    pub mask_tokens: Embedding<B>,
    /// Output upscaling.
    pub output_upscaling: OutputUpscaling<B>,
    /// One hypernetwork MLP per mask token.
    pub output_hypernetworks_mlps: Vec<Mlp<B>>,
    /// IoU prediction head.
    pub iou_prediction_head: Mlp<B>,
}

impl<B: Backend> MaskDecoder<B> {
    /// A zero-initialised decoder of `cfg`'s shape.
    pub fn new(cfg: &SamConfig, device: &B::Device) -> Self {
        let d = cfg.prompt_dim;
        let tokens = cfg.num_multimask_outputs + 1;
        Self {
            transformer: TwoWayTransformer::new(cfg, device),
            iou_token: EmbeddingConfig::new(1, d).init(device),
            mask_tokens: EmbeddingConfig::new(tokens, d).init(device),
            output_upscaling: OutputUpscaling {
                deconv1: ConvTranspose2dConfig::new([d, d / 4], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
                ln: LayerNorm2d::new(d / 4, device),
                deconv2: ConvTranspose2dConfig::new([d / 4, d / 8], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
            },
            output_hypernetworks_mlps: (0..tokens)
                .map(|_| Mlp::new(d, d, d / 8, 3, device))
                .collect(),
            iou_prediction_head: Mlp::new(
                d,
                cfg.iou_head_hidden_dim,
                tokens,
                cfg.iou_head_depth,
                device,
            ),
        }
    }

    /// Low-resolution mask logits `(1, M, 4h, 4w)` and IoU predictions `(1, M)`; `M` = 1, or the
    /// multimask outputs when `multimask`.
    ///
    /// # Shapes
    /// * `image_embedding`, `image_pe`, `dense`: `(1, C, h, w)`.
    /// * `sparse`: `(1, N, C)`.
    pub fn forward(
        &self,
        image_embedding: Tensor<B, 4>,
        image_pe: Tensor<B, 4>,
        sparse: Tensor<B, 3>,
        dense: Tensor<B, 4>,
        multimask: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 2>) {
        let cache = self.image_cache(image_embedding, image_pe, dense);
        self.forward_cached(&cache, sparse, multimask)
    }

    /// The prompt-independent part of [`MaskDecoder::forward`] for an image embedding, its position encoding
    /// and a dense prompt embedding (the no-mask embedding for every prompt without a mask input).
    pub fn image_cache(
        &self,
        image_embedding: Tensor<B, 4>,
        image_pe: Tensor<B, 4>,
        dense: Tensor<B, 4>,
    ) -> DecoderImageCache<B> {
        let [_, c, h, w] = image_embedding.dims();
        // (1, C, h, w) → (1, h·w, C), contiguous.
        let keys = contiguous(
            (image_embedding + dense)
                .reshape([1, c, h * w])
                .swap_dims(1, 2),
        );
        let key_pe = contiguous(image_pe.reshape([1, c, h * w]).swap_dims(1, 2));
        let first_kv = self
            .transformer
            .layers
            .first()
            .map(|l| l.token_to_image_kv(keys.clone(), key_pe.clone()));
        DecoderImageCache {
            keys,
            key_pe,
            first_kv,
            grid: (h, w),
        }
    }

    /// [`MaskDecoder::forward`] from an [`MaskDecoder::image_cache`].
    pub fn forward_cached(
        &self,
        cache: &DecoderImageCache<B>,
        sparse: Tensor<B, 3>,
        multimask: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 2>) {
        let (h, w) = cache.grid;
        let c = cache.keys.dims()[2];
        let n_tokens = self.mask_tokens.weight.dims()[0];
        let output_tokens = Tensor::cat(
            vec![self.iou_token.weight.val(), self.mask_tokens.weight.val()],
            0,
        )
        .unsqueeze::<3>();
        let tokens = Tensor::cat(vec![output_tokens, sparse], 1);
        let t = &self.transformer;
        let key_pe = cache.key_pe.clone();
        let (mut queries, mut keys) = (tokens.clone(), cache.keys.clone());
        for (i, layer) in t.layers.iter().enumerate() {
            let kv = if i == 0 {
                cache.first_kv.as_ref()
            } else {
                None
            };
            (queries, keys) = layer.forward(queries, keys, tokens.clone(), key_pe.clone(), kv);
        }
        let q = queries.clone() + tokens;
        let k = keys.clone() + key_pe;
        let queries = queries + t.final_attn_token_to_image.forward(q, k, keys.clone());
        let hs = t.norm_final_attn.forward(queries);
        let iou_out: Tensor<B, 2> = hs.clone().narrow(1, 0, 1).reshape([1, c]);
        // Upscaling on channel-last pixels: `keys` already is (h·w, C); after the two 2×2 transposed convs
        // the 16 sub-pixels of each embedding cell are consecutive rows, reordered once at the end on the
        // (few) mask planes instead of on the 32-channel feature map.
        let up = &self.output_upscaling;
        let src: Tensor<B, 2> = keys.reshape([h * w, c]);
        let x = gelu(layer_norm_pixels(
            &up.ln,
            deconv2x2_pixels(&up.deconv1, src),
        ));
        let upscaled = gelu(deconv2x2_pixels(&up.deconv2, x)); // (16·h·w, c/8)
        // Only the mask tokens that are returned: the first alone, or the multimask outputs.
        let picked = if multimask { 1..n_tokens } else { 0..1 };
        let m = picked.len();
        let hyper: Vec<Tensor<B, 2>> = picked
            .map(|i| {
                let mlp = &self.output_hypernetworks_mlps[i];
                mlp.forward(hs.clone().narrow(1, 1 + i, 1).reshape([1, c]))
            })
            .collect();
        let hyper_in: Tensor<B, 2> = Tensor::cat(hyper, 0); // (M, c/8)
        // (M, 16·h·w) with columns ordered (i, j, a1, b1, a2, b2) → (1, M, 4h, 4w) at row 4i + 2a1 + a2,
        // column 4j + 2b1 + b2: one 6-d permute (ndarray's limit) of the returned planes only.
        let masks = hyper_in
            .matmul(upscaled.transpose())
            .reshape([m * h, w, 2, 2, 2, 2]) // (M·i, j, a1, b1, a2, b2)
            .permute([0, 2, 4, 1, 3, 5]) // (M·i, a1, a2, j, b1, b2)
            .reshape([1, m, 4 * h, 4 * w]);
        let iou = self.iou_prediction_head.forward(iou_out);
        let iou = if multimask {
            iou.narrow(1, 1, n_tokens - 1)
        } else {
            iou.narrow(1, 0, 1)
        };
        (masks, iou)
    }
}
