//! Checkpoint loading time on this CPU, as the CLI loads: the file's architecture read from its shapes, the
//! model built, every tensor checked and applied (`flex` backend, mimalloc). The PyTorch peer is
//! `scripts/load_speed_torch.py` (`torch.load` of the same file); `scripts/compare_load_speed.sh` alternates
//! the two.
//!
//! `cargo run --release --example load_speed -- sam|lqvg CHECKPOINT [ROUNDS] [TEXT_CONFIG_JSON]` prints one
//! JSON line with the best and median of ROUNDS (default 3) loads. LQVG's text encoder config is the given
//! HuggingFace config.json, else roberta-base's.

use anyhow::{Context, bail};
use pslg::grounding::{Lqvg, TextConfig};
use pslg::sam::Sam;
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = burn_flex::Flex;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(path)) = (args.get(1), args.get(2)) else {
        bail!("usage: load_speed sam|lqvg CHECKPOINT [ROUNDS]");
    };
    let rounds: usize = match args.get(3) {
        Some(r) => r.parse().context("ROUNDS must be a positive integer")?,
        None => 3,
    };
    let text = match args.get(4) {
        Some(json) => TextConfig::from_hf_json(Path::new(json))?,
        None => TextConfig::roberta_base(),
    };
    let device = Default::default();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        match model.as_str() {
            "sam" => drop(Sam::<B>::load(path, None, &device)?),
            "lqvg" => drop(Lqvg::<B>::load(path, text.clone(), None, &device)?),
            other => bail!("unknown model {other:?}: give sam or lqvg"),
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mb = std::fs::metadata(path)?.len() as f64 / 1e6;
    println!(
        "{{\"side\":\"pslg\",\"model\":\"{model}\",\"file_mb\":{mb:.1},\"load_best_s\":{:.3},\"load_median_s\":{:.3}}}",
        times[0],
        times[times.len() / 2]
    );
    Ok(())
}
