//! Visual grounding for PSLG-SAM: LQVG (language queries for visual grounding) in
//! [Burn](https://burn.dev) — an image and a referring sentence in, a bounding box out.
//!
//! * [`TextEncoder`] + [`TextTokenizer`]: BERT-family text encoders (RoBERTa as in the official code,
//!   BERT/MiniLM as the paper names) from HuggingFace weights and `tokenizer.json`, sizes and epsilons read
//!   from the model's `config.json` ([`TextConfig`]).
//!
//! The port follows the official LQVG code (LANMNG/LQVG), which builds on Deformable DETR and ReferFormer,
//! module by module; see `NOTICES.md` and `docs/grounding.md`.

mod config;
mod error;
mod load;
mod text;

pub use config::{LqvgConfig, ResNetConfig, TextConfig, TextFamily};
pub use error::GroundingError;
pub use text::{
    DenseNorm, Intermediate, Pooler, TextAttention, TextEmbeddings, TextEncoder, TextLayer,
    TextSelfAttention, TextStack, TextTokenizer, TokenBatch,
};
