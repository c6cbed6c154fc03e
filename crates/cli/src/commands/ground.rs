//! `pslg ground`: LQVG grounds one sentence in one image; one JSON line with the box, the scores and the
//! load / predict times.

use crate::flags::{ImageFlags, resolve_text_config};
use anyhow::{Context, Result, bail};
use clap::Args;
use pslg::io::load_rgb_with;
use std::path::PathBuf;
use std::time::Instant;

/// `pslg ground`.
#[derive(Args)]
pub(crate) struct GroundArgs {
    /// LQVG checkpoint: the official checkpoint.pth (its `model` entry), a bare state dict, or a
    /// .safetensors export; the architecture is read from its tensor shapes.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Input image (PNG, JPEG, TIFF; see `segment`).
    #[arg(long)]
    pub(crate) image: PathBuf,
    /// The referring sentence (lower-cased and whitespace-collapsed as the official code does).
    #[arg(
        long,
        required_unless_present = "token_ids",
        conflicts_with = "token_ids"
    )]
    pub(crate) text: Option<String>,
    /// HuggingFace tokenizer.json of the text encoder (roberta-base's for the official model).
    #[arg(long, required_unless_present = "token_ids")]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Token ids with the special tokens, e.g. `0,627,1104,2` (instead of --text and --tokenizer).
    #[arg(long, value_name = "ID,ID,...")]
    pub(crate) token_ids: Option<String>,
    /// The text encoder's HuggingFace config.json (epsilons and head count are not in the checkpoint).
    /// Default: config.json next to --tokenizer if there is one, else roberta-base's values.
    #[arg(long)]
    pub(crate) text_config: Option<PathBuf>,
    /// Attention heads of the transformer and fusion modules (8 in the official model; not in the shapes).
    #[arg(long, default_value_t = 8)]
    pub(crate) heads: usize,
    /// Side of the square letterboxed input (800 in the official test code).
    #[arg(long, default_value_t = pslg::grounding::INPUT_SIZE)]
    pub(crate) input_size: usize,
    /// Run on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    pub(crate) cuda: bool,
    #[command(flatten)]
    pub(crate) image_flags: ImageFlags,
}

/// Runs `pslg ground` on backend `B`.
pub(crate) fn run_on<B: burn::tensor::backend::Backend>(
    a: &GroundArgs,
    device: B::Device,
) -> Result<()> {
    use pslg::grounding::{Grounder, Lqvg, TextTokenizer};
    let text_config = resolve_text_config(a.text_config.as_deref(), a.tokenizer.as_deref())?;
    let ids: Option<Vec<u32>> = match &a.token_ids {
        None => None,
        Some(t) => Some(
            t.split(',')
                .map(|s| s.trim().parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("--token-ids {t:?} is not a list of token ids like 0,627,1104,2")
                })?,
        ),
    };
    let tokenizer = match (&a.tokenizer, &ids) {
        (Some(p), None) => Some(TextTokenizer::from_file(p)?),
        _ => None,
    };
    let image = load_rgb_with(&a.image, &a.image_flags.options()?)?;
    let t = Instant::now();
    let model = Lqvg::<B>::load(&a.checkpoint, text_config, Some(a.heads), &device)?;
    let load_s = t.elapsed().as_secs_f64();
    let grounder = Grounder::new(model, tokenizer, device).with_input_size(a.input_size);
    let t = Instant::now();
    let g = match (&ids, &a.text) {
        (Some(ids), _) => grounder.predict_ids(&image, ids)?,
        (None, Some(text)) => grounder.predict(&image, text)?,
        (None, None) => bail!("give --text (with --tokenizer) or --token-ids"),
    };
    let predict_s = t.elapsed().as_secs_f64();
    let queries: Vec<serde_json::Value> = g
        .queries
        .iter()
        .map(|q| serde_json::json!({"box": q.box_xyxy, "score": q.score}))
        .collect();
    say!(
        "{}",
        serde_json::json!({
            "box": g.box_xyxy,
            "score": g.score,
            "query": g.query,
            "queries": queries,
            "load_s": load_s,
            "predict_s": predict_s,
        })
    );
    Ok(())
}
