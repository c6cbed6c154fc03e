//! The BERT-family text encoder (BERT, MiniLM, RoBERTa) following HuggingFace `transformers`'
//! `BertModel` / `RobertaModel` (eager attention), and tokenisation through the `tokenizers` crate.

use crate::GroundingError;
use crate::config::{TextConfig, TextFamily};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use std::path::{Path, PathBuf};

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct TextEmbeddings<B: Backend> {
    /// Token embeddings.
    pub word_embeddings: Embedding<B>,
    /// Absolute position embeddings.
    pub position_embeddings: Embedding<B>,
    /// Token-type (segment) embeddings.
    pub token_type_embeddings: Embedding<B>,
    /// `LayerNorm` in the official key names.
    pub layer_norm: LayerNorm<B>,
}

/// Multi-head self-attention projections (`attention.self` in the official key names).
#[derive(Module, Debug)]
pub struct TextSelfAttention<B: Backend> {
    /// Query projection.
    pub query: Linear<B>,
    /// Key projection.
    pub key: Linear<B>,
    /// Value projection.
    pub value: Linear<B>,
}

/// A dense layer followed by a residual LayerNorm.
#[derive(Module, Debug)]
pub struct DenseNorm<B: Backend> {
    /// The projection.
    pub dense: Linear<B>,
    /// Post-residual normalisation.
    pub layer_norm: LayerNorm<B>,
}

/// Self-attention and its output projection.
#[derive(Module, Debug)]
pub struct TextAttention<B: Backend> {
    /// The projections.
    pub self_attn: TextSelfAttention<B>,
    /// Output projection + residual LayerNorm.
    pub output: DenseNorm<B>,
}

/// The feed-forward expansion.
#[derive(Module, Debug)]
pub struct Intermediate<B: Backend> {
    /// hidden → intermediate.
    pub dense: Linear<B>,
}

/// One transformer layer (post-norm).
#[derive(Module, Debug)]
pub struct TextLayer<B: Backend> {
    /// Self-attention block.
    pub attention: TextAttention<B>,
    /// Feed-forward expansion (GELU).
    pub intermediate: Intermediate<B>,
    /// Feed-forward contraction + residual LayerNorm.
    pub output: DenseNorm<B>,
}

/// The layer stack (`encoder.layer.N` in the official key names).
#[derive(Module, Debug)]
pub struct TextStack<B: Backend> {
    /// The layers.
    pub layer: Vec<TextLayer<B>>,
}

/// The pooler (`tanh(dense(h[0]))`); loaded when the checkpoint has it, unused by LQVG.
#[derive(Module, Debug)]
pub struct Pooler<B: Backend> {
    /// The projection.
    pub dense: Linear<B>,
}

/// A BERT-family encoder: [`TextEncoder::forward`] returns the last hidden states.
#[derive(Module, Debug)]
pub struct TextEncoder<B: Backend> {
    /// Embeddings.
    pub embeddings: TextEmbeddings<B>,
    /// Transformer layers.
    pub encoder: TextStack<B>,
    /// Pooler, when present in the weights.
    pub pooler: Option<Pooler<B>>,
    #[module(skip)]
    config: TextConfig,
}

fn linear<B: Backend>(i: usize, o: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(i, o).init(device)
}

impl<B: Backend> TextEncoder<B> {
    /// An encoder of `config`'s shape with placeholder weights; `pooler` adds the (unused) pooler so a
    /// checkpoint that carries it loads.
    pub fn new(config: &TextConfig, pooler: bool, device: &B::Device) -> Self {
        let h = config.hidden_size;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let layer = (0..config.num_layers)
            .map(|_| TextLayer {
                attention: TextAttention {
                    self_attn: TextSelfAttention {
                        query: linear(h, h, device),
                        key: linear(h, h, device),
                        value: linear(h, h, device),
                    },
                    output: DenseNorm {
                        dense: linear(h, h, device),
                        layer_norm: ln(),
                    },
                },
                intermediate: Intermediate {
                    dense: linear(h, config.intermediate_size, device),
                },
                output: DenseNorm {
                    dense: linear(config.intermediate_size, h, device),
                    layer_norm: ln(),
                },
            })
            .collect();
        Self {
            embeddings: TextEmbeddings {
                word_embeddings: EmbeddingConfig::new(config.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(config.max_positions, h).init(device),
                token_type_embeddings: EmbeddingConfig::new(config.type_vocab_size, h).init(device),
                layer_norm: ln(),
            },
            encoder: TextStack { layer },
            pooler: pooler.then(|| Pooler {
                dense: linear(h, h, device),
            }),
            config: config.clone(),
        }
    }

    /// The architecture.
    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// Last hidden states `(B, L, hidden)` of a padded batch.
    pub fn forward(&self, batch: &TokenBatch, device: &B::Device) -> Tensor<B, 3> {
        let (b, l) = (batch.batch, batch.len);
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                batch.ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [b, l],
            ),
            device,
        );
        let positions = batch.position_ids(self.config.family, self.config.pad_token_id);
        let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [b, l]), device);
        let types = Tensor::<B, 2, Int>::zeros([b, l], device);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(ids)
            + e.token_type_embeddings.forward(types)
            + e.position_embeddings.forward(positions);
        let mut x = e.layer_norm.forward(x);
        // Additive key mask: 0 for tokens, the most negative f32 for padding (transformers' eager path).
        let bias: Vec<f32> = batch
            .attention
            .iter()
            .map(|&a| if a { 0.0 } else { f32::MIN })
            .collect();
        let bias = Tensor::<B, 4>::from_data(TensorData::new(bias, [b, 1, 1, l]), device);
        let heads = self.config.num_heads;
        let hd = self.config.hidden_size / heads;
        let split = |t: Tensor<B, 3>| t.reshape([b, l, heads, hd]).swap_dims(1, 2);
        for layer in &self.encoder.layer {
            let a = &layer.attention.self_attn;
            let q = split(a.query.forward(x.clone()));
            let k = split(a.key.forward(x.clone()));
            let v = split(a.value.forward(x.clone()));
            let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt() + bias.clone();
            let ctx = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, l, heads * hd]);
            let o = &layer.attention.output;
            let attn = o.layer_norm.forward(o.dense.forward(ctx) + x);
            let inter = gelu(layer.intermediate.dense.forward(attn.clone()));
            let o = &layer.output;
            x = o.layer_norm.forward(o.dense.forward(inter) + attn);
        }
        x
    }
}

/// Token ids of one or more sentences padded to the longest (as the official code's
/// `batch_encode_plus(padding="longest")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major `(batch, len)` ids, padding included.
    pub ids: Vec<u32>,
    /// `true` for real tokens, `false` for padding; same layout.
    pub attention: Vec<bool>,
    /// Number of sentences.
    pub batch: usize,
    /// Padded length.
    pub len: usize,
}

impl TokenBatch {
    /// Pads `sentences` (token ids with their special tokens) with `pad_id` to the longest.
    ///
    /// # Errors
    /// [`GroundingError::Text`] for no sentence or an empty one.
    pub fn pad(sentences: &[Vec<u32>], pad_id: u32) -> Result<Self, GroundingError> {
        if sentences.is_empty() || sentences.iter().any(Vec::is_empty) {
            return Err(GroundingError::Text(
                "no tokens: give a non-empty sentence (or non-empty token ids)".into(),
            ));
        }
        let len = sentences.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(len * sentences.len());
        let mut attention = Vec::with_capacity(len * sentences.len());
        for s in sentences {
            ids.extend_from_slice(s);
            attention.extend(std::iter::repeat_n(true, s.len()));
            ids.extend(std::iter::repeat_n(pad_id, len - s.len()));
            attention.extend(std::iter::repeat_n(false, len - s.len()));
        }
        Ok(Self {
            ids,
            attention,
            batch: sentences.len(),
            len,
        })
    }

    /// Checks the ids against a text encoder's vocabulary and position table.
    ///
    /// # Errors
    /// [`GroundingError::Text`] for an id outside the vocabulary or a sentence longer than the positions.
    pub fn check(&self, config: &TextConfig) -> Result<(), GroundingError> {
        if let Some(&bad) = self.ids.iter().find(|&&i| i as usize >= config.vocab_size) {
            return Err(GroundingError::Text(format!(
                "token id {bad} is outside the text encoder's vocabulary of {}; use the tokenizer that belongs \
                 to the checkpoint",
                config.vocab_size
            )));
        }
        let offset = match config.family {
            TextFamily::Roberta => config.pad_token_id + 1,
            TextFamily::Bert => 0,
        };
        if self.len + offset > config.max_positions {
            return Err(GroundingError::Text(format!(
                "the sentence has {} tokens but the text encoder holds at most {}; shorten it",
                self.len,
                config.max_positions - offset
            )));
        }
        Ok(())
    }

    /// Position ids: `0..len` for BERT; RoBERTa's `cumsum(id ≠ pad) · (id ≠ pad) + pad`.
    pub fn position_ids(&self, family: TextFamily, pad: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.ids.len());
        for row in 0..self.batch {
            let mut count = 0i64;
            for j in 0..self.len {
                let i = row * self.len + j;
                out.push(match family {
                    TextFamily::Bert => j as i64,
                    TextFamily::Roberta => {
                        if self.ids[i] as usize != pad {
                            count += 1;
                            count + pad as i64
                        } else {
                            pad as i64
                        }
                    }
                });
            }
        }
        out
    }
}

/// A HuggingFace tokenizer read from a user-supplied `tokenizer.json`, with its own padding and truncation
/// switched off (the official code pads to the longest sentence and does not truncate).
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    ///
    /// # Errors
    /// [`GroundingError::Tokenizer`] when the file is missing or not a tokenizer.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, GroundingError> {
        let path = path.as_ref().to_path_buf();
        let mut inner =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| GroundingError::Tokenizer {
                path: path.clone(),
                reason: format!("{e} (expected a HuggingFace tokenizer.json)"),
            })?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| GroundingError::Tokenizer {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { inner, path })
    }

    /// Wraps a tokenizer built in code (e.g. a word-level vocabulary); `name` stands for its path in
    /// messages.
    pub fn from_tokenizer(mut inner: tokenizers::Tokenizer, name: &str) -> Self {
        inner.with_padding(None);
        let _ = inner.with_truncation(None);
        Self {
            inner,
            path: PathBuf::from(name),
        }
    }

    /// Writes the tokenizer as a HuggingFace `tokenizer.json`.
    ///
    /// # Errors
    /// [`GroundingError::Tokenizer`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), GroundingError> {
        self.inner
            .save(path.as_ref(), false)
            .map_err(|e| GroundingError::Tokenizer {
                path: path.as_ref().to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Token ids of `text` with the special tokens (`<s> … </s>` for RoBERTa, `[CLS] … [SEP]` for BERT).
    ///
    /// # Errors
    /// [`GroundingError::Text`] for an empty sentence; [`GroundingError::Tokenizer`] if tokenisation fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, GroundingError> {
        if text.trim().is_empty() {
            return Err(GroundingError::Text(
                "the sentence is empty: describe the object to find".into(),
            ));
        }
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| GroundingError::Tokenizer {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of the padding token, if the tokenizer names one (`<pad>` or `[PAD]`).
    pub fn pad_id(&self) -> Option<u32> {
        self.inner
            .token_to_id("<pad>")
            .or_else(|| self.inner.token_to_id("[PAD]"))
    }
}

impl<B: Backend> TextEncoder<B> {
    /// Loads a bare BERT-family checkpoint (a HuggingFace `model.safetensors` or `pytorch_model.bin`-style
    /// state dict with keys `embeddings.…`, `encoder.layer.N.…`, optionally `pooler.…`) into `config`'s
    /// architecture, checking every tensor.
    ///
    /// # Errors
    /// [`GroundingError::Checkpoint`] for an unreadable file; [`GroundingError::Config`] when `config`
    /// disagrees with the shapes; missing / unexpected / mis-shaped tensors as typed errors naming the key.
    pub fn load(
        path: impl AsRef<Path>,
        config: &TextConfig,
        device: &B::Device,
    ) -> Result<Self, GroundingError> {
        let path = path.as_ref();
        config.validate()?;
        let shapes = crate::load::read_shapes(path)?;
        config.check_shapes(&shapes.tensors, "")?;
        let pooler = shapes.tensors.contains_key("pooler.dense.weight");
        let model = Self::new(config, pooler, device);
        crate::load::check_and_load(model, path, &shapes, "a BERT-family text encoder", &|_| {
            None
        })
    }
}
