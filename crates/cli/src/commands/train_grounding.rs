//! `pslg train-grounding`: LQVG trained or fine-tuned on a DIOR-RSVG-layout folder; one JSON line per
//! epoch, `OUT/last` and `OUT/best`.

use crate::flags::resolve_text_config;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `pslg train-grounding`.
#[derive(Args)]
pub(crate) struct TrainGroundingArgs {
    /// Dataset root: Annotations/*.xml, JPEGImages/, and the split files (one object index per line).
    #[arg(long)]
    pub(crate) root: PathBuf,
    /// Training split file, relative to --root.
    #[arg(long, default_value = "train.txt")]
    pub(crate) split: PathBuf,
    /// Validation split file, relative to --root (scored after every epoch).
    #[arg(long, default_value = "val.txt")]
    pub(crate) val_split: PathBuf,
    /// XML enumeration order behind the split indices: `sorted`, `directory`, or a file listing the XML
    /// names (see docs/grounding.md).
    #[arg(long, default_value = "sorted")]
    pub(crate) xml_order: String,
    /// HuggingFace tokenizer.json of the text encoder.
    #[arg(long)]
    pub(crate) tokenizer: PathBuf,
    /// Text encoder config.json (default: next to --tokenizer, else roberta-base's).
    #[arg(long)]
    pub(crate) text_config: Option<PathBuf>,
    /// Start from an LQVG checkpoint (official checkpoint.pth or a model.safetensors this command wrote).
    #[arg(long, conflicts_with_all = ["resume", "model_config"])]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Start from scratch with this architecture (an LqvgConfig JSON, as in state.json's "model").
    #[arg(long, conflicts_with = "resume")]
    pub(crate) model_config: Option<PathBuf>,
    /// Resume a run from the checkpoint folder this command wrote (`OUT/last`).
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// Output folder: `last/` after every epoch, `best/` at the best validation Pr@0.5.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Epochs to reach (counting those of a resumed run).
    #[arg(long, default_value_t = 70)]
    pub(crate) epochs: usize,
    /// Images per step (official: 2).
    #[arg(long, default_value_t = 2)]
    pub(crate) batch_size: usize,
    /// Main learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub(crate) lr: f64,
    /// Backbone learning rate (0 freezes it).
    #[arg(long, default_value_t = 5e-5)]
    pub(crate) lr_backbone: f64,
    /// Text-encoder learning rate (0 freezes it, as the released model).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) lr_text: f64,
    /// Epochs after which the learning rates drop ×0.1 (comma-separated).
    #[arg(long, default_value = "40")]
    pub(crate) lr_drop: String,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup_steps: usize,
    /// Global gradient-norm clipping (0: off).
    #[arg(long, default_value_t = 0.1)]
    pub(crate) clip_max_norm: f64,
    /// Also train the ResNet stem and stage 1 (needed from scratch; the official code freezes them).
    #[arg(long)]
    pub(crate) train_backbone_stem: bool,
    /// Side of the square letterboxed input.
    #[arg(long, default_value_t = pslg::grounding::INPUT_SIZE)]
    pub(crate) input_size: usize,
    /// Attention heads (not in the checkpoint's shapes).
    #[arg(long, default_value_t = 8)]
    pub(crate) heads: usize,
    /// Shuffling seed.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Train on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    pub(crate) cuda: bool,
}

pub(crate) struct Prepared {
    image: image::RgbImage,
    ids: Vec<u32>,
    box_input: [f32; 4],
}

/// The letterboxed samples of one split.
pub(crate) fn prepare_split(
    ds: &pslg::grounding::DiorRsvg,
    split: &Path,
    tok: &pslg::grounding::TextTokenizer,
    size: usize,
) -> Result<Vec<Prepared>> {
    use pslg::grounding::{letterbox, normalise_caption};
    let samples = ds.split(split)?;
    if samples.is_empty() {
        bail!("{}: the split selects no object", split.display());
    }
    let mut cache: BTreeMap<PathBuf, (image::RgbImage, pslg::grounding::Letterbox)> =
        BTreeMap::new();
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        if !cache.contains_key(&s.image) {
            let img = image::open(&s.image)
                .with_context(|| format!("reading {}", s.image.display()))?
                .to_rgb8();
            cache.insert(s.image.clone(), letterbox(&img, size)?);
        }
        let (boxed, lb) = &cache[&s.image];
        out.push(Prepared {
            image: boxed.clone(),
            ids: tok.encode(&normalise_caption(&s.text))?,
            box_input: lb.apply(s.box_xyxy),
        });
    }
    Ok(out)
}

/// A batch of prepared samples as the model's image tensor and padded tokens.
pub(crate) fn prepared_batch<B: burn::tensor::backend::Backend>(
    items: &[&Prepared],
    pad: u32,
    device: &B::Device,
) -> Result<(burn::tensor::Tensor<B, 4>, pslg::grounding::TokenBatch)> {
    let images: Vec<_> = items
        .iter()
        .map(|p| pslg::grounding::normalise::<B>(&p.image, device))
        .collect();
    let ids: Vec<Vec<u32>> = items.iter().map(|p| p.ids.clone()).collect();
    Ok((
        burn::tensor::Tensor::cat(images, 0),
        pslg::grounding::TokenBatch::pad(&ids, pad)?,
    ))
}

/// Runs `pslg train-grounding` on the autodiff backend `B`.
pub(crate) fn run_on<B: burn::tensor::backend::AutodiffBackend>(
    a: &TrainGroundingArgs,
    device: B::Device,
) -> Result<()> {
    use burn::module::AutodiffModule;
    use pslg::grounding::{
        BoxMetrics, DiorRsvg, Lqvg, LqvgConfig, Target, TextTokenizer, TrainConfig, Trainer,
        XmlOrder, chosen_boxes, init_detr,
    };
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    if a.batch_size == 0 || a.input_size == 0 {
        bail!("--batch-size and --input-size must be positive");
    }
    let text_config = resolve_text_config(a.text_config.as_deref(), Some(&a.tokenizer))?;
    let tok = TextTokenizer::from_file(&a.tokenizer)?;
    let order = match a.xml_order.as_str() {
        "sorted" => XmlOrder::Sorted,
        "directory" => XmlOrder::Directory,
        file => XmlOrder::List(PathBuf::from(file)),
    };
    let ds = DiorRsvg::open(&a.root, &order)?;
    let train = prepare_split(&ds, &a.root.join(&a.split), &tok, a.input_size)?;
    let val = prepare_split(&ds, &a.root.join(&a.val_split), &tok, a.input_size)?;
    let lr_drop = a
        .lr_drop
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--lr-drop {:?} is not a list of epochs", a.lr_drop))?;
    let config = TrainConfig {
        lr: a.lr,
        lr_backbone: a.lr_backbone,
        lr_text: a.lr_text,
        clip_max_norm: a.clip_max_norm,
        warmup_steps: a.warmup_steps,
        lr_drop,
        train_backbone_stem: a.train_backbone_stem,
        ..TrainConfig::default()
    };
    let mut trainer = match (&a.resume, &a.checkpoint, &a.model_config) {
        (Some(dir), _, _) => Trainer::<B>::resume(dir, &device)?,
        (None, Some(ckpt), _) => Trainer::new(
            Lqvg::<B>::load(ckpt, text_config, Some(a.heads), &device)?,
            config,
        ),
        (None, None, Some(cfg)) => {
            let text = std::fs::read_to_string(cfg)
                .with_context(|| format!("reading {}", cfg.display()))?;
            let model_config: LqvgConfig = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an LQVG config JSON", cfg.display()))?;
            Trainer::new(
                init_detr(Lqvg::<B>::new(model_config, false, &device)?),
                config,
            )
        }
        (None, None, None) => {
            bail!("give --checkpoint (fine-tune), --model-config (from scratch) or --resume")
        }
    };
    let pad = trainer.model().config().text.pad_token_id as u32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed.wrapping_add(trainer.epoch as u64));
    let mut best = -1.0f64;
    eprintln!(
        "train-grounding: {} training and {} validation expressions, input {}², batch {}",
        train.len(),
        val.len(),
        a.input_size,
        a.batch_size
    );
    while trainer.epoch < a.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let steps = order.len().div_ceil(a.batch_size);
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(ProgressStyle::with_template(
            "epoch {msg} {bar:40} {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
        )?);
        bar.set_message(format!("{}", trainer.epoch + 1));
        let t0 = Instant::now();
        let mut loss_sum = 0.0;
        for chunk in order.chunks(a.batch_size) {
            let items: Vec<&Prepared> = chunk.iter().map(|&i| &train[i]).collect();
            let (x, tokens) = prepared_batch::<B>(&items, pad, &device)?;
            let targets: Vec<Target> = items
                .iter()
                .map(|p| Target::from_xyxy(p.box_input, a.input_size))
                .collect();
            let stats = trainer.step(x, &tokens, &targets)?;
            loss_sum += stats.loss;
            bar.inc(1);
        }
        bar.finish_and_clear();
        trainer.epoch += 1;
        let model = trainer.model().valid();
        let mut pairs = Vec::with_capacity(val.len());
        for chunk in val.chunks(a.batch_size) {
            let items: Vec<&Prepared> = chunk.iter().collect();
            let (x, tokens) = prepared_batch::<B::InnerBackend>(&items, pad, &device)?;
            let out = model.forward(x, &tokens)?;
            for (p, item) in chosen_boxes(&out, a.input_size).into_iter().zip(&items) {
                pairs.push((p, item.box_input));
            }
        }
        let m = BoxMetrics::compute(&pairs);
        trainer.save(a.out.join("last"))?;
        if m.pr_at_05 > best {
            best = m.pr_at_05;
            trainer.save(a.out.join("best"))?;
        }
        say!(
            "{}",
            serde_json::json!({
                "epoch": trainer.epoch,
                "step": trainer.step,
                "train_loss": loss_sum / steps.max(1) as f64,
                "val": {"n": m.n, "Pr@0.5": m.pr_at_05, "meanIoU": m.mean_iou, "cumIoU": m.cum_iou},
                "epoch_s": t0.elapsed().as_secs_f64(),
            })
        );
    }
    Ok(())
}
