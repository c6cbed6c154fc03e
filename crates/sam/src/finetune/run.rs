//! A whole fine-tuning run in an output folder: the frozen decoder scored as epoch 0, then epochs until the
//! configured count, `OUT/last` after each (a rerun resumes it), `OUT/best` at the best validation mIoU.

use super::{DecoderExample, DecoderTrainer, EpochReport, FinetuneConfig, FinetuneError};
use crate::Sam;
use burn::tensor::backend::AutodiffBackend;
use std::path::Path;
use std::time::Instant;

/// What [`finetune`] reports while it runs (for progress bars and logs; the library prints nothing).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FinetuneEvent<'a> {
    /// `OUT/last` was resumed after this many epochs.
    Resumed {
        /// The folder resumed.
        dir: &'a Path,
        /// Epochs it had completed.
        epoch: usize,
    },
    /// An epoch starts (0: the frozen decoder's validation): `samples` [`FinetuneEvent::Sample`] events follow.
    EpochStart {
        /// The epoch number.
        epoch: usize,
        /// Samples it will visit (training and validation).
        samples: usize,
    },
    /// One sample was trained on or validated.
    Sample,
    /// An epoch finished and was scored; `OUT/last` (and `OUT/best` when it improved) are written.
    Epoch(&'a EpochReport),
}

/// Fine-tunes `sam`'s mask decoder on `train`, validating on `val` after every epoch, in the folder `out`:
///
/// * `out/last` holds the latest epoch ([`DecoderTrainer::save`]); when it exists the run resumes it, and its
///   stored hyper-parameters must equal `config` (but `config.epochs`, which may extend the run);
/// * the frozen decoder is scored first (epoch 0) so that `out/best` is never worse than no training;
/// * `out/best` holds the epoch with the best validation mIoU (strictly better replaces it);
/// * with an empty `train`, only epoch 0 runs.
///
/// Returns the trainer (its [`DecoderTrainer::history`] holds every epoch's report).
///
/// # Errors
/// [`FinetuneError::InvalidParam`] for invalid hyper-parameters, [`FinetuneError::OtherSettings`] when `out`
/// holds a run with other settings, and the errors of training, validation and saving.
pub fn finetune<B: AutodiffBackend>(
    sam: Sam<B>,
    config: FinetuneConfig,
    device: B::Device,
    out: &Path,
    train: &[DecoderExample],
    val: &[DecoderExample],
    mut on_event: impl FnMut(FinetuneEvent<'_>),
) -> Result<DecoderTrainer<B>, FinetuneError> {
    config.validate()?;
    let last = out.join("last");
    let best_dir = out.join("best");
    let mut trainer = if last.join("state.json").is_file() {
        let t = DecoderTrainer::resume(sam, &last, device)?;
        let stored = t.config();
        let key = |c: &FinetuneConfig| (c.fraction, c.seed, c.lr, c.weight_decay, c.batch_size);
        if key(stored) != key(&config) {
            return Err(FinetuneError::OtherSettings {
                dir: last,
                stored: format!("{stored:?}"),
            });
        }
        on_event(FinetuneEvent::Resumed {
            dir: &last,
            epoch: t.epoch,
        });
        t
    } else {
        DecoderTrainer::new(sam, config.clone(), device)?
    };
    if trainer.history.is_empty() {
        let t = Instant::now();
        on_event(FinetuneEvent::EpochStart {
            epoch: 0,
            samples: val.len(),
        });
        let s = trainer.validate(val, || on_event(FinetuneEvent::Sample))?;
        let r = EpochReport {
            epoch: 0,
            train_loss: 0.0,
            val_miou: s.miou,
            val_oiou: s.oiou,
            seconds: t.elapsed().as_secs_f64(),
        };
        trainer.history.push(r);
        trainer.save(&last)?;
        trainer.save(&best_dir)?;
        if let Some(r) = trainer.history.last() {
            on_event(FinetuneEvent::Epoch(r));
        }
    }
    let epochs = if train.is_empty() {
        trainer.epoch
    } else {
        config.epochs
    };
    while trainer.epoch < epochs {
        let t = Instant::now();
        on_event(FinetuneEvent::EpochStart {
            epoch: trainer.epoch + 1,
            samples: train.len() + val.len(),
        });
        let loss = trainer.train_epoch(train, || on_event(FinetuneEvent::Sample))?;
        let s = trainer.validate(val, || on_event(FinetuneEvent::Sample))?;
        let best_so_far = trainer
            .history
            .iter()
            .map(|r| r.val_miou)
            .fold(f64::MIN, f64::max);
        trainer.history.push(EpochReport {
            epoch: trainer.epoch,
            train_loss: loss,
            val_miou: s.miou,
            val_oiou: s.oiou,
            seconds: t.elapsed().as_secs_f64(),
        });
        trainer.save(&last)?;
        if s.miou > best_so_far {
            trainer.save(&best_dir)?;
        }
        if let Some(r) = trainer.history.last() {
            on_event(FinetuneEvent::Epoch(r));
        }
    }
    Ok(trainer)
}
