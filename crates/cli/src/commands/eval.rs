//! `pslg eval`: predicted masks against a case file's ground truth; one JSON line or a table.

use anyhow::{Context, Result};
use clap::Args;
use pslg::io::load_mask;
use pslg::metrics::{Accumulator, mask_stats_by};
use pslg_datasets::cases::read_cases;
use std::path::PathBuf;

/// `pslg eval`.
#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Case file with ground-truth `mask` paths.
    #[arg(long)]
    pub(crate) cases: PathBuf,
    /// Folder of predictions <id>.png (a missing prediction counts as an empty mask).
    #[arg(long)]
    pub(crate) pred_dir: PathBuf,
    /// Print a human-readable table instead of one JSON line.
    #[arg(long)]
    pub(crate) table: bool,
}

/// Runs `pslg eval`.
pub(crate) fn run(a: EvalArgs) -> Result<()> {
    let cases = read_cases(&a.cases)?;
    let mut acc = Accumulator::new();
    for c in &cases {
        let gt_path = c
            .mask
            .as_ref()
            .with_context(|| format!("case {} has no \"mask\" to score against", c.id))?;
        let gt = load_mask(gt_path)?;
        let pred_path = a.pred_dir.join(format!("{}.png", c.id));
        let pred = if pred_path.exists() {
            load_mask(&pred_path)?
        } else {
            image::GrayImage::new(gt.width(), gt.height())
        };
        if pred.dimensions() != gt.dimensions() {
            anyhow::bail!(
                "{}: mask is {:?} but the ground truth is {:?} (width, height); predict on the case's own image",
                pred_path.display(),
                pred.dimensions(),
                gt.dimensions()
            );
        }
        let stats = mask_stats_by(pred.as_raw(), gt.as_raw(), |&v| v != 0, |&v| v != 0)?;
        acc.add(stats, c.category.as_deref());
    }
    let s = acc.summary();
    if a.table {
        say!("{}", pslg_eval::format_table(&[("all", &s)]).trim_end());
    } else {
        say!("{}", pslg_eval::summary_json(&s));
    }
    Ok(())
}
