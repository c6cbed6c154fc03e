//! Times SAM on the CPU (`flex` backend; `SAM_BACKEND=ndarray` for the other one): image encoder, prompt encoder + mask decoder, post-processing.
//!
//! ```sh
//! cargo run --release -p pslg-sam --example sam_speed -- [vit_b|vit_l|vit_h|vit_t|CHECKPOINT.pth] [ROUNDS]
//! ```
//! Without a checkpoint the named variant runs with placeholder weights (speed does not depend on them).
//! Prints one JSON line with the best and median times and, for the ViT, the encoder's achieved GFLOP/s.

use burn::tensor::backend::Backend;
use pslg_sam::{ImageEncoder, Prompt, Sam, SamConfig, SamPredictor, VitConfig};
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Multiply-adds ×2 of the ViT encoder's matmuls and convolutions at its input size.
fn encoder_flops(sam: &SamConfig, c: &VitConfig) -> f64 {
    let g = sam.grid() as f64;
    let (e, n) = (c.embed_dim as f64, g * g);
    let patch = 2.0 * n * e * 3.0 * (c.patch_size * c.patch_size) as f64;
    let mut blocks = 0.0;
    for i in 0..c.depth {
        let win = if c.global_attn_indexes.contains(&i) {
            n
        } else {
            (c.window_size * c.window_size) as f64
        };
        let windows = if c.global_attn_indexes.contains(&i) {
            1.0
        } else {
            (g / c.window_size as f64).ceil().powi(2)
        };
        let tokens = windows * win;
        let qkv_proj = 2.0 * tokens * e * 4.0 * e;
        let attn = 2.0 * 2.0 * windows * win * win * e;
        let mlp = 2.0 * 2.0 * tokens * e * c.mlp_dim as f64;
        blocks += qkv_proj + attn + mlp;
    }
    let p = sam.prompt_dim as f64;
    let neck = 2.0 * n * e * p + 2.0 * n * p * p * 9.0;
    patch + blocks + neck
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("SAM_BACKEND").as_deref() {
        Ok("ndarray") => run::<burn_ndarray::NdArray<f32>>(),
        _ => run::<burn_flex::Flex>(),
    }
}

fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("vit_b", String::as_str);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let device = Default::default();
    let sam = match SamConfig::variant(what) {
        Ok(cfg) => Sam::<B>::new(cfg, &device)?,
        Err(_) => Sam::<B>::load(what, None, &device)?,
    };
    let cfg = sam.config().clone();
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    if let (true, ImageEncoder::Vit(vit)) = (
        std::env::var("SAM_SPEED_BLOCKS").is_ok(),
        &sam.image_encoder,
    ) {
        // One windowed and one global block on a (1, grid, grid, embed) input.
        let g = cfg.grid();
        let embed = vit.pos_embed.dims()[3];
        let x = burn::tensor::Tensor::<B, 4>::random(
            [1, g, g, embed],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        for (i, blk) in vit.blocks.iter().enumerate().take(3) {
            let t = Instant::now();
            let y = blk.forward(x.clone());
            let _ = y.into_data();
            eprintln!("block {i}: {:?}", t.elapsed());
        }
        let t = Instant::now();
        let y = vit.patch_embed.forward(burn::tensor::Tensor::<B, 4>::zeros(
            [1, 3, cfg.image_size, cfg.image_size],
            &device,
        ));
        let _ = y.into_data();
        eprintln!("patch embed: {:?}", t.elapsed());
        return Ok(());
    }
    if let (true, ImageEncoder::TinyVit(tiny)) = (
        std::env::var("SAM_SPEED_BLOCKS").is_ok(),
        &sam.image_encoder,
    ) {
        // TinyViT stage by stage on a zero input, through the same path as `forward` (host kernels on
        // the CPU backends), timed between the encoder's progress calls.
        let x =
            burn::tensor::Tensor::<B, 4>::zeros([1, 3, cfg.image_size, cfg.image_size], &device);
        let mut t = Instant::now();
        let y = tiny.forward_with_progress(x, |stage| {
            eprintln!("{stage}: {:?}", t.elapsed());
            t = Instant::now();
        });
        let _ = y.into_data();
        return Ok(());
    }
    let mut p = SamPredictor::new(sam, device);
    let prompt = Prompt::default()
        .with_box([100.0, 80.0, 400.0, 300.0])
        .with_point([250.0, 190.0], 1);
    if let Ok(n) = std::env::var("SAM_SPEED_PREDICT_ONLY") {
        // Prompts only, on a synthetic embedding (for profiling the decoder): N predictions, then the
        // post-processing alone.
        let g = cfg.grid();
        let shape = [1, cfg.prompt_dim, g, g];
        let values = (0..shape.iter().product::<usize>())
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        p.set_embedding(&pslg_sam::ImageEmbedding {
            values,
            shape,
            original_size: (480, 640),
            input_size: (cfg.image_size * 3 / 4, cfg.image_size),
        })?;
        let mut dec = Vec::new();
        for _ in 0..n.parse::<usize>().unwrap_or(100) {
            let t = Instant::now();
            std::hint::black_box(p.predict(&prompt, false)?);
            dec.push(t.elapsed().as_secs_f64());
        }
        dec.sort_by(f64::total_cmp);
        // Post-processing of one 256² mask to 640×480 alone: the backend's path and the dense products.
        let low = burn::tensor::Tensor::<B, 4>::random(
            [1, 1, 4 * g, 4 * g],
            burn::tensor::Distribution::Normal(0.0, 4.0),
            &Default::default(),
        );
        let input = (cfg.image_size * 3 / 4, cfg.image_size);
        let mut best = [f64::INFINITY; 2];
        for _ in 0..20 {
            for (k, b) in best.iter_mut().enumerate() {
                let t = Instant::now();
                let up = if k == 0 {
                    p.model().postprocess(low.clone(), input, (480, 640))
                } else {
                    p.model()
                        .postprocess_products(low.clone(), input, (480, 640))
                };
                std::hint::black_box(up.into_data());
                *b = b.min(t.elapsed().as_secs_f64());
            }
        }
        println!(
            "{{\"predict_best_ms\":{:.2},\"predict_median_ms\":{:.2},\"postprocess_best_ms\":{:.3},\"postprocess_products_best_ms\":{:.3}}}",
            dec[0] * 1e3,
            dec[dec.len() / 2] * 1e3,
            best[0] * 1e3,
            best[1] * 1e3
        );
        return Ok(());
    }
    let mut enc = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        p.set_image(&image)?;
        enc.push(t.elapsed().as_secs_f64());
    }
    let mut dec = Vec::new();
    for _ in 0..(rounds * 10) {
        let t = Instant::now();
        let out = p.predict(&prompt, false)?;
        std::hint::black_box(out);
        dec.push(t.elapsed().as_secs_f64());
    }
    // Where a prediction's time goes (one run each).
    if std::env::var("SAM_SPEED_DETAIL").is_ok() {
        let t = Instant::now();
        let (sparse, dense) = p.prompt_embeddings(&prompt)?;
        let t_prompt = t.elapsed();
        let emb = p.embedding()?;
        let m = p.model();
        let e = burn::tensor::Tensor::<B, 4>::from_data(
            burn::tensor::TensorData::new(emb.values.clone(), emb.shape),
            &Default::default(),
        );
        let t = Instant::now();
        let pe = m.prompt_encoder.dense_pe(&Default::default());
        let t_pe = t.elapsed();
        let t = Instant::now();
        let (low, _) = m.mask_decoder.forward(e, pe, sparse, dense, false);
        let _ = low.clone().into_data();
        let t_dec = t.elapsed();
        let t = Instant::now();
        let up = m.postprocess(low, emb.input_size, emb.original_size);
        let _ = up.into_data();
        let t_post = t.elapsed();
        eprintln!("prompt {t_prompt:?} dense_pe {t_pe:?} decoder {t_dec:?} postprocess {t_post:?}");
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (eb, em) = stats(&mut enc);
    let (db, dm) = stats(&mut dec);
    let flops = match cfg.encoder.vit() {
        Some(v) => {
            let f = encoder_flops(&cfg, v) / 1e9;
            format!(
                "\"encoder_gflop\":{f:.1},\"encoder_gflops_per_s\":{:.1}",
                f / eb
            )
        }
        None => "\"encoder_gflop\":null,\"encoder_gflops_per_s\":null".into(),
    };
    println!(
        "{{\"backend\":\"{}\",\"model\":\"{what}\",\"encoder\":\"{}\",\"threads\":{},\"encoder_best_s\":{eb:.3},\"encoder_median_s\":{em:.3},{flops},\"predict_best_ms\":{:.2},\"predict_median_ms\":{:.2}}}",
        B::name(&Default::default()),
        cfg.encoder.family(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        db * 1e3,
        dm * 1e3
    );
    Ok(())
}
