//! Criterion benches of SAM's stages on the CPU (ndarray): image encoder, prompt encoder + mask decoder,
//! pre-processing (Pillow-exact resize + normalisation) and post-processing. The configuration is
//! `_build_sam(64, 2, 2, (1,))`-sized (1024-px input, the official prompt encoder and decoder) so a run takes
//! seconds; `examples/sam_speed.rs` and `scripts/compare_sam_speed.sh` time full ViT-B against PyTorch. The
//! `tiny_vit` group times MobileSAM's full-size encoder.

use burn_ndarray::NdArray;
use criterion::{Criterion, criterion_group, criterion_main};
use pslg_sam::{EncoderConfig, Prompt, Sam, SamConfig, SamPredictor, VitConfig, resize};
use std::hint::black_box;

type B = NdArray<f32>;

fn small() -> SamConfig {
    SamConfig {
        encoder: EncoderConfig::Vit(VitConfig {
            patch_size: 16,
            embed_dim: 64,
            depth: 2,
            num_heads: 2,
            mlp_dim: 256,
            window_size: 14,
            global_attn_indexes: vec![1],
        }),
        ..SamConfig::vit_b()
    }
}

fn image() -> image::RgbImage {
    image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    })
}

fn benches(c: &mut Criterion) {
    let device = Default::default();
    let sam = Sam::<B>::new(small(), &device).expect("valid config");
    let img = image();
    let mut g = c.benchmark_group("sam");
    g.sample_size(10);
    g.bench_function("preprocess_640x480", |b| {
        b.iter(|| {
            let r = resize::apply_image(black_box(&img), 1024);
            black_box(sam.preprocess(&r, &device).expect("fits"))
        })
    });
    let input = sam
        .preprocess(&resize::apply_image(&img, 1024), &device)
        .expect("fits");
    g.bench_function("image_encoder_small_1024", |b| {
        b.iter(|| black_box(sam.encode(input.clone())))
    });
    let mut p = SamPredictor::new(sam, device);
    p.set_image(&img).expect("image");
    let prompt = Prompt::default()
        .with_box([100.0, 80.0, 400.0, 300.0])
        .with_point([250.0, 190.0], 1);
    g.bench_function("predict_box_point", |b| {
        b.iter(|| black_box(p.predict(black_box(&prompt), false).expect("prompt")))
    });
    let low = p.predict(&prompt, false).expect("prompt");
    let low = burn::tensor::Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(low.low_res, [1, 1, 256, 256]),
        &Default::default(),
    );
    g.bench_function("postprocess_to_640x480", |b| {
        b.iter(|| black_box(p.model().postprocess(low.clone(), (768, 1024), (480, 640))))
    });
    g.finish();
}

/// MobileSAM's TinyViT-5M encoder (`vit_t`, placeholder weights: speed does not depend on them) at 1024 px
/// on both CPU backends; `scripts/compare_sam_speed.sh vit_t` times it against the official `mobile_sam`.
fn tiny_vit<Bk: burn::tensor::backend::Backend>(c: &mut Criterion, name: &str) {
    let device = Default::default();
    let sam = Sam::<Bk>::new(SamConfig::vit_t(), &device).expect("valid config");
    let input = sam
        .preprocess(&resize::apply_image(&image(), 1024), &device)
        .expect("fits");
    let mut g = c.benchmark_group("tiny_vit");
    g.sample_size(10);
    g.bench_function(format!("encoder_vit_t_1024_{name}"), |b| {
        b.iter(|| black_box(sam.encode(input.clone()).into_data()))
    });
    g.finish();
}

fn tiny_vit_benches(c: &mut Criterion) {
    tiny_vit::<burn_flex::Flex>(c, "flex");
    tiny_vit::<B>(c, "ndarray");
}

criterion_group!(sam_benches, benches, tiny_vit_benches);
criterion_main!(sam_benches);
