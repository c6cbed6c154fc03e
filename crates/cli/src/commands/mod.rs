//! One file per command: its arguments and a short function that calls the library crates.

pub(crate) mod batch;
pub(crate) mod eval;
pub(crate) mod eval_rrsis;
pub(crate) mod finetune_decoder;
pub(crate) mod ground;
pub(crate) mod sam;
pub(crate) mod segment;
pub(crate) mod train_grounding;
