//! The whole LQVG model: backbone, text encoder, multi-scale vision–language fusion, deformable
//! transformer with language queries, class and box heads; checkpoint loading.

use crate::GroundingError;
use crate::attention::VisionLanguageFusion;
use crate::backbone::ResNet;
use crate::config::{LqvgConfig, TextConfig};
use crate::load::{check_and_load, lqvg_alias, read_shapes};
use crate::position::{sine_1d, sine_2d};
use crate::text::{TextEncoder, TokenBatch};
use crate::transformer::{DeformableTransformer, Levels, Mlp, refine};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};
use std::path::Path;

/// A 1×1 (backbone stages) or 3×3 stride-2 (extra levels) convolution + GroupNorm(32) to the model width
/// (`input_proj.N.0`, `input_proj.N.1`).
#[derive(Module, Debug)]
pub struct InputProj<B: Backend> {
    /// The convolution.
    pub conv: Conv2d<B>,
    /// GroupNorm(32, d), epsilon 1e-5.
    pub norm: GroupNorm<B>,
}

impl<B: Backend> InputProj<B> {
    fn new(input: usize, d: usize, extra: bool, device: &B::Device) -> Self {
        let conv = if extra {
            Conv2dConfig::new([input, d], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        } else {
            Conv2dConfig::new([input, d], [1, 1])
        };
        Self {
            conv: conv.init(device),
            norm: GroupNormConfig::new(32, d).with_epsilon(1e-5).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.norm.forward(self.conv.forward(x))
    }
}

/// Text hidden size → model width: Linear, LayerNorm (epsilon 1e-12 in the official code), dropout.
#[derive(Module, Debug)]
pub struct FeatureResizer<B: Backend> {
    /// The projection.
    pub fc: Linear<B>,
    /// The normalisation.
    pub layer_norm: LayerNorm<B>,
}

/// `tanh(dense(h[:, 0]))`: the sentence feature from the first token (`poolout_module`).
#[derive(Module, Debug)]
pub struct Poolout<B: Backend> {
    /// The projection.
    pub dense: Linear<B>,
}

/// LQVG. Build with [`Lqvg::load`] from a checkpoint, then [`Lqvg::forward`] or the
/// [`Grounder`](crate::Grounder).
#[derive(Module, Debug)]
pub struct Lqvg<B: Backend> {
    /// ResNet body.
    pub backbone: ResNet<B>,
    /// Per-level input projections.
    pub input_proj: Vec<InputProj<B>>,
    /// Deformable transformer.
    pub transformer: DeformableTransformer<B>,
    /// Class head per decoder layer.
    pub class_embed: Vec<Linear<B>>,
    /// Box head per decoder layer.
    pub bbox_embed: Vec<Mlp<B>>,
    /// Learned query positions.
    pub query_embed: Embedding<B>,
    /// The text encoder.
    pub text_encoder: TextEncoder<B>,
    /// Text → model width.
    pub resizer: FeatureResizer<B>,
    /// Image tokens gated by the text.
    pub fusion_module: VisionLanguageFusion<B>,
    /// Text tokens gated by the image.
    pub fusion_module_text: VisionLanguageFusion<B>,
    /// Sentence pooling.
    pub poolout_module: Poolout<B>,
    #[module(skip)]
    config: LqvgConfig,
}

/// Every decoder layer's predictions for a batch.
#[derive(Debug, Clone)]
pub struct LqvgOutput<B: Backend> {
    /// Class logits per decoder layer, `(N, Q, classes)`; the last is the model's prediction.
    pub logits: Vec<Tensor<B, 3>>,
    /// Boxes per decoder layer, `(N, Q, 4)`: sigmoid (cx, cy, w, h) relative to the input image.
    pub boxes: Vec<Tensor<B, 3>>,
}

impl<B: Backend> Lqvg<B> {
    /// A model of `config`'s shape with placeholder weights.
    ///
    /// # Errors
    /// [`GroundingError::Config`] for an invalid configuration.
    pub fn new(
        config: LqvgConfig,
        text_pooler: bool,
        device: &B::Device,
    ) -> Result<Self, GroundingError> {
        config.validate()?;
        let d = config.hidden_dim;
        let bb = &config.backbone;
        let mut input_proj: Vec<InputProj<B>> = (0..3)
            .map(|s| InputProj::new(bb.out_channels(s + 1), d, false, device))
            .collect();
        for l in 3..config.num_feature_levels {
            let input = if l == 3 { bb.out_channels(3) } else { d };
            input_proj.push(InputProj::new(input, d, true, device));
        }
        let heads = config.heads;
        Ok(Self {
            backbone: ResNet::new(bb, device),
            input_proj,
            transformer: DeformableTransformer::new(
                d,
                heads,
                config.enc_layers,
                config.dec_layers,
                config.dim_feedforward,
                config.num_feature_levels,
                config.enc_points,
                config.dec_points,
                device,
            ),
            class_embed: (0..config.dec_layers)
                .map(|_| LinearConfig::new(d, config.num_classes).init(device))
                .collect(),
            bbox_embed: (0..config.dec_layers)
                .map(|_| Mlp::new(d, d, 4, 3, device))
                .collect(),
            query_embed: EmbeddingConfig::new(config.num_queries, d).init(device),
            text_encoder: TextEncoder::new(&config.text, text_pooler, device),
            resizer: FeatureResizer {
                fc: LinearConfig::new(config.text.hidden_size, d).init(device),
                layer_norm: LayerNormConfig::new(d).with_epsilon(1e-12).init(device),
            },
            fusion_module: VisionLanguageFusion::new(d, heads, device),
            fusion_module_text: VisionLanguageFusion::new(d, heads, device),
            poolout_module: Poolout {
                dense: LinearConfig::new(d, d).init(device),
            },
            config,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &LqvgConfig {
        &self.config
    }

    /// Loads an official LQVG checkpoint (`checkpoint.pth` of the official training, whose `model` entry is
    /// the state dict, a bare state dict, or a `.safetensors` export) unmodified. The architecture is
    /// inferred from the shapes ([`LqvgConfig::infer`]); the text encoder's config (epsilon, heads — not in
    /// any shape) is `text` — the `config.json` of the RoBERTa/BERT the model was trained with (the official
    /// code loads `roberta-base`: [`TextConfig::roberta_base`]); `heads` defaults to the official 8.
    ///
    /// # Errors
    /// [`GroundingError::Checkpoint`] for an unreadable file; [`GroundingError::Config`] when the shapes
    /// are not LQVG's or disagree with `text`; missing / unexpected / mis-shaped tensors as typed errors
    /// naming the key and both shapes.
    pub fn load(
        path: impl AsRef<Path>,
        text: TextConfig,
        heads: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, GroundingError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        let config = LqvgConfig::infer(&shapes.tensors, text, heads.unwrap_or(8))?;
        Self::load_checked(path, config, &shapes, device)
    }

    /// Loads a checkpoint into the given architecture, checking every tensor.
    ///
    /// # Errors
    /// As [`Lqvg::load`].
    pub fn load_with_config(
        path: impl AsRef<Path>,
        config: LqvgConfig,
        device: &B::Device,
    ) -> Result<Self, GroundingError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        Self::load_checked(path, config, &shapes, device)
    }

    fn load_checked(
        path: &Path,
        config: LqvgConfig,
        shapes: &pslg_checkpoint::Shapes,
        device: &B::Device,
    ) -> Result<Self, GroundingError> {
        let pooler = shapes
            .tensors
            .contains_key("text_encoder.pooler.dense.weight");
        let what = format!("{config:?}");
        let model = Self::new(config, pooler, device)?;
        check_and_load(model, path, shapes, &what, &lqvg_alias)
    }

    /// Runs LQVG on normalised images `(N, 3, H, W)` (no padding mask: every pixel is valid, as in the
    /// official test preprocessing) and one tokenised sentence per image.
    ///
    /// # Errors
    /// [`GroundingError::Text`] when the batch sizes differ or the tokens do not fit the text encoder.
    pub fn forward(
        &self,
        images: Tensor<B, 4>,
        tokens: &TokenBatch,
    ) -> Result<LqvgOutput<B>, GroundingError> {
        let device = images.device();
        let [n, _, _, _] = images.dims();
        if tokens.batch != n {
            return Err(GroundingError::Text(format!(
                "{} sentence(s) for {n} image(s); give one sentence per image",
                tokens.batch
            )));
        }
        tokens.check(&self.config.text)?;
        let d = self.config.hidden_dim;
        let feats = self.backbone.forward(images);

        // Text: hidden states → model width; padding mask and 1-D position embedding.
        let hidden = self.text_encoder.forward(tokens, &device);
        let text_init = self
            .resizer
            .layer_norm
            .forward(self.resizer.fc.forward(hidden));
        let pad: Vec<bool> = tokens.attention.iter().map(|&a| !a).collect();
        let text_pad = Tensor::<B, 2, Bool>::from_data(
            TensorData::new(pad, [tokens.batch, tokens.len]),
            &device,
        );
        let text_pos = sine_1d::<B>(&tokens.attention, tokens.batch, tokens.len, d, &device);
        let mut text = text_init.clone();

        let mut srcs: Vec<Tensor<B, 3>> = Vec::new();
        let mut poses = Vec::new();
        let mut shapes = Vec::new();
        let c4 = feats[2].clone();
        let mut last_map: Option<Tensor<B, 4>> = None;
        // Levels 0–2 take the backbone stages, level 3 the last stage again, later levels the previous map.
        #[allow(clippy::needless_range_loop)]
        for l in 0..self.config.num_feature_levels {
            let proj = if l < 3 {
                self.input_proj[l].forward(feats[l].clone())
            } else if l == 3 {
                self.input_proj[l].forward(c4.clone())
            } else {
                let prev = last_map.take().expect("set by the previous level");
                self.input_proj[l].forward(prev)
            };
            let [_, _, h, w] = proj.dims();
            let seq = proj.flatten::<3>(2, 3).swap_dims(1, 2);
            let pos = sine_2d::<B>(h, w, d / 2, &device).expand([n, h * w, d]);
            // Vision–language early fusion: the text is updated against this level (sequentially over the
            // levels), the level against the initial resized text.
            text = self
                .fusion_module_text
                .forward(text, seq.clone(), None, pos.clone());
            let seq = self.fusion_module.forward(
                seq,
                text_init.clone(),
                Some(text_pad.clone()),
                text_pos.clone(),
            );
            // Only a level beyond the fourth reads the previous map (as an image): skip the copy otherwise.
            if l + 1 < self.config.num_feature_levels && l + 1 > 3 {
                last_map = Some(seq.clone().swap_dims(1, 2).reshape([n, d, h, w]));
            }
            srcs.push(seq);
            poses.push(pos);
            shapes.push((h, w));
        }
        let levels = Levels { shapes };

        // Language queries: the pooled fused sentence, repeated; learned positions.
        let first = text.narrow(1, 0, 1).reshape([n, d]);
        let sentence = tanh(self.poolout_module.dense.forward(first));
        let q = self.config.num_queries;
        let tgt = sentence.reshape([n, 1, d]).expand([n, q, d]);
        let query_pos = self
            .query_embed
            .weight
            .val()
            .reshape([1, q, d])
            .expand([n, q, d]);

        let memory = self.transformer.encode(srcs, poses, &levels);
        let refine_heads = self
            .config
            .with_box_refine
            .then_some(self.bbox_embed.as_slice());
        let (hs, references) =
            self.transformer
                .decode(tgt, query_pos, memory, &levels, refine_heads);
        let mut logits = Vec::with_capacity(hs.len());
        let mut boxes = Vec::with_capacity(hs.len());
        for (lvl, h) in hs.into_iter().enumerate() {
            logits.push(self.class_embed[lvl].forward(h.clone()));
            let delta = self.bbox_embed[lvl].forward(h);
            boxes.push(refine(delta, references[lvl].clone()));
        }
        Ok(LqvgOutput { logits, boxes })
    }
}

/// Sigmoid scores `(N, Q)`: the maximum over classes of each query's class probabilities.
pub fn query_scores<B: Backend>(logits: Tensor<B, 3>) -> Tensor<B, 2> {
    let [n, q, _] = logits.dims();
    sigmoid(logits).max_dim(2).reshape([n, q])
}

impl<B: Backend> Lqvg<B> {
    /// Re-initialises what Deformable DETR / LQVG initialise specially before training from scratch: sampling
    /// offsets at zero weight with the bias pointing each head in its own direction at distances 1…P, attention
    /// weights at zero (uniform attention), class-head bias at the 0.01 prior (−4.595), box heads' last layer at
    /// zero (the first one's size bias at −2 with box refinement), zero biases of the value and output
    /// projections (official `DeformableDETR.__init__`, `MSDeformAttn._reset_parameters`): before training
    /// from scratch.
    pub fn init_detr(self) -> Self {
        let mut model = self;
        let zeros_like_2 =
            |p: &Param<Tensor<B, 2>>| Param::from_tensor(Tensor::zeros_like(&p.val()));
        let zeros_like_1 =
            |p: &Param<Tensor<B, 1>>| Param::from_tensor(Tensor::zeros_like(&p.val()));
        let cfg = model.config().clone();
        let heads = cfg.heads;
        let levels = cfg.num_feature_levels;
        let init_attn = |a: &mut crate::deform::MsDeformAttn<B>, points: usize| {
            let device = a.sampling_offsets.weight.val().device();
            a.sampling_offsets.weight = zeros_like_2(&a.sampling_offsets.weight);
            let mut bias = Vec::with_capacity(heads * levels * points * 2);
            for m in 0..heads {
                let theta = m as f32 * (2.0 * std::f32::consts::PI / heads as f32);
                let (x, y) = (theta.cos(), theta.sin());
                let norm = x.abs().max(y.abs());
                for _ in 0..levels {
                    for p in 0..points {
                        bias.push(x / norm * (p + 1) as f32);
                        bias.push(y / norm * (p + 1) as f32);
                    }
                }
            }
            let n = bias.len();
            a.sampling_offsets.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [n]),
                &device,
            )));
            a.attention_weights.weight = zeros_like_2(&a.attention_weights.weight);
            if let Some(b) = &a.attention_weights.bias {
                a.attention_weights.bias = Some(zeros_like_1(b));
            }
            for lin in [&mut a.value_proj, &mut a.output_proj] {
                if let Some(b) = &lin.bias {
                    lin.bias = Some(zeros_like_1(b));
                }
            }
        };
        for layer in &mut model.transformer.encoder.layers {
            init_attn(&mut layer.self_attn, cfg.enc_points);
        }
        for layer in &mut model.transformer.decoder.layers {
            init_attn(&mut layer.cross_attn, cfg.dec_points);
        }
        let prior = -((1.0f32 - 0.01) / 0.01).ln();
        for head in &mut model.class_embed {
            if let Some(b) = &head.bias {
                head.bias = Some(Param::from_tensor(Tensor::full(
                    b.val().dims(),
                    prior,
                    &b.val().device(),
                )));
            }
        }
        for (i, mlp) in model.bbox_embed.iter_mut().enumerate() {
            if let Some(last) = mlp.layers.last_mut() {
                last.weight = zeros_like_2(&last.weight);
                if let Some(b) = &last.bias {
                    let device = b.val().device();
                    let v = if i == 0 && cfg.with_box_refine {
                        vec![0.0, 0.0, -2.0, -2.0]
                    } else {
                        vec![0.0; 4]
                    };
                    last.bias = Some(Param::from_tensor(Tensor::from_data(
                        TensorData::new(v, [4]),
                        &device,
                    )));
                }
            }
        }
        model
    }
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use crate::{Lqvg, TokenBatch, toy_config};
    use burn::tensor::{Distribution, Tensor};

    /// Five feature levels: the fifth is projected from the fourth level's fused map (the only level that
    /// reads the previous map), and the fused host kernels agree with the tensor ops (ndarray vs its
    /// autodiff wrapper, which takes the tensor ops) on the same weights.
    #[test]
    fn a_fifth_level_reads_the_fourth_levels_map() {
        type B = burn_ndarray::NdArray<f32>;
        type A = burn::backend::Autodiff<B>;
        let device = Default::default();
        let mut config = toy_config();
        config.num_feature_levels = 5;
        let model = Lqvg::<A>::new(config, false, &device).expect("config");
        let tokens = TokenBatch::pad(&[vec![1, 5, 7, 2]], 0).expect("tokens");
        let x = Tensor::<B, 4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let ops = model
            .forward(Tensor::from_inner(x.clone()), &tokens)
            .expect("forward");
        let fused = burn::module::AutodiffModule::valid(&model)
            .forward(x, &tokens)
            .expect("forward");
        let ops = ops.boxes.last().expect("boxes").clone().inner().into_data();
        let fused = fused.boxes.last().expect("boxes").clone().into_data();
        assert_eq!(fused.shape.to_vec(), vec![1, 4, 4]);
        let (ops, fused) = (
            ops.to_vec::<f32>().expect("f32"),
            fused.to_vec::<f32>().expect("f32"),
        );
        let worst = crate::test_util::max_abs_diff(&ops, &fused);
        assert!(worst < 1e-4, "fused vs tensor ops: {worst}");
    }
}
