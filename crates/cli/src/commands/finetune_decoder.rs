//! `pslg finetune-decoder`: SAM's mask decoder fine-tuned on a fraction of a training split (Table 4).

use crate::report::round2;
use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pslg::{BoxSegmenter, BoxSegmenterParams};
use std::path::PathBuf;
use std::time::Instant;

/// `pslg finetune-decoder`.
#[derive(Args)]
pub(crate) struct FinetuneDecoderArgs {
    /// Dataset root (as for eval-rrsis).
    #[arg(long)]
    pub(crate) root: PathBuf,
    /// `refcoco` (RRSIS-D, RRSIS-M), `refsegrs`, or `pairs` (`ROOT/{split}.jsonl` of image–mask pairs with
    /// a sentence each: `{"id", "image", "mask", "text", "category"?}`).
    #[arg(long, default_value = "refcoco", value_parser = |s: &str| s.parse::<pslg::rrsis::Layout>())]
    pub(crate) layout: pslg::rrsis::Layout,
    /// The references pickle of the refcoco layout, relative to --root.
    #[arg(long, default_value = "refs(unc).p")]
    pub(crate) refs: String,
    /// Training split.
    #[arg(long, default_value = "train")]
    pub(crate) split: String,
    /// Validation split (scored after every epoch).
    #[arg(long, default_value = "val")]
    pub(crate) val_split: String,
    /// Validate on the first N samples of the validation split only.
    #[arg(long)]
    pub(crate) val_limit: Option<usize>,
    /// Fraction of the training split to train on (a seeded subset; 0 = the frozen decoder only).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) fraction: f64,
    /// Epochs to reach (counting those of a resumed run).
    #[arg(long, default_value_t = 20)]
    pub(crate) epochs: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub(crate) lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-2)]
    pub(crate) weight_decay: f64,
    /// Samples per optimiser step.
    #[arg(long, default_value_t = 4)]
    pub(crate) batch_size: usize,
    /// Seed of the subset and of the epoch orders.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// The SAM checkpoint to start from (official sam_vit_*.pth or .safetensors).
    #[arg(long)]
    pub(crate) sam: PathBuf,
    /// SAM's decoder attention heads (8 in every official model).
    #[arg(long, default_value_t = 8)]
    pub(crate) sam_decoder_heads: usize,
    /// Prompt with the box alone (no CFPG point), for a decoder meant for `--sam-box-only`.
    #[arg(long)]
    pub(crate) box_only: bool,
    /// Image embedding cache (default: OUT/embeddings); 4 MiB per image for the official models.
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
    /// Output folder: `last/` after every epoch (resumed automatically), `best/` at the best validation mIoU.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Train on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    pub(crate) cuda: bool,
}

/// Runs `pslg finetune-decoder` on the autodiff backend `B`.
pub(crate) fn run_on<B: burn::tensor::backend::AutodiffBackend>(
    a: &FinetuneDecoderArgs,
    device: B::Device,
) -> Result<()> {
    use pslg::finetune::{DecoderTrainer, EmbeddingCache, EpochReport, FinetuneConfig};
    let config = FinetuneConfig {
        fraction: a.fraction,
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        batch_size: a.batch_size,
        seed: a.seed,
    };
    config.validate()?;
    let train_all = pslg::rrsis::read_split(a.layout, &a.root, &a.refs, &a.split)?;
    let mut val = pslg::rrsis::read_split(a.layout, &a.root, &a.refs, &a.val_split)?;
    if let Some(n) = a.val_limit {
        val.truncate(n);
    }
    let subset = config.subset(train_all.len());
    let train: Vec<_> = subset.iter().map(|&i| train_all[i].clone()).collect();
    eprintln!(
        "pslg: training on {} of {} samples of {:?} (fraction {}, seed {}), validating on {} of {:?}",
        train.len(),
        train_all.len(),
        a.split,
        a.fraction,
        a.seed,
        val.len(),
        a.val_split
    );
    let sam = pslg::sam::Sam::<B>::load(&a.sam, Some(a.sam_decoder_heads), &device)?;
    let last = a.out.join("last");
    let mut trainer = if last.join("state.json").is_file() {
        let t = DecoderTrainer::resume(sam, &last, device.clone())?;
        let stored = t.config();
        if (
            stored.fraction,
            stored.seed,
            stored.lr,
            stored.weight_decay,
            stored.batch_size,
        ) != (a.fraction, a.seed, a.lr, a.weight_decay, a.batch_size)
        {
            bail!(
                "{} was started with other settings ({stored:?}); use the same flags to resume, or another --out",
                last.display()
            );
        }
        eprintln!("pslg: resuming {} after epoch {}", last.display(), t.epoch);
        t
    } else {
        DecoderTrainer::new(sam, config.clone(), device.clone())?
    };
    // More epochs than the stored run asked for extend it.
    let stages = if a.box_only {
        BoxSegmenter::new(BoxSegmenterParams {
            cfpg: None,
            ..Default::default()
        })?
    } else {
        BoxSegmenter::new(BoxSegmenterParams::default())?
    };
    let cache = EmbeddingCache::new(a.cache.clone().unwrap_or_else(|| a.out.join("embeddings")));
    let inner = trainer.model();
    let bar = |n: usize, what: &str| -> Result<ProgressBar> {
        let b = ProgressBar::new(n as u64);
        b.set_style(ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}, {{elapsed}} elapsed, eta {{eta}}"
        ))?);
        Ok(b)
    };
    let t = Instant::now();
    let pb = bar(
        train.len() + val.len(),
        "samples prepared (embeddings cached, CFPG points)",
    )?;
    let train_ex = cache.prepare(&inner, &device, &train, &stages, || pb.inc(1))?;
    let val_ex = cache.prepare(&inner, &device, &val, &stages, || pb.inc(1))?;
    pb.finish_and_clear();
    eprintln!(
        "pslg: examples prepared in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(inner);
    let report = |r: &EpochReport| {
        say!(
            "{}",
            serde_json::json!({
                "epoch": r.epoch,
                "train_loss": r.train_loss,
                "val_mIoU": round2(100.0 * r.val_miou),
                "val_oIoU": round2(100.0 * r.val_oiou),
                "seconds": round2(r.seconds),
            })
        );
    };
    let best_dir = a.out.join("best");
    if trainer.history.is_empty() {
        let t = Instant::now();
        let pb = bar(val_ex.len(), "validation samples (frozen decoder)")?;
        let s = trainer.validate(&val_ex, || pb.inc(1))?;
        pb.finish_and_clear();
        let r = EpochReport {
            epoch: 0,
            train_loss: 0.0,
            val_miou: s.miou,
            val_oiou: s.oiou,
            seconds: t.elapsed().as_secs_f64(),
        };
        report(&r);
        trainer.history.push(r);
        trainer.save(&last)?;
        trainer.save(&best_dir)?;
    }
    let epochs = if train_ex.is_empty() {
        trainer.epoch
    } else {
        a.epochs
    };
    while trainer.epoch < epochs {
        let t = Instant::now();
        let pb = bar(
            train_ex.len() + val_ex.len(),
            &format!("samples of epoch {}", trainer.epoch + 1),
        )?;
        let loss = trainer.train_epoch(&train_ex, || pb.inc(1))?;
        let s = trainer.validate(&val_ex, || pb.inc(1))?;
        pb.finish_and_clear();
        let best_so_far = trainer
            .history
            .iter()
            .map(|r| r.val_miou)
            .fold(f64::MIN, f64::max);
        let r = EpochReport {
            epoch: trainer.epoch,
            train_loss: loss,
            val_miou: s.miou,
            val_oiou: s.oiou,
            seconds: t.elapsed().as_secs_f64(),
        };
        report(&r);
        trainer.history.push(r);
        trainer.save(&last)?;
        if s.miou > best_so_far {
            trainer.save(&best_dir)?;
        }
    }
    let best = trainer
        .history
        .iter()
        .max_by(|x, y| x.val_miou.total_cmp(&y.val_miou))
        .map_or(0, |r| r.epoch);
    eprintln!(
        "pslg: best validation mIoU at epoch {best}; use --decoder {} with eval-rrsis",
        a.out.display()
    );
    Ok(())
}
