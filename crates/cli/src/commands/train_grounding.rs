//! `pslg train-grounding`: LQVG trained or fine-tuned on a DIOR-RSVG-layout folder; one JSON line per
//! epoch, `OUT/last` and `OUT/best`.

use crate::flags::resolve_text_config;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

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

/// Runs `pslg train-grounding` on the autodiff backend `B`: [`pslg::grounding::fit`] with a progress bar
/// and one JSON line per epoch.
pub(crate) fn run_on<B: burn::tensor::backend::AutodiffBackend>(
    a: &TrainGroundingArgs,
    device: B::Device,
) -> Result<()> {
    use pslg::grounding::{
        DiorRsvg, FitConfig, FitEvent, Lqvg, LqvgConfig, PreparedSplit, TextTokenizer, TrainConfig,
        Trainer, XmlOrder, fit,
    };
    if a.batch_size == 0 || a.input_size == 0 {
        bail!("--batch-size and --input-size must be positive");
    }
    let text_config = resolve_text_config(a.text_config.as_deref(), Some(&a.tokenizer))?;
    let tok = TextTokenizer::from_file(&a.tokenizer)?;
    let order: XmlOrder = a.xml_order.parse()?;
    let ds = DiorRsvg::open(&a.root, &order)?;
    let train = PreparedSplit::from_dior(&ds, &a.root.join(&a.split), &tok, a.input_size)?;
    let val = PreparedSplit::from_dior(&ds, &a.root.join(&a.val_split), &tok, a.input_size)?;
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
                Lqvg::<B>::new(model_config, false, &device)?.init_detr(),
                config,
            )
        }
        (None, None, None) => {
            bail!("give --checkpoint (fine-tune), --model-config (from scratch) or --resume")
        }
    };
    eprintln!(
        "train-grounding: {} training expressions ({} images) and {} validation expressions, input {}², batch {}",
        train.len(),
        train.images().len(),
        val.len(),
        a.input_size,
        a.batch_size
    );
    let fit_config = FitConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        seed: a.seed,
        out: a.out.clone(),
    };
    let style = ProgressStyle::with_template(
        "epoch {msg} {bar:40} {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
    )?;
    let mut bar: Option<ProgressBar> = None;
    fit(
        &mut trainer,
        &train,
        &val,
        &fit_config,
        &device,
        |event| match event {
            FitEvent::Step {
                epoch, done, steps, ..
            } => {
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(steps as u64).with_style(style.clone());
                    b.set_message(format!("{epoch}"));
                    b
                });
                b.set_position(done as u64);
            }
            FitEvent::Epoch(r) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                say!(
                    "{}",
                    serde_json::json!({
                        "epoch": r.epoch,
                        "step": r.step,
                        "train_loss": r.train_loss,
                        "val": {"n": r.val.n, "Pr@0.5": r.val.pr_at_05, "meanIoU": r.val.mean_iou, "cumIoU": r.val.cum_iou},
                        "best": r.best,
                        "epoch_s": r.seconds,
                    })
                );
            }
        },
    )?;
    Ok(())
}
