//! LQVG forward time on this CPU: the released architecture ([`LqvgConfig::official`] with roberta-base's
//! text config) with placeholder weights, one 800×800 image and a 10-token sentence; per-stage times.
//! The official PyTorch peer is `scripts/lqvg_speed_torch.py`; `scripts/compare_lqvg_speed.sh` alternates
//! the two.
//!
//! The backend is `flex`, the CLI's CPU backend; `LQVG_BACKEND=ndarray` times `burn-ndarray` instead.
//!
//! `cargo run --release -p pslg-grounding --example lqvg_speed [REPS]`

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use pslg_grounding::{Lqvg, LqvgConfig, TextConfig, TokenBatch};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;
    match std::env::var("LQVG_BACKEND").as_deref() {
        Ok("ndarray") => run::<burn_ndarray::NdArray<f32>>(reps),
        _ => run::<burn_flex::Flex>(reps),
    }
}

fn run<B: Backend>(reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let model = Lqvg::<B>::new(
        LqvgConfig::official(TextConfig::roberta_base()),
        true,
        &device,
    )?;
    let tokens = TokenBatch::pad(&[vec![0, 627, 1104, 3521, 6094, 23, 5, 2576, 314, 2]], 1)?;
    let x = Tensor::<B, 4>::random([1, 3, 800, 800], Distribution::Normal(0.0, 1.0), &device);
    let _ = model.forward(x.clone(), &tokens)?; // warm-up
    for _ in 0..reps {
        let t = Instant::now();
        let feats = model.backbone.forward(x.clone());
        let _ = feats[2].clone().into_data();
        let backbone = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = model.text_encoder.forward(&tokens, &device).into_data();
        let text = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = model.forward(x.clone(), &tokens)?;
        let _ = out.boxes.last().map(|b| b.clone().into_data());
        println!(
            "pslg lqvg forward 800x800: {:.2} s (alone: backbone {backbone:.2} s, text encoder {text:.3} s)",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
