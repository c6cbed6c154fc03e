//! Flags shared by several commands: image loading, stage parameters, SAM and the grounding model.

use anyhow::{Result, bail};
use clap::Args;
use pslg::io::LoadOptions;
use pslg::mbo::MboParams;
use pslg::{BoxSegmenter, BoxSegmenterParams};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How images become 8-bit RGB for the models.
#[derive(Args, Clone)]
pub(crate) struct ImageFlags {
    /// 1-based bands to use as R,G,B (three) or gray (one), e.g. `3,2,1` (default: 1,2,3, or 1 for one band).
    #[arg(long, value_name = "B[,G,B]")]
    pub(crate) bands: Option<String>,
    /// Conversion of 16-bit/float samples to 8 bits: `minmax` (joint min/max of the bands) or
    /// `LOW,HIGH` percentiles per band, e.g. `2,98`.
    #[arg(long, default_value = "minmax", value_name = "minmax|LOW,HIGH")]
    pub(crate) stretch: String,
}

impl ImageFlags {
    /// The load options of `--bands` / `--stretch`.
    pub(crate) fn options(&self) -> Result<LoadOptions> {
        Ok(LoadOptions::parse(self.bands.as_deref(), &self.stretch)?)
    }
}

/// SAM in the box → mask path.
#[derive(Args, Clone)]
pub(crate) struct SamFlags {
    /// Run SAM between CFPG and MBO (PSLG-SAM's stage 2): box + CFPG point → SAM mask → MBO refinement.
    /// An official sam_vit_{b,l,h}_*.pth (or .safetensors); each image (each tile with --tile, the window
    /// with --window) is encoded once.
    #[arg(long, value_name = "CHECKPOINT")]
    pub(crate) sam: Option<PathBuf>,
    /// SAM's decoder attention heads (8 in every official model; not visible in the checkpoint's shapes).
    #[arg(long, default_value_t = 8, requires = "sam")]
    pub(crate) sam_decoder_heads: usize,
    /// Prompt SAM with the box only, without the CFPG point (ablation).
    #[arg(long, requires = "sam")]
    pub(crate) sam_box_only: bool,
}

/// The CPU backend of every command: Burn 0.21's `flex` (gemm-backed matmuls and im2col convolutions on all
/// cores; `docs/performance.md` compares it with `ndarray`).
pub(crate) type CpuBackend = burn_flex::Flex;

impl SamFlags {
    /// The SAM segmenter over `stages`' CFPG / MBO, when `--sam` is given.
    pub(crate) fn segmenter(
        &self,
        stages: &BoxSegmenter,
    ) -> Result<Option<pslg::SamSegmenter<CpuBackend>>> {
        let Some(path) = &self.sam else {
            return Ok(None);
        };
        let device = Default::default();
        let t = Instant::now();
        let model =
            pslg::sam::Sam::<CpuBackend>::load(path, Some(self.sam_decoder_heads), &device)?;
        say!(
            "SAM loaded from {} in {:.1} s ({}x{} input, {})",
            path.display(),
            t.elapsed().as_secs_f64(),
            model.config().image_size,
            model.config().image_size,
            model.config().encoder
        );
        let params = pslg::SamSegmenterParams {
            point_prompt: !self.sam_box_only,
            ..Default::default()
        };
        Ok(Some(pslg::SamSegmenter::new(
            model,
            device,
            stages.clone(),
            params,
        )))
    }
}

/// Which stages run.
#[derive(Args, Clone, Copy)]
pub(crate) struct StageFlags {
    /// Skip the clustering-based foreground point generator (no hard-foreground seed for MBO).
    #[arg(long)]
    pub(crate) no_cfpg: bool,
    /// Skip the mask boundary optimisation (the mask is then the box itself).
    #[arg(long)]
    pub(crate) no_mbo: bool,
    /// Background context around the box for MBO, as a fraction of the longer box side.
    #[arg(long, default_value_t = BoxSegmenterParams::default().margin_fraction)]
    pub(crate) margin_fraction: f64,
    /// Smallest background context in pixels.
    #[arg(long, default_value_t = BoxSegmenterParams::default().min_margin)]
    pub(crate) min_margin: u32,
    /// Radius of the hard-foreground disk at the CFPG point, as a fraction of the shorter box side.
    #[arg(long, default_value_t = BoxSegmenterParams::default().seed_radius_fraction)]
    pub(crate) seed_radius: f64,
    /// The tightness test: return an MBO attempt only when it crosses at least this fraction of the box's
    /// rows and of its columns (else retry with --retry-gamma, then return the box).
    #[arg(long, default_value_t = BoxSegmenterParams::default().min_span)]
    pub(crate) min_span: f64,
    /// Smoothness weight γ of MBO's second attempt when the first fails the tightness test (0 = no retry).
    #[arg(long, default_value_t = BoxSegmenterParams::default().retry_gamma.unwrap_or(0.0))]
    pub(crate) retry_gamma: f64,
    /// MBO's smoothness over 8 neighbours (GrabCut's; about 1.4× slower; use about half the γ) instead of 4.
    #[arg(long)]
    pub(crate) eight_connected: bool,
    /// Keep the holes of MBO's mask inside the box (by default they are filled).
    #[arg(long)]
    pub(crate) keep_holes: bool,
    /// Close MBO's mask inside the box with a disk of this fraction of the longer box side (0 = no closing).
    #[arg(long, default_value_t = BoxSegmenterParams::default().close_fraction)]
    pub(crate) close_radius: f64,
    /// Largest radius of that disk in pixels (at most 255).
    #[arg(long, default_value_t = BoxSegmenterParams::default().max_close_radius)]
    pub(crate) max_close_px: u32,
    /// With SAM: return SAM's mask when MBO keeps less than this fraction of it.
    #[arg(long, default_value_t = BoxSegmenterParams::default().min_keep_fraction)]
    pub(crate) min_keep: f64,
    /// Refine boxes larger than this many pixels on a downscaled crop (0 = never).
    #[arg(long, default_value_t = BoxSegmenterParams::default().max_mbo_box_pixels)]
    pub(crate) max_mbo_pixels: usize,
    /// MBO stops its rounds once less than this fraction of its initial foreground is left (0 = never).
    #[arg(long, default_value_t = BoxSegmenterParams::default().abandon_below)]
    pub(crate) abandon: f64,
    /// MBO smoothness weight γ (the paper and GrabCut: 50).
    #[arg(long, default_value_t = BoxSegmenterParams::default().mbo.map_or(MboParams::default().gamma, |m| m.gamma))]
    pub(crate) gamma: f64,
    /// MBO cut/EM rounds at most.
    #[arg(long, default_value_t = MboParams::default().max_iterations)]
    pub(crate) iterations: usize,
    /// Weight of MBO's smoothness edges to the fixed background outside the box (GrabCut: 1).
    #[arg(long, default_value_t = BoxSegmenterParams::default().mbo.map_or(1.0, |m| m.fixed_background_link))]
    pub(crate) frame_link: f64,
}

impl StageFlags {
    pub(crate) fn segmenter(self) -> Result<BoxSegmenter> {
        let mut p = BoxSegmenterParams {
            margin_fraction: self.margin_fraction,
            min_margin: self.min_margin,
            seed_radius_fraction: self.seed_radius,
            min_span: self.min_span,
            // 0 turns the retry off; anything else (a negative or NaN included) goes to validation.
            retry_gamma: (self.retry_gamma != 0.0).then_some(self.retry_gamma),
            fill_holes: !self.keep_holes,
            close_fraction: self.close_radius,
            max_close_radius: self.max_close_px,
            min_keep_fraction: self.min_keep,
            max_mbo_box_pixels: self.max_mbo_pixels,
            abandon_below: self.abandon,
            ..Default::default()
        };
        if let Some(m) = p.mbo.as_mut() {
            m.gamma = self.gamma;
            m.max_iterations = self.iterations;
            m.fixed_background_link = self.frame_link;
            m.eight_connected = self.eight_connected;
        }
        if self.no_cfpg {
            p.cfpg = None;
        }
        if self.no_mbo {
            p.mbo = None;
        }
        Ok(BoxSegmenter::new(p)?)
    }
}

/// Stage 1: the LQVG model that grounds sentences to boxes.
#[derive(Args)]
pub(crate) struct GroundingFlags {
    /// LQVG checkpoint for sentences (official checkpoint.pth, or a model.safetensors of train-grounding).
    #[arg(long, value_name = "CHECKPOINT")]
    pub(crate) grounding: Option<PathBuf>,
    /// tokenizer.json of the grounding model's text encoder.
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    /// The text encoder's config.json (default: next to --tokenizer, else roberta-base's).
    #[arg(long)]
    pub(crate) text_config: Option<PathBuf>,
    /// Attention heads of the grounding model (8 in the official model).
    #[arg(long, default_value_t = 8)]
    pub(crate) grounding_heads: usize,
    /// Square input side of the grounding model (800 in the official code).
    #[arg(long, default_value_t = pslg::grounding::INPUT_SIZE)]
    pub(crate) grounding_input_size: usize,
}

/// The text encoder config: `--text-config`, else `config.json` beside the tokenizer, else roberta-base's.
pub(crate) fn resolve_text_config(
    explicit: Option<&Path>,
    tokenizer: Option<&Path>,
) -> Result<pslg::grounding::TextConfig> {
    use pslg::grounding::TextConfig;
    if let Some(p) = explicit {
        return Ok(TextConfig::from_hf_json(p)?);
    }
    if let Some(tok) = tokenizer
        && tok.with_file_name("config.json").is_file()
    {
        return Ok(TextConfig::from_hf_json(tok.with_file_name("config.json"))?);
    }
    eprintln!("pslg: no --text-config; using roberta-base's config (what the official LQVG loads)");
    Ok(TextConfig::roberta_base())
}

impl GroundingFlags {
    /// The grounder of `--grounding` / `--tokenizer` on the CPU, `None` without `--grounding`.
    pub(crate) fn grounder(&self) -> Result<Option<pslg::grounding::Grounder<CpuBackend>>> {
        self.grounder_on(Default::default())
    }

    /// [`GroundingFlags::grounder`] on any backend.
    pub(crate) fn grounder_on<B: burn::tensor::backend::Backend>(
        &self,
        device: B::Device,
    ) -> Result<Option<pslg::grounding::Grounder<B>>> {
        use pslg::grounding::{Grounder, Lqvg, TextTokenizer};
        let Some(ckpt) = &self.grounding else {
            return Ok(None);
        };
        let Some(tok) = &self.tokenizer else {
            bail!("--grounding needs --tokenizer TOKENIZER.json (the text encoder's tokenizer)");
        };
        let config = resolve_text_config(self.text_config.as_deref(), Some(tok))?;
        let model = Lqvg::<B>::load(ckpt, config, Some(self.grounding_heads), &device)?;
        Ok(Some(
            Grounder::new(model, Some(TextTokenizer::from_file(tok)?), device)
                .with_input_size(self.grounding_input_size),
        ))
    }
}
