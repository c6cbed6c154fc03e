//! Training from scratch on a generated toy grounding set
//! (coloured shapes, sentences naming one of them) that shows a model learns to use the sentence.

use crate::GroundingError;
use crate::config::{LqvgConfig, ResNetConfig, TextConfig, TextFamily};
use crate::model::Lqvg;
use crate::text::TextTokenizer;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// Colours of the toy set: (word, RGB).
pub const TOY_COLOURS: [(&str, [u8; 3]); 4] = [
    ("red", [220, 40, 40]),
    ("green", [40, 190, 60]),
    ("blue", [50, 70, 230]),
    ("yellow", [235, 215, 40]),
];
/// Shapes of the toy set.
pub const TOY_SHAPES: [&str; 2] = ["square", "circle"];

/// One generated image, its sentence and the referred box (`xyxy`, pixels, `x2`/`y2` exclusive).
#[derive(Debug, Clone)]
pub struct ToySample {
    /// The image.
    pub image: RgbImage,
    /// "the {colour} {shape}".
    pub text: String,
    /// The referred object's box.
    pub box_xyxy: [f32; 4],
}

/// `n` images of `size`² with two or three objects of distinct colours on a noisy grey background; the
/// sentence names one of them by colour and shape, so a model that ignores the sentence finds the referred
/// object in at most about a third to a half of the images.
pub fn toy_samples(n: usize, size: usize, seed: u64) -> Vec<ToySample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut img = RgbImage::from_fn(size as u32, size as u32, |_, _| {
                let g = 110 + rng.random_range(0..30u8);
                Rgb([g, g, g])
            });
            let count = rng.random_range(2..=3usize);
            let mut colours: Vec<usize> = (0..TOY_COLOURS.len()).collect();
            let mut placed: Vec<[f32; 4]> = Vec::new();
            let mut objects = Vec::new();
            for _ in 0..count {
                let ci = colours.remove(rng.random_range(0..colours.len()));
                let shape = rng.random_range(0..TOY_SHAPES.len());
                // Up to 50 tries for a place not overlapping the others.
                for _ in 0..50 {
                    let s = rng.random_range(size / 6..=size / 3) as f32;
                    let x = rng.random_range(0.0..(size as f32 - s));
                    let y = rng.random_range(0.0..(size as f32 - s));
                    let b = [x, y, x + s, y + s];
                    let overlaps = placed.iter().any(|o| {
                        b[0] < o[2] + 2.0
                            && o[0] < b[2] + 2.0
                            && b[1] < o[3] + 2.0
                            && o[1] < b[3] + 2.0
                    });
                    if !overlaps {
                        placed.push(b);
                        objects.push((ci, shape, b));
                        break;
                    }
                }
            }
            for &(ci, shape, b) in &objects {
                let c = TOY_COLOURS[ci].1;
                let (x0, y0, x1, y1) = (b[0] as u32, b[1] as u32, b[2] as u32, b[3] as u32);
                let (cx, cy, r) = (
                    (b[0] + b[2]) / 2.0,
                    (b[1] + b[3]) / 2.0,
                    (b[2] - b[0]) / 2.0,
                );
                for y in y0..y1.min(size as u32) {
                    for x in x0..x1.min(size as u32) {
                        let inside = shape == 0
                            || ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2))
                                <= r * r;
                        if inside {
                            img.put_pixel(x, y, Rgb(c));
                        }
                    }
                }
            }
            let (ci, shape, b) = objects[rng.random_range(0..objects.len())];
            let b = [b[0].floor(), b[1].floor(), b[2].floor(), b[3].floor()];
            ToySample {
                image: img,
                text: format!("the {} {}", TOY_COLOURS[ci].0, TOY_SHAPES[shape]),
                box_xyxy: b,
            }
        })
        .collect()
}

/// A word-level tokenizer of the toy vocabulary built with the `tokenizers` crate (`[CLS] … [SEP]`).
///
/// # Errors
/// [`GroundingError::Tokenizer`] if the crate rejects the vocabulary (it does not).
pub fn toy_tokenizer() -> Result<TextTokenizer, GroundingError> {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::processors::template::TemplateProcessing;
    let err = |e: String| GroundingError::Tokenizer {
        path: "(toy tokenizer)".into(),
        reason: e,
    };
    let mut words = vec!["[PAD]", "[CLS]", "[SEP]", "[UNK]", "the"];
    words.extend(TOY_COLOURS.iter().map(|c| c.0));
    words.extend(TOY_SHAPES);
    let vocab: HashMap<String, u32> = words
        .iter()
        .enumerate()
        .map(|(i, w)| ((*w).to_string(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let post = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .map_err(|e| err(e.to_string()))?
        .special_tokens(vec![("[CLS]", 1), ("[SEP]", 2)])
        .build()
        .map_err(|e| err(e.to_string()))?;
    tok.with_post_processor(Some(post));
    Ok(TextTokenizer::from_tokenizer(tok, "(toy tokenizer)"))
}

/// A small LQVG for the toy set: narrow ResNet, 1-layer BERT-style text encoder, d 32, 1 + 2 layers,
/// 4 queries.
pub fn toy_config() -> LqvgConfig {
    LqvgConfig {
        text: TextConfig {
            family: TextFamily::Bert,
            vocab_size: 16,
            hidden_size: 32,
            num_layers: 1,
            num_heads: 2,
            intermediate_size: 64,
            max_positions: 16,
            type_vocab_size: 1,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
        },
        backbone: ResNetConfig {
            stem: 16,
            planes: [8, 16, 16, 16],
            blocks: [1, 1, 1, 1],
            expansion: 2,
        },
        hidden_dim: 32,
        heads: 4,
        enc_layers: 1,
        dec_layers: 2,
        dim_feedforward: 64,
        num_queries: 4,
        num_feature_levels: 4,
        enc_points: 2,
        dec_points: 2,
        num_classes: 1,
        with_box_refine: true,
    }
}

/// What [`train_toy`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToyRun {
    /// Held-out metrics before training.
    pub before: crate::BoxMetrics,
    /// Held-out metrics after training.
    pub after: crate::BoxMetrics,
    /// Held-out metrics of a perfect object detector that ignores the sentence (it answers with a random
    /// object of the image: right once in two or three).
    pub text_blind: crate::BoxMetrics,
    /// Loss of the first and of the last step.
    pub first_loss: f64,
    /// Loss of the last step.
    pub last_loss: f64,
}

fn toy_batch<B: Backend>(
    samples: &[ToySample],
    tok: &TextTokenizer,
    device: &B::Device,
) -> Result<(Tensor<B, 4>, crate::TokenBatch), GroundingError> {
    let images: Vec<Tensor<B, 4>> = samples
        .iter()
        .map(|s| crate::grounder::normalise::<B>(&s.image, device))
        .collect();
    let ids = samples
        .iter()
        .map(|s| tok.encode(&s.text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Tensor::cat(images, 0), crate::TokenBatch::pad(&ids, 0)?))
}

fn toy_eval<B: Backend>(
    model: &Lqvg<B>,
    samples: &[ToySample],
    tok: &TextTokenizer,
    size: usize,
    device: &B::Device,
) -> Result<crate::BoxMetrics, GroundingError> {
    let mut pairs = Vec::new();
    for chunk in samples.chunks(16) {
        let (x, tokens) = toy_batch::<B>(chunk, tok, device)?;
        let out = model.forward(x, &tokens)?;
        for (p, s) in crate::train::chosen_boxes(&out, size)
            .into_iter()
            .zip(chunk)
        {
            pairs.push((p, s.box_xyxy));
        }
    }
    Ok(crate::BoxMetrics::compute(&pairs))
}

/// Trains [`toy_config`] from scratch ([`Lqvg::init_detr`]) on `train` generated samples of `size`² for `steps`
/// steps of `batch` images, and scores 200 held-out samples before and after; `progress` sees every step.
///
/// # Errors
/// Propagates tokenisation and model errors (none occur with the toy set).
#[allow(clippy::too_many_arguments)]
pub fn train_toy<B: burn::tensor::backend::AutodiffBackend>(
    train: usize,
    size: usize,
    steps: usize,
    batch: usize,
    config: crate::TrainConfig,
    seed: u64,
    device: &B::Device,
    mut progress: impl FnMut(usize, &crate::StepStats),
) -> Result<ToyRun, GroundingError> {
    use burn::module::AutodiffModule;
    B::seed(device, seed);
    let tok = toy_tokenizer()?;
    let data = toy_samples(train, size, seed);
    let held_out = toy_samples(200, size, seed + 1);
    let model = Lqvg::<B>::new(toy_config(), false, device)?.init_detr();
    let before = toy_eval(&model.valid(), &held_out, &tok, size, &device.clone())?;
    // The text-blind reference: a random object's box of each held-out image (same generator, same seed).
    let mut rng = StdRng::seed_from_u64(seed + 2);
    let blind: Vec<([f32; 4], [f32; 4])> = held_out
        .iter()
        .map(|s| {
            // A perfect detector that ignores the sentence picks the referred object once in `count`.
            let others = count_objects(&s.image);
            let hit = rng.random_range(0..others.max(1)) == 0;
            (
                if hit {
                    s.box_xyxy
                } else {
                    [0.0, 0.0, 0.0, 0.0]
                },
                s.box_xyxy,
            )
        })
        .collect();
    let text_blind = crate::BoxMetrics::compute(&blind);
    let mut trainer = crate::Trainer::new(model, config);
    let mut rng = StdRng::seed_from_u64(seed + 3);
    let (mut first, mut last) = (f64::NAN, f64::NAN);
    for step in 0..steps {
        let picks: Vec<ToySample> = (0..batch)
            .map(|_| data[rng.random_range(0..data.len())].clone())
            .collect();
        let (x, tokens) = toy_batch::<B>(&picks, &tok, device)?;
        let targets: Vec<crate::Target> = picks
            .iter()
            .map(|s| crate::Target::from_xyxy(s.box_xyxy, size))
            .collect();
        let stats = trainer.step(x, &tokens, &targets)?;
        if step == 0 {
            first = stats.loss;
        }
        last = stats.loss;
        progress(step, &stats);
    }
    let after = toy_eval(
        &trainer.model().valid(),
        &held_out,
        &tok,
        size,
        &device.clone(),
    )?;
    Ok(ToyRun {
        before,
        after,
        text_blind,
        first_loss: first,
        last_loss: last,
    })
}

/// Number of coloured (non-grey) connected blobs in a toy image, counted by distinct object colours.
fn count_objects(image: &RgbImage) -> usize {
    TOY_COLOURS
        .iter()
        .filter(|(_, c)| image.pixels().any(|p| p.0 == *c))
        .count()
}
