//! Tests of the LQVG port: checkpoints, parity with the official code, the MiniLM text encoder, the CUDA-free
//! ops, the dataset readers and training. One test binary with a module per area (one link of Burn instead of
//! one per file); the learning-from-scratch test keeps its own binary (`learning.rs`).

mod common;
#[path = "../../../../tests/common/state_dict.rs"]
mod state_dict;

mod checkpoints;
mod fit;
mod minilm;
mod ops;
mod parity;
mod train;
