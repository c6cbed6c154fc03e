//! Criterion benches of LQVG on the CPU: the whole forward pass of the released architecture at the
//! official 800×800 input, its backbone and text encoder alone, and the deformable-attention core at the
//! encoder's size (the fused host loop that `flex` runs, and the tensor-op composition). Placeholder
//! weights (timing does not depend on their values). Backend: `flex`, the CLI's CPU backend.
//!
//! `cargo bench -p pslg-grounding --bench lqvg`

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use pslg_grounding::{
    Lqvg, LqvgConfig, TextConfig, TokenBatch, ms_deform_attn_core, ms_deform_attn_core_tensor_ops,
};
use std::hint::black_box;
use std::time::Duration;

type B = burn_flex::Flex;

fn lqvg(c: &mut Criterion) {
    let device = Default::default();
    let model = Lqvg::<B>::new(
        LqvgConfig::official(TextConfig::roberta_base()),
        true,
        &device,
    )
    .expect("official config");
    let tokens =
        TokenBatch::pad(&[vec![0, 627, 1104, 3521, 6094, 23, 5, 2576, 314, 2]], 1).expect("tokens");
    let x = Tensor::<B, 4>::random([1, 3, 800, 800], Distribution::Normal(0.0, 1.0), &device);
    let mut g = c.benchmark_group("lqvg");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.bench_function("forward_800", |b| {
        b.iter(|| {
            let out = model
                .forward(black_box(x.clone()), &tokens)
                .expect("forward");
            out.boxes.last().map(|t| t.clone().into_data())
        })
    });
    g.bench_function("backbone_800", |b| {
        b.iter(|| {
            model.backbone.forward(black_box(x.clone()))[2]
                .clone()
                .into_data()
        })
    });
    g.bench_function("text_encoder_10_tokens", |b| {
        b.iter(|| {
            model
                .text_encoder
                .forward(black_box(&tokens), &device)
                .into_data()
        })
    });
    // The encoder's sampling: 13 294 queries over 100², 50², 25², 13² levels, 8 heads × 4 levels × 4 points.
    let shapes = [(100, 100), (50, 50), (25, 25), (13, 13)];
    let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
    let value = Tensor::<B, 4>::random([1, s, 8, 32], Distribution::Normal(0.0, 1.0), &device);
    let loc = Tensor::<B, 6>::random([1, s, 8, 4, 4, 2], Distribution::Uniform(0.0, 1.0), &device);
    let w = Tensor::<B, 5>::random([1, s, 8, 4, 4], Distribution::Uniform(0.0, 0.1), &device);
    g.bench_function("deform_core_encoder_800", |b| {
        b.iter(|| {
            ms_deform_attn_core(black_box(value.clone()), &shapes, loc.clone(), w.clone())
                .into_data()
        })
    });
    g.bench_function("deform_core_encoder_800_tensor_ops", |b| {
        b.iter(|| {
            ms_deform_attn_core_tensor_ops(
                black_box(value.clone()),
                &shapes,
                loc.clone(),
                w.clone(),
            )
            .into_data()
        })
    });
    g.finish();
}

criterion_group!(benches, lqvg);
criterion_main!(benches);
