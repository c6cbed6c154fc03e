//! Architectures: the text encoder (BERT / RoBERTa, from a HuggingFace `config.json`), the ResNet backbone
//! and the whole LQVG model, with inference from checkpoint shapes.

use crate::GroundingError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Which BERT-family text encoder: they differ only in how position ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextFamily {
    /// BERT (and MiniLM): position ids `0, 1, 2, …`.
    Bert,
    /// RoBERTa: position ids `cumsum(id ≠ pad) · (id ≠ pad) + pad`, so padding keeps the pad position.
    Roberta,
}

/// A BERT-family text encoder's architecture: the fields of a HuggingFace `config.json`.
///
/// Every size and epsilon comes from the model's own config; they are never assumed. Note that
/// `RobertaConfig()` (the class defaults) differs from the `roberta-base` checkpoint's config: LayerNorm
/// epsilon 1e-12 vs 1e-5, 512 vs 514 positions, 2 vs 1 token types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// BERT or RoBERTa position ids.
    pub family: TextFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Rows of the position table.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    pub pad_token_id: usize,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    pad_token_id: Option<usize>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

impl TextConfig {
    /// The `roberta-base` checkpoint's `config.json` (what the official LQVG code loads).
    pub fn roberta_base() -> Self {
        Self {
            family: TextFamily::Roberta,
            vocab_size: 50265,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            intermediate_size: 3072,
            max_positions: 514,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            pad_token_id: 1,
        }
    }

    /// Reads a HuggingFace `config.json` (`model_type` `bert` or `roberta`; MiniLM is `bert`).
    ///
    /// # Errors
    /// [`GroundingError::Io`] when unreadable, [`GroundingError::Config`] when it is not a BERT-family
    /// config this port supports (GELU activation, absolute positions).
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Self, GroundingError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GroundingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json_str(&text)
            .map_err(|e| GroundingError::Config(format!("{}: {e}", path.display())))
    }

    /// [`TextConfig::from_hf_json`] on the file's text.
    ///
    /// # Errors
    /// [`GroundingError::Config`] naming the missing field or unsupported value.
    pub fn from_hf_json_str(text: &str) -> Result<Self, GroundingError> {
        let hf: HfConfig = serde_json::from_str(text)
            .map_err(|e| GroundingError::Config(format!("not a BERT/RoBERTa config.json: {e}")))?;
        let family = match hf.model_type.as_deref() {
            Some("roberta") => TextFamily::Roberta,
            Some("bert") | None => TextFamily::Bert,
            Some(other) => {
                return Err(GroundingError::Config(format!(
                    "model_type `{other}` is not supported; use a `bert` or `roberta` text encoder"
                )));
            }
        };
        if let Some(act) = hf.hidden_act.as_deref()
            && act != "gelu"
        {
            return Err(GroundingError::Config(format!(
                "hidden_act `{act}` is not supported (BERT and RoBERTa use `gelu`)"
            )));
        }
        if let Some(pe) = hf.position_embedding_type.as_deref()
            && pe != "absolute"
        {
            return Err(GroundingError::Config(format!(
                "position_embedding_type `{pe}` is not supported (only `absolute`)"
            )));
        }
        let cfg = Self {
            family,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            max_positions: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size,
            layer_norm_eps: hf.layer_norm_eps,
            pad_token_id: hf.pad_token_id.unwrap_or(match family {
                TextFamily::Roberta => 1,
                TextFamily::Bert => 0,
            }),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the sizes are consistent.
    ///
    /// # Errors
    /// [`GroundingError::Config`] saying which value is wrong.
    pub fn validate(&self) -> Result<(), GroundingError> {
        let err = |m: String| Err(GroundingError::Config(m));
        if self.hidden_size == 0
            || self.num_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_heads)
        {
            return err(format!(
                "text hidden size {} is not a positive multiple of the {} heads",
                self.hidden_size, self.num_heads
            ));
        }
        if self.vocab_size == 0 || self.max_positions == 0 || self.type_vocab_size == 0 {
            return err("text vocabulary, position and token-type tables must be non-empty".into());
        }
        if self.pad_token_id >= self.vocab_size {
            return err(format!(
                "pad token id {} is outside the vocabulary of {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return err(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    /// Checks this config against the tensor shapes of a checkpoint whose text-encoder keys start with
    /// `prefix` (`"text_encoder."` in LQVG, `""` in a bare BERT `model.safetensors`).
    ///
    /// # Errors
    /// [`GroundingError::Config`] naming the first size that disagrees.
    pub fn check_shapes(
        &self,
        shapes: &BTreeMap<String, Vec<usize>>,
        prefix: &str,
    ) -> Result<(), GroundingError> {
        let get = |k: &str| shapes.get(&format!("{prefix}{k}"));
        let want = [
            (
                "embeddings.word_embeddings.weight",
                vec![self.vocab_size, self.hidden_size],
            ),
            (
                "embeddings.position_embeddings.weight",
                vec![self.max_positions, self.hidden_size],
            ),
            (
                "embeddings.token_type_embeddings.weight",
                vec![self.type_vocab_size, self.hidden_size],
            ),
        ];
        for (k, shape) in want {
            if let Some(found) = get(k)
                && *found != shape
            {
                return Err(GroundingError::Config(format!(
                    "text config says {prefix}{k} is {shape:?} but the checkpoint has {found:?}; pass the \
                     config.json that belongs to these weights"
                )));
            }
        }
        let layers = count_indexed(shapes, &format!("{prefix}encoder.layer."));
        if layers != self.num_layers {
            return Err(GroundingError::Config(format!(
                "text config says {} layers but the checkpoint has {layers}; pass the config.json that belongs \
                 to these weights",
                self.num_layers
            )));
        }
        Ok(())
    }
}

/// Number of consecutive `prefix{i}.` indices present among the keys.
pub(crate) fn count_indexed(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            let p = format!("{prefix}{i}.");
            shapes.keys().any(|k| k.starts_with(&p))
        })
        .count()
}

/// A torchvision-style ResNet with bottleneck blocks (ResNet-50: stem 64, planes 64/128/256/512, blocks
/// 3/4/6/3, expansion 4). Smaller widths serve the test fixtures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Channels of the 7×7 stem convolution.
    pub stem: usize,
    /// Bottleneck width of each of the four stages.
    pub planes: [usize; 4],
    /// Blocks per stage.
    pub blocks: [usize; 4],
    /// Output channels = planes × expansion.
    pub expansion: usize,
}

impl ResNetConfig {
    /// ResNet-50.
    pub fn resnet50() -> Self {
        Self {
            stem: 64,
            planes: [64, 128, 256, 512],
            blocks: [3, 4, 6, 3],
            expansion: 4,
        }
    }

    /// Output channels of stage `i` (0-based).
    pub fn out_channels(&self, i: usize) -> usize {
        self.planes[i] * self.expansion
    }
}

/// The LQVG architecture. [`LqvgConfig::official`] is the released model's; [`LqvgConfig::infer`] reads
/// everything the shapes determine from a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LqvgConfig {
    /// The text encoder.
    pub text: TextConfig,
    /// The image backbone.
    pub backbone: ResNetConfig,
    /// Transformer width `d_model` (256).
    pub hidden_dim: usize,
    /// Attention heads of the deformable attention, the decoder self-attention and the two fusion modules
    /// (8; not visible in the shapes).
    pub heads: usize,
    /// Deformable encoder layers (4).
    pub enc_layers: usize,
    /// Deformable decoder layers (4).
    pub dec_layers: usize,
    /// Feed-forward width (2048).
    pub dim_feedforward: usize,
    /// Language queries (10).
    pub num_queries: usize,
    /// Feature levels: backbone stages 2–4 plus extra stride-2 convolutions (4).
    pub num_feature_levels: usize,
    /// Sampling points per head and level in the encoder (4).
    pub enc_points: usize,
    /// Sampling points per head and level in the decoder (4).
    pub dec_points: usize,
    /// Classes of the class head (1 for the binary referring task).
    pub num_classes: usize,
    /// Iterative box refinement (the decoder updates its reference boxes layer by layer).
    pub with_box_refine: bool,
}

impl LqvgConfig {
    /// The released LQVG model (`--backbone resnet50 --num_queries 10 --with_box_refine --binary`) with the
    /// given text encoder config.
    pub fn official(text: TextConfig) -> Self {
        Self {
            text,
            backbone: ResNetConfig::resnet50(),
            hidden_dim: 256,
            heads: 8,
            enc_layers: 4,
            dec_layers: 4,
            dim_feedforward: 2048,
            num_queries: 10,
            num_feature_levels: 4,
            enc_points: 4,
            dec_points: 4,
            num_classes: 1,
            with_box_refine: true,
        }
    }

    /// Checks the sizes are consistent.
    ///
    /// # Errors
    /// [`GroundingError::Config`] saying which value is wrong.
    pub fn validate(&self) -> Result<(), GroundingError> {
        self.text.validate()?;
        let err = |m: String| Err(GroundingError::Config(m));
        if self.heads == 0 || !self.hidden_dim.is_multiple_of(self.heads) {
            return err(format!(
                "hidden_dim {} is not a multiple of the {} heads",
                self.hidden_dim, self.heads
            ));
        }
        if !self.hidden_dim.is_multiple_of(32) {
            return err(format!(
                "hidden_dim {} must be a multiple of 32 (the input projections use GroupNorm(32))",
                self.hidden_dim
            ));
        }
        if self.num_feature_levels < 3 {
            return err(format!(
                "num_feature_levels {} must be at least 3 (backbone stages 2-4)",
                self.num_feature_levels
            ));
        }
        if self.num_queries == 0 || self.dec_layers == 0 || self.num_classes == 0 {
            return err("num_queries, dec_layers and num_classes must be positive".into());
        }
        if self.enc_points == 0 || self.dec_points == 0 {
            return err("sampling points must be positive".into());
        }
        if self.backbone.planes.contains(&0)
            || self.backbone.blocks.contains(&0)
            || self.backbone.stem == 0
        {
            return err("backbone widths and block counts must be positive".into());
        }
        Ok(())
    }

    /// The architecture of an LQVG checkpoint: everything the tensor shapes determine (backbone widths and
    /// depths, `hidden_dim`, layers, feed-forward width, queries, levels, points per head × heads, classes);
    /// box refinement is assumed on (the released configuration); `heads` and the text encoder's config come
    /// from the caller (they are not in any shape) and the text config is checked against the shapes.
    ///
    /// # Errors
    /// [`GroundingError::Config`] when the shapes are not LQVG's or disagree with `text`.
    pub fn infer(
        shapes: &BTreeMap<String, Vec<usize>>,
        text: TextConfig,
        heads: usize,
    ) -> Result<Self, GroundingError> {
        let get = |k: &str| {
            shapes.get(k).ok_or_else(|| {
                GroundingError::Config(format!(
                    "the checkpoint has no `{k}`: it is not an LQVG checkpoint"
                ))
            })
        };
        text.check_shapes(shapes, "text_encoder.")?;
        let query = get("query_embed.weight")?;
        let level = get("transformer.level_embed")?;
        let (num_queries, hidden_dim) = (query[0], query[1]);
        let num_feature_levels = level[0];
        let enc_layers = count_indexed(shapes, "transformer.encoder.layers.");
        let dec_layers = count_indexed(shapes, "transformer.decoder.layers.");
        let dim_feedforward = get("transformer.decoder.layers.0.linear1.weight")?[0];
        let points = |key: &str| -> Result<usize, GroundingError> {
            let rows = get(key)?[0];
            let per = heads * num_feature_levels;
            if heads == 0 || rows % per != 0 {
                return Err(GroundingError::Config(format!(
                    "`{key}` has {rows} rows, not a multiple of {heads} heads × {num_feature_levels} levels; \
                     is the head count right?"
                )));
            }
            Ok(rows / per)
        };
        let enc_points = if enc_layers > 0 {
            points("transformer.encoder.layers.0.self_attn.attention_weights.weight")?
        } else {
            4
        };
        let dec_points =
            points("transformer.decoder.layers.0.cross_attn.attention_weights.weight")?;
        let num_classes = get("class_embed.0.weight")?[0];
        let mut planes = [0; 4];
        let mut blocks = [0; 4];
        for s in 0..4 {
            planes[s] = get(&format!("backbone.0.body.layer{}.0.conv1.weight", s + 1))?[0];
            blocks[s] = count_indexed(shapes, &format!("backbone.0.body.layer{}.", s + 1));
        }
        let stem = get("backbone.0.body.conv1.weight")?[0];
        let expansion = get("backbone.0.body.layer1.0.conv3.weight")?[0] / planes[0].max(1);
        // Shapes cannot tell whether box refinement was on (the heads have the same shapes either way); the
        // released model uses it, so does this inference. A checkpoint trained without it loads through
        // `Lqvg::load_with_config`.
        let with_box_refine = true;
        let cfg = Self {
            text,
            backbone: ResNetConfig {
                stem,
                planes,
                blocks,
                expansion,
            },
            hidden_dim,
            heads,
            enc_layers,
            dec_layers,
            dim_feedforward,
            num_queries,
            num_feature_levels,
            enc_points,
            dec_points,
            num_classes,
            with_box_refine,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
