//! `pslg` — command-line interface of the PSLG-SAM box → mask path.
//!
//! ```text
//! pslg segment --image IMG (--box x1,y1,x2,y2 | --box-map minx,miny,maxx,maxy | --text TEXT --grounding LQVG.pth --tokenizer T.json) --out MASK.png|MASK.tif
//!              [--geojson OUT.geojson [--simplify PIXELS]] [--window | --tile SIZE [--overlap PIXELS]]
//!              [--overlay OUT.png] [--no-cfpg] [--no-mbo]
//! pslg batch   --cases CASES.jsonl --out-dir DIR [--no-cfpg] [--no-mbo] [--threads N]
//! pslg eval    --cases CASES.jsonl --pred-dir DIR [--table]
//! pslg sam     --checkpoint SAM.pth --image IMG [--box ...] [--point x,y,l]... --out-dir DIR
//! pslg train-grounding --root DIOR_RSVG --tokenizer TOKENIZER.json (--checkpoint LQVG.pth | --model-config C.json | --resume OUT/last) --out OUT
//! pslg ground  --checkpoint LQVG.pth --image IMG (--tokenizer TOKENIZER.json --text TEXT | --token-ids 0,...,2)
//! pslg eval-rrsis --root DATASET [--split test] (--gt-box | --grounding LQVG.pth --tokenizer T.json) [--sam SAM.pth [--decoder FT]] [--ablation] [--protocol 480] [--out R.jsonl]
//! pslg finetune-decoder --root DATASET --fraction 0.1 --epochs 20 --lr 1e-4 --sam SAM.pth --out FT
//! ```
//!
//! The binary crate of the workspace: argument parsing, the one backend choice, progress bars and reports.
//! Each command is a file of [`commands`] that calls the library crates.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// SAM's encoder allocates and frees large temporaries in every block; mimalloc keeps freed memory for
/// reuse where the system allocator returns it to the OS and page-faults it back in (measured:
/// `docs/performance.md`, the pslg binary's ViT-B encoding went from 63 s to the sam_speed example's time).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that tolerates a closed stdout (`pslg … | head`): the work goes on and the text is dropped,
/// instead of `println!`'s panic on a broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Runs `f::<B>(args, B::Device::default())` on the backend `--cuda` chose: the one place that names the
/// backends. `autodiff` wraps both in `burn::backend::Autodiff` (the training commands). The backend is
/// chosen before any device is touched (creating a CUDA device without a driver aborts).
macro_rules! on_backend {
    ($cuda:expr, $($f:ident)::+, $args:expr) => {
        on_backend!(@pick $cuda, $($f)::+, $args, crate::flags::CpuBackend, burn::backend::Cuda)
    };
    (autodiff $cuda:expr, $($f:ident)::+, $args:expr) => {
        on_backend!(
            @pick $cuda, $($f)::+, $args,
            burn::backend::Autodiff<crate::flags::CpuBackend>,
            burn::backend::Autodiff<burn::backend::Cuda>
        )
    };
    (@pick $cuda:expr, $($f:ident)::+, $args:expr, $cpu:ty, $gpu:ty) => {{
        if $cuda {
            #[cfg(feature = "cuda")]
            return $($f)::+::<$gpu>($args, Default::default());
            #[cfg(not(feature = "cuda"))]
            return Err(anyhow::anyhow!("--cuda needs a binary built with `--features cuda`"));
        }
        $($f)::+::<$cpu>($args, Default::default())
    }};
}

mod commands;
mod flags;
mod report;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment the object in one box of one image.
    Segment(commands::segment::SegmentArgs),
    /// Segment every case of a cases.jsonl file in parallel.
    Batch(commands::batch::BatchArgs),
    /// Score predicted masks against a cases.jsonl file's ground truth.
    Eval(commands::eval::EvalArgs),
    /// Run Segment Anything (official checkpoint) on one image with point / box / mask prompts.
    Sam(commands::sam::SamArgs),
    /// Ground a sentence in an image with LQVG (official checkpoint): prints the box as one JSON line.
    Ground(commands::ground::GroundArgs),
    /// Train (or fine-tune) LQVG on a DIOR-RSVG-layout folder; one JSON line per epoch.
    TrainGrounding(commands::train_grounding::TrainGroundingArgs),
    /// Evaluate the pipeline on a referring segmentation dataset split (RRSIS-D / RRSIS-M / RefSegRS):
    /// Pr@0.5–0.9, oIoU, mIoU, per-category mIoU as one JSON line (one per cell with --ablation).
    EvalRrsis(commands::eval_rrsis::EvalRrsisArgs),
    /// Fine-tune SAM's mask decoder (encoders frozen; BCE, AdamW) on a fraction of a dataset's training
    /// split; one JSON line per epoch with the validation mIoU. The result loads with `eval-rrsis --decoder`.
    FinetuneDecoder(commands::finetune_decoder::FinetuneDecoderArgs),
}

fn main() -> Result<()> {
    use commands::*;
    match Cli::parse().command {
        Command::Segment(a) => segment::run(a),
        Command::Batch(a) => batch::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Sam(a) => on_backend!(a.cuda, sam::run_on, &a),
        Command::Ground(a) => on_backend!(a.cuda, ground::run_on, &a),
        Command::TrainGrounding(a) => on_backend!(autodiff a.cuda, train_grounding::run_on, &a),
        Command::EvalRrsis(a) => on_backend!(a.cuda, eval_rrsis::run_on, a),
        Command::FinetuneDecoder(a) => on_backend!(autodiff a.cuda, finetune_decoder::run_on, &a),
    }
}
