//! `pslg finetune-decoder`: SAM's mask decoder fine-tuned on a fraction of a training split (Table 4).

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pslg::{BoxSegmenter, BoxSegmenterParams};
use pslg_datasets::rrsis::{Layout, read_split};
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
    #[arg(long, default_value = "refcoco", value_parser = |s: &str| s.parse::<Layout>())]
    pub(crate) layout: Layout,
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
    use burn::module::AutodiffModule;
    use pslg_sam::finetune::{EmbeddingCache, FinetuneConfig, FinetuneEvent, finetune};
    let config = FinetuneConfig {
        fraction: a.fraction,
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        batch_size: a.batch_size,
        seed: a.seed,
    };
    config.validate()?;
    let train_all = read_split(a.layout, &a.root, &a.refs, &a.split)?;
    let mut val = read_split(a.layout, &a.root, &a.refs, &a.val_split)?;
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
    let stages = BoxSegmenter::new(BoxSegmenterParams {
        cfpg: BoxSegmenterParams::default().cfpg.filter(|_| !a.box_only),
        ..Default::default()
    })?;
    let cache = EmbeddingCache::new(a.cache.clone().unwrap_or_else(|| a.out.join("embeddings")));
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
    let inner = sam.valid();
    let point = |image: &image::RgbImage, bbox| stages.sam_point(image, bbox);
    let train_ex = cache.prepare(&inner, &device, &train, point, || pb.inc(1))?;
    let val_ex = cache.prepare(&inner, &device, &val, point, || pb.inc(1))?;
    pb.finish_and_clear();
    drop(inner);
    eprintln!(
        "pslg: examples prepared in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut pb: Option<ProgressBar> = None;
    let mut failed_bar: Option<anyhow::Error> = None;
    let trainer = finetune(
        sam,
        config,
        device,
        &a.out,
        &train_ex,
        &val_ex,
        |event| match event {
            FinetuneEvent::Resumed { dir, epoch } => {
                eprintln!("pslg: resuming {} after epoch {epoch}", dir.display());
            }
            FinetuneEvent::EpochStart { epoch, samples } => {
                let what = if epoch == 0 {
                    "validation samples (frozen decoder)".to_owned()
                } else {
                    format!("samples of epoch {epoch}")
                };
                match bar(samples, &what) {
                    Ok(b) => pb = Some(b),
                    Err(e) => failed_bar = Some(e),
                }
            }
            FinetuneEvent::Sample => {
                if let Some(b) = &pb {
                    b.inc(1);
                }
            }
            FinetuneEvent::Epoch(r) => {
                if let Some(b) = pb.take() {
                    b.finish_and_clear();
                }
                say!("{}", r.to_json());
            }
            _ => {}
        },
    )?;
    if let Some(e) = failed_bar {
        return Err(e);
    }
    eprintln!(
        "pslg: best validation mIoU at epoch {}; use --decoder {} with eval-rrsis",
        trainer.best_epoch(),
        a.out.display()
    );
    Ok(())
}
