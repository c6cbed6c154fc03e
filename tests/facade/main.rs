//! Tests of the `pslg` facade library, one test binary with a module per area (one link of Burn instead of
//! one per file).

mod dev_set;
mod pipeline;
