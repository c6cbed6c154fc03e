//! End-to-end tests of the `pslg` binary, one test binary with a module per area (one link of Burn instead
//! of one per file).

#[path = "../../../../tests/common/mod.rs"]
mod common;

mod cli;
mod eval_rrsis;
mod finetune;
mod geospatial;
mod mobile_sam;
mod scale_out;
mod slurm;
