//! The deformable transformer of LQVG (Deformable DETR's, with language queries): encoder over the fused
//! multi-scale features, decoder whose queries are the pooled sentence, with iterative box refinement.

use crate::attention::TorchMultiheadAttention;
use crate::deform::{MsDeformAttn, ReferencePoints};
use crate::ffn_host::feed_forward;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Transformer LayerNorm epsilon (PyTorch's default, as the official code uses).
const LN_EPS: f64 = 1e-5;

fn ln<B: Backend>(d: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(d).with_epsilon(LN_EPS).init(device)
}

/// Encoder layer: deformable self-attention → norm1, FFN (ReLU) → norm2 (post-norm).
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Deformable self-attention.
    pub self_attn: MsDeformAttn<B>,
    /// Norm after attention.
    pub norm1: LayerNorm<B>,
    /// FFN expansion.
    pub linear1: Linear<B>,
    /// FFN contraction.
    pub linear2: Linear<B>,
    /// Norm after the FFN.
    pub norm2: LayerNorm<B>,
}

/// Decoder layer: self-attention → norm2, deformable cross-attention → norm1, FFN → norm3.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Deformable cross-attention to the encoder memory.
    pub cross_attn: MsDeformAttn<B>,
    /// Norm after cross-attention.
    pub norm1: LayerNorm<B>,
    /// Query self-attention.
    pub self_attn: TorchMultiheadAttention<B>,
    /// Norm after self-attention.
    pub norm2: LayerNorm<B>,
    /// FFN expansion.
    pub linear1: Linear<B>,
    /// FFN contraction.
    pub linear2: Linear<B>,
    /// Norm after the FFN.
    pub norm3: LayerNorm<B>,
}

/// The encoder layers.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// Layers.
    pub layers: Vec<EncoderLayer<B>>,
}

/// The decoder layers.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    /// Layers.
    pub layers: Vec<DecoderLayer<B>>,
}

/// The deformable transformer (`transformer.*`).
#[derive(Module, Debug)]
pub struct DeformableTransformer<B: Backend> {
    /// Encoder.
    pub encoder: Encoder<B>,
    /// Decoder.
    pub decoder: Decoder<B>,
    /// A learned embedding per feature level, added to the position embedding.
    pub level_embed: Param<Tensor<B, 2>>,
    /// Query position → initial reference point (sigmoid).
    pub reference_points: Linear<B>,
}

/// The 3-layer box MLP (ReLU between layers), `bbox_embed.N.layers.K`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Layers.
    pub layers: Vec<Linear<B>>,
}

impl<B: Backend> Mlp<B> {
    /// `input → hidden → … → output` with `num_layers` linear layers.
    pub fn new(
        input: usize,
        hidden: usize,
        output: usize,
        num_layers: usize,
        device: &B::Device,
    ) -> Self {
        let layers = (0..num_layers)
            .map(|i| {
                let a = if i == 0 { input } else { hidden };
                let b = if i + 1 == num_layers { output } else { hidden };
                LinearConfig::new(a, b).init(device)
            })
            .collect();
        Self { layers }
    }

    /// Applies the layers.
    pub fn forward<const D: usize>(&self, mut x: Tensor<B, D>) -> Tensor<B, D> {
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// `log(x / (1 − x))` with `x` clamped to `[0, 1]` and both terms to at least 1e-5 (the official
/// `inverse_sigmoid`).
pub fn inverse_sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let eps = 1e-5;
    let x = x.clamp(0.0, 1.0);
    let x1 = x.clone().clamp_min(eps);
    let x2 = (x.neg() + 1.0).clamp_min(eps);
    (x1 / x2).log()
}

/// The geometry of the flattened multi-scale input.
#[derive(Debug, Clone)]
pub struct Levels {
    /// `(H, W)` per level.
    pub shapes: Vec<(usize, usize)>,
}

impl Levels {
    /// The encoder's reference points: pixel centres `((j + 0.5)/W, (i + 0.5)/H)` of every position of every
    /// level, the same for each level it samples (no padding, valid ratios 1): `(N, S, L, 2)`.
    fn encoder_reference<B: Backend>(&self, n: usize, device: &B::Device) -> Tensor<B, 4> {
        let l = self.shapes.len();
        let mut v = Vec::new();
        for &(h, w) in &self.shapes {
            // torch.linspace(0.5, H − 0.5, H) / H, in f32.
            for i in 0..h {
                for j in 0..w {
                    v.push((j as f32 + 0.5) / w as f32);
                    v.push((i as f32 + 0.5) / h as f32);
                }
            }
        }
        let s = v.len() / 2;
        Tensor::<B, 3>::from_data(TensorData::new(v, [1, s, 2]), device)
            .reshape([1, s, 1, 2])
            .expand([n, s, l, 2])
    }
}

impl<B: Backend> DeformableTransformer<B> {
    /// A transformer with placeholder weights.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: usize,
        heads: usize,
        enc_layers: usize,
        dec_layers: usize,
        ffn: usize,
        levels: usize,
        enc_points: usize,
        dec_points: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            encoder: Encoder {
                layers: (0..enc_layers)
                    .map(|_| EncoderLayer {
                        self_attn: MsDeformAttn::new(d, levels, heads, enc_points, device),
                        norm1: ln(d, device),
                        linear1: LinearConfig::new(d, ffn).init(device),
                        linear2: LinearConfig::new(ffn, d).init(device),
                        norm2: ln(d, device),
                    })
                    .collect(),
            },
            decoder: Decoder {
                layers: (0..dec_layers)
                    .map(|_| DecoderLayer {
                        cross_attn: MsDeformAttn::new(d, levels, heads, dec_points, device),
                        norm1: ln(d, device),
                        self_attn: TorchMultiheadAttention::new(d, heads, device),
                        norm2: ln(d, device),
                        linear1: LinearConfig::new(d, ffn).init(device),
                        linear2: LinearConfig::new(ffn, d).init(device),
                        norm3: ln(d, device),
                    })
                    .collect(),
            },
            level_embed: Param::from_tensor(Tensor::zeros([levels, d], device)),
            reference_points: LinearConfig::new(d, 2).init(device),
        }
    }

    /// Runs the encoder over `srcs` / `poses` (one `(N, H·W, C)` per level) and returns the memory
    /// `(N, S, C)`.
    pub fn encode(
        &self,
        srcs: Vec<Tensor<B, 3>>,
        poses: Vec<Tensor<B, 3>>,
        levels: &Levels,
    ) -> Tensor<B, 3> {
        let n = srcs[0].dims()[0];
        let device = srcs[0].device();
        let d = srcs[0].dims()[2];
        let pos: Vec<Tensor<B, 3>> = poses
            .into_iter()
            .enumerate()
            .map(|(l, p)| p + self.level_embed.val().narrow(0, l, 1).reshape([1, 1, d]))
            .collect();
        let pos = Tensor::cat(pos, 1);
        let mut x = Tensor::cat(srcs, 1);
        let reference = ReferencePoints::Points(levels.encoder_reference(n, &device));
        for layer in &self.encoder.layers {
            let a = layer.self_attn.forward(
                x.clone() + pos.clone(),
                &reference,
                x.clone(),
                &levels.shapes,
            );
            x = layer.norm1.forward(x + a);
            let f = feed_forward(x.clone(), &layer.linear1, &layer.linear2);
            x = layer.norm2.forward(x + f);
        }
        x
    }

    /// Runs the decoder: `tgt (N, Q, C)` queries with position `query_pos (N, Q, C)` over `memory`.
    /// With `bbox_embed` (box refinement) each layer's box head refines the reference boxes. Returns every
    /// layer's output and the reference points each layer's predictions are relative to: the initial ones,
    /// then those after each layer.
    pub fn decode(
        &self,
        tgt: Tensor<B, 3>,
        query_pos: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        levels: &Levels,
        bbox_embed: Option<&[Mlp<B>]>,
    ) -> (Vec<Tensor<B, 3>>, Vec<Tensor<B, 3>>) {
        let l = levels.shapes.len();
        let mut reference = sigmoid(self.reference_points.forward(query_pos.clone()));
        let mut references = vec![reference.clone()];
        let mut hs = Vec::new();
        let mut out = tgt;
        for (lid, layer) in self.decoder.layers.iter().enumerate() {
            let [n, q, k] = reference.dims();
            let expanded = reference.clone().reshape([n, q, 1, k]).expand([n, q, l, k]);
            let refs = if k == 4 {
                ReferencePoints::Boxes(expanded)
            } else {
                ReferencePoints::Points(expanded)
            };
            let qk = out.clone() + query_pos.clone();
            let a = layer.self_attn.forward(qk.clone(), qk, out.clone(), None);
            out = layer.norm2.forward(out + a);
            let c = layer.cross_attn.forward(
                out.clone() + query_pos.clone(),
                &refs,
                memory.clone(),
                &levels.shapes,
            );
            out = layer.norm1.forward(out + c);
            let f = feed_forward(out.clone(), &layer.linear1, &layer.linear2);
            out = layer.norm3.forward(out + f);
            if let Some(heads) = bbox_embed {
                let tmp = heads[lid].forward(out.clone());
                reference = refine(tmp, reference);
            }
            hs.push(out.clone());
            references.push(reference.clone());
        }
        (hs, references)
    }
}

/// `sigmoid(delta + inverse_sigmoid(reference))` on the coordinates the reference has (2 or 4); the others
/// come from `delta` alone.
pub fn refine<B: Backend>(delta: Tensor<B, 3>, reference: Tensor<B, 3>) -> Tensor<B, 3> {
    let k = reference.dims()[2];
    if k == 4 {
        sigmoid(delta + inverse_sigmoid(reference))
    } else {
        let xy = delta.clone().narrow(2, 0, 2) + inverse_sigmoid(reference);
        let wh = delta.narrow(2, 2, 2);
        sigmoid(Tensor::cat(vec![xy, wh], 2))
    }
}
