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

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use geo::MapCoords;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use pslg::cases::{Case, parse_box, read_cases};
use pslg::geo::{GeoReference, ObjectFeature, feature_collection, mask_polygons};
use pslg::io::{
    LoadOptions, Stretch, is_tiff_path, load_mask, load_rgb_window, load_rgb_with, save_mask,
    save_mask_for,
};
use pslg::mbo::MboParams;
use pslg::metrics::{Accumulator, Summary, mask_stats_by};
use pslg::{BoxSegmenter, BoxSegmenterParams, PslgError};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// PSLG-SAM referring remote-sensing segmentation: box → mask without trained weights (CFPG + MBO).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment the object in one box of one image.
    Segment(SegmentArgs),
    /// Segment every case of a cases.jsonl file in parallel.
    Batch(BatchArgs),
    /// Score predicted masks against a cases.jsonl file's ground truth.
    Eval(EvalArgs),
    /// Run Segment Anything (official checkpoint) on one image with point / box / mask prompts.
    Sam(SamArgs),
    /// Ground a sentence in an image with LQVG (official checkpoint): prints the box as one JSON line.
    Ground(GroundArgs),
    /// Train (or fine-tune) LQVG on a DIOR-RSVG-layout folder; one JSON line per epoch.
    TrainGrounding(TrainGroundingArgs),
    /// Evaluate the pipeline on a referring segmentation dataset split (RRSIS-D / RRSIS-M / RefSegRS):
    /// Pr@0.5–0.9, oIoU, mIoU, per-category mIoU as one JSON line (one per cell with --ablation).
    EvalRrsis(EvalRrsisArgs),
    /// Fine-tune SAM's mask decoder (encoders frozen; BCE, AdamW) on a fraction of a dataset's training
    /// split; one JSON line per epoch with the validation mIoU. The result loads with `eval-rrsis --decoder`.
    FinetuneDecoder(FinetuneDecoderArgs),
}

#[derive(Args)]
struct FinetuneDecoderArgs {
    /// Dataset root (as for eval-rrsis).
    #[arg(long)]
    root: PathBuf,
    /// `refcoco` (RRSIS-D, RRSIS-M), `refsegrs`, or `pairs` (`ROOT/{split}.jsonl` of image–mask pairs with
    /// a sentence each: `{"id", "image", "mask", "text", "category"?}`).
    #[arg(long, default_value = "refcoco", value_parser = ["refcoco", "refsegrs", "pairs"])]
    layout: String,
    /// The references pickle of the refcoco layout, relative to --root.
    #[arg(long, default_value = "refs(unc).p")]
    refs: String,
    /// Training split.
    #[arg(long, default_value = "train")]
    split: String,
    /// Validation split (scored after every epoch).
    #[arg(long, default_value = "val")]
    val_split: String,
    /// Validate on the first N samples of the validation split only.
    #[arg(long)]
    val_limit: Option<usize>,
    /// Fraction of the training split to train on (a seeded subset; 0 = the frozen decoder only).
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// Epochs to reach (counting those of a resumed run).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f64,
    /// Samples per optimiser step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Seed of the subset and of the epoch orders.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The SAM checkpoint to start from (official sam_vit_*.pth or .safetensors).
    #[arg(long)]
    sam: PathBuf,
    /// SAM's decoder attention heads (8 in every official model).
    #[arg(long, default_value_t = 8)]
    sam_decoder_heads: usize,
    /// Prompt with the box alone (no CFPG point), for a decoder meant for `--sam-box-only`.
    #[arg(long)]
    box_only: bool,
    /// Image embedding cache (default: OUT/embeddings); 4 MiB per image for the official models.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Output folder: `last/` after every epoch (resumed automatically), `best/` at the best validation mIoU.
    #[arg(long)]
    out: PathBuf,
    /// Train on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
}

#[derive(Args)]
struct EvalRrsisArgs {
    /// Dataset root: `refs(unc).p`, `instances.json`, `JPEGImages/` (refcoco layout) or `images/`, `masks/`,
    /// `output_phrase_{split}.txt` (refsegrs layout).
    #[arg(long)]
    root: PathBuf,
    /// `refcoco` (RRSIS-D, RRSIS-M), `refsegrs`, or `pairs` (`ROOT/{split}.jsonl` of image–mask pairs with
    /// a sentence each: `{"id", "image", "mask", "text", "category"?}`).
    #[arg(long, default_value = "refcoco", value_parser = ["refcoco", "refsegrs", "pairs"])]
    layout: String,
    /// Split to evaluate (`test`, `val`, `train`…).
    #[arg(long, default_value = "test")]
    split: String,
    /// The references pickle of the refcoco layout, relative to --root.
    #[arg(long, default_value = "refs(unc).p")]
    refs: String,
    /// Prompt with the ground-truth mask's tight box instead of grounding the sentence (isolates stage 2).
    #[arg(long)]
    gt_box: bool,
    #[command(flatten)]
    grounding: GroundingFlags,
    #[command(flatten)]
    sam: SamFlags,
    /// A fine-tuned SAM mask decoder (`finetune-decoder --out` folder, or its decoder.safetensors).
    #[arg(long, requires = "sam")]
    decoder: Option<PathBuf>,
    #[command(flatten)]
    stages: StageFlags,
    /// Evaluate the CFPG × MBO grid (Table 3) in one pass: images encoded and boxes grounded once.
    #[arg(long, conflicts_with_all = ["no_cfpg", "no_mbo"])]
    ablation: bool,
    /// `original` (masks at the image size) or a square side such as `480` (RMSIN's protocol).
    #[arg(long, default_value = "original")]
    protocol: pslg::evaluate::Protocol,
    /// Results file (JSON lines: settings, one line per sample, summary). An existing one is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Evaluate only the first N samples of the split.
    #[arg(long)]
    limit: Option<usize>,
    /// Print a human-readable table instead of JSON lines.
    #[arg(long)]
    table: bool,
    /// Run SAM and grounding on the CUDA GPU (build with `--features cuda`); CFPG and MBO stay on the CPU.
    #[arg(long)]
    cuda: bool,
}

#[derive(Args)]
struct TrainGroundingArgs {
    /// Dataset root: Annotations/*.xml, JPEGImages/, and the split files (one object index per line).
    #[arg(long)]
    root: PathBuf,
    /// Training split file, relative to --root.
    #[arg(long, default_value = "train.txt")]
    split: PathBuf,
    /// Validation split file, relative to --root (scored after every epoch).
    #[arg(long, default_value = "val.txt")]
    val_split: PathBuf,
    /// XML enumeration order behind the split indices: `sorted`, `directory`, or a file listing the XML
    /// names (see docs/grounding.md).
    #[arg(long, default_value = "sorted")]
    xml_order: String,
    /// HuggingFace tokenizer.json of the text encoder.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Text encoder config.json (default: next to --tokenizer, else roberta-base's).
    #[arg(long)]
    text_config: Option<PathBuf>,
    /// Start from an LQVG checkpoint (official checkpoint.pth or a model.safetensors this command wrote).
    #[arg(long, conflicts_with_all = ["resume", "model_config"])]
    checkpoint: Option<PathBuf>,
    /// Start from scratch with this architecture (an LqvgConfig JSON, as in state.json's "model").
    #[arg(long, conflicts_with = "resume")]
    model_config: Option<PathBuf>,
    /// Resume a run from the checkpoint folder this command wrote (`OUT/last`).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Output folder: `last/` after every epoch, `best/` at the best validation Pr@0.5.
    #[arg(long)]
    out: PathBuf,
    /// Epochs to reach (counting those of a resumed run).
    #[arg(long, default_value_t = 70)]
    epochs: usize,
    /// Images per step (official: 2).
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Main learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Backbone learning rate (0 freezes it).
    #[arg(long, default_value_t = 5e-5)]
    lr_backbone: f64,
    /// Text-encoder learning rate (0 freezes it, as the released model).
    #[arg(long, default_value_t = 0.0)]
    lr_text: f64,
    /// Epochs after which the learning rates drop ×0.1 (comma-separated).
    #[arg(long, default_value = "40")]
    lr_drop: String,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    /// Global gradient-norm clipping (0: off).
    #[arg(long, default_value_t = 0.1)]
    clip_max_norm: f64,
    /// Also train the ResNet stem and stage 1 (needed from scratch; the official code freezes them).
    #[arg(long)]
    train_backbone_stem: bool,
    /// Side of the square letterboxed input.
    #[arg(long, default_value_t = pslg::grounding::INPUT_SIZE)]
    input_size: usize,
    /// Attention heads (not in the checkpoint's shapes).
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Shuffling seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
}

#[derive(Args)]
struct GroundArgs {
    /// LQVG checkpoint: the official checkpoint.pth (its `model` entry), a bare state dict, or a
    /// .safetensors export; the architecture is read from its tensor shapes.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Input image (PNG, JPEG, TIFF; see `segment`).
    #[arg(long)]
    image: PathBuf,
    /// The referring sentence (lower-cased and whitespace-collapsed as the official code does).
    #[arg(
        long,
        required_unless_present = "token_ids",
        conflicts_with = "token_ids"
    )]
    text: Option<String>,
    /// HuggingFace tokenizer.json of the text encoder (roberta-base's for the official model).
    #[arg(long, required_unless_present = "token_ids")]
    tokenizer: Option<PathBuf>,
    /// Token ids with the special tokens, e.g. `0,627,1104,2` (instead of --text and --tokenizer).
    #[arg(long, value_name = "ID,ID,...")]
    token_ids: Option<String>,
    /// The text encoder's HuggingFace config.json (epsilons and head count are not in the checkpoint).
    /// Default: config.json next to --tokenizer if there is one, else roberta-base's values.
    #[arg(long)]
    text_config: Option<PathBuf>,
    /// Attention heads of the transformer and fusion modules (8 in the official model; not in the shapes).
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Side of the square letterboxed input (800 in the official test code).
    #[arg(long, default_value_t = pslg::grounding::INPUT_SIZE)]
    input_size: usize,
    /// Run on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
    #[command(flatten)]
    image_flags: ImageFlags,
}

#[derive(Args)]
struct SamArgs {
    /// SAM checkpoint: an official sam_vit_{b,l,h}_*.pth (or a .safetensors export of its state dict);
    /// the architecture is read from its tensor shapes.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Input image (PNG, JPEG, TIFF; see `segment`).
    #[arg(long)]
    image: PathBuf,
    /// Box prompt `x1,y1,x2,y2` in original-image pixels.
    #[arg(long = "box", value_name = "X1,Y1,X2,Y2", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// Point prompt `x,y,label` (label 1 foreground, 0 background) in original-image pixels; repeatable.
    #[arg(long = "point", value_name = "X,Y,LABEL", allow_hyphen_values = true)]
    points: Vec<String>,
    /// Low-resolution mask input (float32 .npy of shape (h,w), (1,h,w) or (1,1,h,w); e.g. a previous
    /// low_res_masks.npy with one mask).
    #[arg(long)]
    mask_input: Option<PathBuf>,
    /// Return the three multimask outputs instead of one mask.
    #[arg(long)]
    multimask: bool,
    /// Decoder attention heads (not visible in the checkpoint's shapes; 8 in every official model).
    #[arg(long, default_value_t = 8)]
    decoder_heads: usize,
    /// Folder for image_embedding.npy, low_res_masks.npy, iou_predictions.npy and mask.png.
    #[arg(long)]
    out_dir: PathBuf,
    /// Run on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
    #[command(flatten)]
    image_flags: ImageFlags,
}

/// How images become 8-bit RGB for the models.
#[derive(Args, Clone)]
struct ImageFlags {
    /// 1-based bands to use as R,G,B (three) or gray (one), e.g. `3,2,1` (default: 1,2,3, or 1 for one band).
    #[arg(long, value_name = "B[,G,B]")]
    bands: Option<String>,
    /// Conversion of 16-bit/float samples to 8 bits: `minmax` (joint min/max of the bands) or
    /// `LOW,HIGH` percentiles per band, e.g. `2,98`.
    #[arg(long, default_value = "minmax", value_name = "minmax|LOW,HIGH")]
    stretch: String,
}

impl ImageFlags {
    fn options(&self) -> Result<LoadOptions> {
        let bands = match &self.bands {
            None => None,
            Some(t) => Some(
                t.split(',')
                    .map(|b| b.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| {
                        format!("--bands {t:?} is not a list of band numbers like 3,2,1")
                    })?,
            ),
        };
        let stretch = if self.stretch.eq_ignore_ascii_case("minmax") {
            Stretch::MinMax
        } else {
            let v: Vec<f64> = self
                .stretch
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .ok()
                .filter(|v: &Vec<f64>| v.len() == 2)
                .with_context(|| {
                    format!(
                        "--stretch {:?} is neither `minmax` nor LOW,HIGH percentiles like 2,98",
                        self.stretch
                    )
                })?;
            Stretch::Percentile {
                low: v[0],
                high: v[1],
            }
        };
        Ok(LoadOptions { bands, stretch })
    }
}

/// SAM in the box → mask path.
#[derive(Args, Clone)]
struct SamFlags {
    /// Run SAM between CFPG and MBO (PSLG-SAM's stage 2): box + CFPG point → SAM mask → MBO refinement.
    /// An official sam_vit_{b,l,h}_*.pth (or .safetensors); each image (each tile with --tile, the window
    /// with --window) is encoded once.
    #[arg(long, value_name = "CHECKPOINT")]
    sam: Option<PathBuf>,
    /// SAM's decoder attention heads (8 in every official model; not visible in the checkpoint's shapes).
    #[arg(long, default_value_t = 8, requires = "sam")]
    sam_decoder_heads: usize,
    /// Prompt SAM with the box only, without the CFPG point (ablation).
    #[arg(long, requires = "sam")]
    sam_box_only: bool,
}

/// The CPU backend of every command: Burn 0.21's `flex` (gemm-backed matmuls and im2col convolutions on all
/// cores; `docs/performance.md` compares it with `ndarray`).
type CpuBackend = burn_flex::Flex;

impl SamFlags {
    /// The SAM segmenter over `stages`' CFPG / MBO, when `--sam` is given.
    fn segmenter(&self, stages: &BoxSegmenter) -> Result<Option<pslg::SamSegmenter<CpuBackend>>> {
        let Some(path) = &self.sam else {
            return Ok(None);
        };
        let device = Default::default();
        let t = Instant::now();
        let model =
            pslg::sam::Sam::<CpuBackend>::load(path, Some(self.sam_decoder_heads), &device)?;
        say!(
            "SAM loaded from {} in {:.1} s ({}x{} input, ViT {} wide x {} blocks)",
            path.display(),
            t.elapsed().as_secs_f64(),
            model.config().image_size,
            model.config().image_size,
            model.config().embed_dim,
            model.config().depth
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
struct StageFlags {
    /// Skip the clustering-based foreground point generator (no hard-foreground seed for MBO).
    #[arg(long)]
    no_cfpg: bool,
    /// Skip the mask boundary optimisation (the mask is then the box itself).
    #[arg(long)]
    no_mbo: bool,
    /// Background context around the box for MBO, as a fraction of the longer box side.
    #[arg(long, default_value_t = BoxSegmenterParams::default().margin_fraction)]
    margin_fraction: f64,
    /// Smallest background context in pixels.
    #[arg(long, default_value_t = BoxSegmenterParams::default().min_margin)]
    min_margin: u32,
    /// Radius of the hard-foreground disk at the CFPG point, as a fraction of the shorter box side.
    #[arg(long, default_value_t = BoxSegmenterParams::default().seed_radius_fraction)]
    seed_radius: f64,
    /// Return the box when MBO keeps less than this fraction of it.
    #[arg(long, default_value_t = BoxSegmenterParams::default().min_keep_fraction)]
    min_keep: f64,
    /// Refine boxes larger than this many pixels on a downscaled crop (0 = never).
    #[arg(long, default_value_t = BoxSegmenterParams::default().max_mbo_box_pixels)]
    max_mbo_pixels: usize,
    /// MBO stops its rounds once less than this × --min-keep of the box is foreground (0 = never).
    #[arg(long, default_value_t = BoxSegmenterParams::default().abandon_fraction)]
    abandon: f64,
    /// MBO smoothness weight γ.
    #[arg(long, default_value_t = MboParams::default().gamma)]
    gamma: f64,
    /// MBO cut/EM rounds at most.
    #[arg(long, default_value_t = MboParams::default().max_iterations)]
    iterations: usize,
    /// Weight of MBO's smoothness edges to the fixed background outside the box (GrabCut: 1).
    #[arg(long, default_value_t = BoxSegmenterParams::default().mbo.map_or(1.0, |m| m.fixed_background_link))]
    frame_link: f64,
}

impl StageFlags {
    fn segmenter(self) -> Result<BoxSegmenter> {
        let mut p = BoxSegmenterParams {
            margin_fraction: self.margin_fraction,
            min_margin: self.min_margin,
            seed_radius_fraction: self.seed_radius,
            min_keep_fraction: self.min_keep,
            max_mbo_box_pixels: self.max_mbo_pixels,
            abandon_fraction: self.abandon,
            ..Default::default()
        };
        if let Some(m) = p.mbo.as_mut() {
            m.gamma = self.gamma;
            m.max_iterations = self.iterations;
            m.fixed_background_link = self.frame_link;
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

#[derive(Args)]
struct SegmentArgs {
    /// Input image (PNG, JPEG or TIFF; 8/16-bit; 1, 3 or 4 channels).
    #[arg(long)]
    image: PathBuf,
    /// Box prompt `x1,y1,x2,y2` in pixels, x2/y2 exclusive.
    #[arg(
        long = "box",
        value_name = "X1,Y1,X2,Y2",
        allow_hyphen_values = true,
        required_unless_present_any = ["box_map", "text"],
        conflicts_with = "box_map"
    )]
    bbox: Option<String>,
    /// Box prompt in the map coordinates of a georeferenced GeoTIFF input: `minx,miny,maxx,maxy` (any two
    /// opposite corners); converted through the geotransform to the smallest pixel box covering it.
    #[arg(long, value_name = "MINX,MINY,MAXX,MAXY", allow_hyphen_values = true)]
    box_map: Option<String>,
    /// Output mask, the image's size, 0/255: `.tif`/`.tiff` writes a single-band uint8 TIFF carrying the
    /// input's georeference when it has one (a GeoTIFF); any other name writes PNG.
    #[arg(long)]
    out: PathBuf,
    /// Also write the mask as GeoJSON polygons (with holes) in the image's CRS (pixel coordinates when it has
    /// none, said in the file).
    #[arg(long)]
    geojson: Option<PathBuf>,
    /// Decode only the box's context (the crop MBO works on) instead of the whole scene: from a TIFF just the
    /// strips/tiles it touches, so memory follows the box, not the scene. `--out` and `--overlay` are then
    /// that window (a GeoTIFF `--out` keeps an exact georeference), `--geojson` stays in scene coordinates.
    /// A 16/32-bit stretch is computed over the window.
    #[arg(long, conflicts_with = "tile")]
    window: bool,
    /// Process the scene in `SIZE × SIZE` tiles (the model-input windows) read one at a time: memory follows
    /// the tile, not the scene (plus one byte per scene pixel for the output mask). A box whose context fits
    /// one tile is segmented there once; a box crossing tiles is segmented in each and merged along the tile
    /// cores. The stretch of 16/32-bit data is computed over the whole scene first (streamed), so tiles match.
    #[arg(long, value_name = "SIZE")]
    tile: Option<u32>,
    /// Overlap of neighbouring tiles in pixels (with `--tile`); each merged part has half of it as context
    /// beyond its seam.
    #[arg(long, value_name = "PIXELS", default_value_t = 64, requires = "tile")]
    overlap: u32,
    /// Ramer–Douglas–Peucker tolerance in pixels for the GeoJSON polygons (0 = exact pixel boundaries).
    #[arg(long, default_value_t = 0.0, requires = "geojson")]
    simplify: f64,
    #[command(flatten)]
    image_flags: ImageFlags,
    /// Also write the image with the mask, box and CFPG point drawn on it.
    #[arg(long)]
    overlay: Option<PathBuf>,
    #[command(flatten)]
    stages: StageFlags,
    #[command(flatten)]
    sam: SamFlags,
    /// The referring sentence (instead of --box): LQVG grounds it to a box first.
    #[arg(
        long,
        requires_all = ["grounding", "tokenizer"],
        conflicts_with_all = ["bbox", "box_map", "window", "tile"]
    )]
    text: Option<String>,
    #[command(flatten)]
    grounding: GroundingFlags,
}

/// Stage 1: the LQVG model that grounds sentences to boxes.
#[derive(Args)]
struct GroundingFlags {
    /// LQVG checkpoint for sentences (official checkpoint.pth, or a model.safetensors of train-grounding).
    #[arg(long, value_name = "CHECKPOINT")]
    grounding: Option<PathBuf>,
    /// tokenizer.json of the grounding model's text encoder.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The text encoder's config.json (default: next to --tokenizer, else roberta-base's).
    #[arg(long)]
    text_config: Option<PathBuf>,
    /// Attention heads of the grounding model (8 in the official model).
    #[arg(long, default_value_t = 8)]
    grounding_heads: usize,
    /// Square input side of the grounding model (800 in the official code).
    #[arg(long, default_value_t = pslg::grounding::INPUT_SIZE)]
    grounding_input_size: usize,
}

/// The text encoder config: `--text-config`, else `config.json` beside the tokenizer, else roberta-base's.
fn resolve_text_config(
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
    fn grounder(&self) -> Result<Option<pslg::grounding::Grounder<CpuBackend>>> {
        self.grounder_on(Default::default())
    }

    /// [`GroundingFlags::grounder`] on any backend.
    fn grounder_on<B: burn::tensor::backend::Backend>(
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

/// `segment --text`: the grounding box of the sentence as whole pixels.
fn ground_text(
    g: &GroundingFlags,
    text: &str,
    image_path: &Path,
    options: &LoadOptions,
) -> Result<pslg::cfpg::PixelBox> {
    let t = Instant::now();
    let Some(grounder) = g.grounder()? else {
        bail!("--text needs --grounding CHECKPOINT and --tokenizer TOKENIZER.json");
    };
    let image = load_rgb_with(image_path, options)?;
    let out = grounder.predict(&image, text)?;
    let bbox = pslg::pixel_box(out.box_xyxy, image.width(), image.height());
    say!(
        "grounded {text:?}: box {:?} (pixels {},{},{},{}), score {:.3}, query {}, in {:.1} s",
        out.box_xyxy,
        bbox.x1,
        bbox.y1,
        bbox.x2,
        bbox.y2,
        out.score,
        out.query,
        t.elapsed().as_secs_f64()
    );
    Ok(bbox)
}

#[derive(Args)]
struct BatchArgs {
    /// Case file: one JSON object per line with id, image, box (paths relative to the file).
    #[arg(long)]
    cases: PathBuf,
    /// Folder for the predictions, written as <id>.png.
    #[arg(long)]
    out_dir: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    image_flags: ImageFlags,
    #[command(flatten)]
    stages: StageFlags,
    #[command(flatten)]
    sam: SamFlags,
    /// Grounding model for the cases that carry a "text" instead of a "box".
    #[command(flatten)]
    grounding: GroundingFlags,
}

#[derive(Args)]
struct EvalArgs {
    /// Case file with ground-truth `mask` paths.
    #[arg(long)]
    cases: PathBuf,
    /// Folder of predictions <id>.png (a missing prediction counts as an empty mask).
    #[arg(long)]
    pred_dir: PathBuf,
    /// Print a human-readable table instead of one JSON line.
    #[arg(long)]
    table: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Segment(a) => segment(a),
        Command::Batch(a) => batch(a),
        Command::Eval(a) => eval(a),
        Command::Sam(a) => sam(a),
        Command::Ground(a) => ground(a),
        Command::TrainGrounding(a) => train_grounding(a),
        Command::EvalRrsis(a) => eval_rrsis(a),
        Command::FinetuneDecoder(a) => finetune_decoder(a),
    }
}

/// The pixel box of a `--box-map` prompt: the smallest box of whole pixels covering the map rectangle.
fn map_box(
    text: &str,
    georef: Option<&GeoReference>,
    image: &Path,
) -> Result<pslg::cfpg::PixelBox> {
    let Some(g) = georef else {
        bail!(
            "--box-map needs a georeferenced GeoTIFF input, and {} has no georeference; give --box in pixels",
            image.display()
        );
    };
    let v = parse_numbers(text, 4, "--box-map minx,miny,maxx,maxy:")?;
    let (c0, r0) = g.transform.map_to_pixel(v[0], v[1])?;
    let (c1, r1) = g.transform.map_to_pixel(v[2], v[3])?;
    // Corners within 1e-6 pixel of a pixel edge are on it (map ↔ pixel round trips are not exact).
    let snap = |x: f64| {
        if (x - x.round()).abs() < 1e-6 {
            x.round()
        } else {
            x
        }
    };
    let (c0, r0, c1, r1) = (snap(c0), snap(r0), snap(c1), snap(r1));
    let clamp = |x: f64| x.clamp(-1e9, 1e9) as i64;
    Ok(pslg::cfpg::PixelBox::new(
        clamp(c0.min(c1).floor()),
        clamp(r0.min(r1).floor()),
        clamp(c0.max(c1).ceil()),
        clamp(r0.max(r1).ceil()),
    ))
}

fn segment(a: SegmentArgs) -> Result<()> {
    let georef = if is_tiff_path(&a.image) {
        GeoReference::read(&a.image)
            .with_context(|| format!("reading the georeference of {}", a.image.display()))?
    } else {
        None
    };
    let (bbox, prompt) = match (&a.bbox, &a.box_map, &a.text) {
        (Some(b), _, _) => (parse_box(b)?, format!("box {b}")),
        (None, Some(m), _) => (
            map_box(m, georef.as_ref(), &a.image)?,
            format!("map box {m}"),
        ),
        (None, None, Some(text)) => (
            ground_text(&a.grounding, text, &a.image, &a.image_flags.options()?)?,
            format!("text {text:?}"),
        ),
        (None, None, None) => bail!("give --box, --box-map or --text"),
    };
    let seg = a.stages.segmenter()?;
    let options = a.image_flags.options()?;
    // With --window only the box's context is decoded; everything written is that window.
    let (image, origin, bbox) = if a.window {
        let to_u32 = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        // The unclamped box's side bounds the clamped one's, so this window holds MBO's crop; +1 for rounding.
        let side = (bbox.x2 - bbox.x1).max(bbox.y2 - bbox.y1);
        let margin = i64::from(seg.context_margin(to_u32(side))) + 1;
        let (x0, y0) = ((bbox.x1 - margin).max(0), (bbox.y1 - margin).max(0));
        let (x1, y1) = ((bbox.x2 + margin).max(x0), (bbox.y2 + margin).max(y0));
        let want = pslg::cfpg::Roi {
            x: to_u32(x0),
            y: to_u32(y0),
            width: to_u32(x1 - x0),
            height: to_u32(y1 - y0),
        };
        let (img, win) = load_rgb_window(&a.image, want, &options)
            .with_context(|| format!("the context window of {prompt}"))?;
        say!(
            "window {},{} {}x{} decoded (box context, margin {margin} px)",
            win.x,
            win.y,
            win.width,
            win.height
        );
        let (wx, wy) = (i64::from(win.x), i64::from(win.y));
        let shifted =
            pslg::cfpg::PixelBox::new(bbox.x1 - wx, bbox.y1 - wy, bbox.x2 - wx, bbox.y2 - wy);
        (img, (win.x, win.y), shifted)
    } else if a.tile.is_some() {
        // Tiles are read one by one in segment_in_tiles; the overlay reads its own window.
        (RgbImage::new(0, 0), (0, 0), bbox)
    } else {
        (load_rgb_with(&a.image, &options)?, (0, 0), bbox)
    };
    let out_georef = georef.as_ref().map(|g| g.shifted(origin.0, origin.1));
    let mut sam = a.sam.segmenter(&seg)?;
    let t = Instant::now();
    let out = match (a.tile, sam.as_mut()) {
        (None, None) => seg.segment(&image, bbox).map_err(anyhow::Error::from),
        (None, Some(sam)) => sam
            .set_image(&image)
            .and_then(|()| {
                say!("image encoded by SAM in {:.1} s", t.elapsed().as_secs_f64());
                sam.segment(&image, bbox)
            })
            .map_err(anyhow::Error::from),
        (Some(size), sam) => segment_in_tiles(&a, &seg, sam, &options, size, bbox),
    }
    .with_context(|| format!("segmenting {prompt} in {}", a.image.display()))?;
    let elapsed = t.elapsed();
    if is_tiff_path(&a.out) && georef.is_none() {
        say!(
            "note: {} has no georeference; {} is a plain TIFF",
            a.image.display(),
            a.out.display()
        );
    }
    save_mask_for(&out.mask, &a.out, out_georef.as_ref())?;
    if let Some(path) = &a.geojson {
        if !(a.simplify >= 0.0 && a.simplify.is_finite()) {
            bail!(
                "--simplify {} must be a finite number of pixels ≥ 0",
                a.simplify
            );
        }
        // Polygons in the scene's pixel coordinates (a window's are offset by its origin).
        let (ox, oy) = (f64::from(origin.0), f64::from(origin.1));
        let polygons = mask_polygons(&out.mask, (a.simplify > 0.0).then_some(a.simplify))?
            .map_coords(|c| geo::Coord {
                x: c.x + ox,
                y: c.y + oy,
            });
        let object = ObjectFeature {
            id: a
                .image
                .file_stem()
                .map_or_else(|| "object".into(), |s| s.to_string_lossy().into_owned()),
            prompt: prompt.clone(),
            score: None,
            pixels: out.mask.pixels().filter(|p| p[0] != 0).count() as u64,
            polygons,
        };
        let fc = feature_collection(std::slice::from_ref(&object), georef.as_ref());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, fc.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        say!(
            "polygons written to {} ({} part(s), {})",
            path.display(),
            object.polygons.0.len(),
            match georef.as_ref().and_then(|g| g.epsg) {
                Some(code) => format!("EPSG:{code}"),
                None => "pixel coordinates".into(),
            }
        );
    }
    let area = out.mask.pixels().filter(|p| p[0] != 0).count();
    say!(
        "mask written to {} ({} foreground pixels, {:.1} ms)",
        a.out.display(),
        area,
        ms(elapsed)
    );
    if let Some(p) = &out.point {
        match &p.source {
            pslg::cfpg::PointSource::Region { region, .. } => {
                say!(
                    "CFPG point ({:.1}, {:.1}) in image pixels, region convexity {:.3}, area {} px",
                    p.x + f64::from(origin.0),
                    p.y + f64::from(origin.1),
                    region.convexity,
                    region.area
                )
            }
            pslg::cfpg::PointSource::BoxCentre(why) => say!("CFPG point: box centre ({why})"),
        }
    }
    if out.collapsed {
        if a.sam.sam.is_some() {
            say!(
                "note: MBO kept too little of SAM's mask; SAM's mask (inside the box) was returned"
            );
        } else {
            say!("note: MBO kept too little of the box; the box itself was returned");
        }
    }
    if let Some(path) = &a.overlay {
        let point = out.point.as_ref().map(|p| (p.x, p.y));
        let pic = if a.tile.is_some() {
            // The box's context window of the scene, read on its own.
            let margin = seg.context_margin(out.roi.width.max(out.roi.height));
            let want = pslg::cfpg::Roi {
                x: out.roi.x.saturating_sub(margin),
                y: out.roi.y.saturating_sub(margin),
                width: out.roi.width + 2 * margin,
                height: out.roi.height + 2 * margin,
            };
            let (view, win) = load_rgb_window(&a.image, want, &options)?;
            let crop = image::imageops::crop_imm(&out.mask, win.x, win.y, win.width, win.height)
                .to_image();
            let roi = pslg::cfpg::Roi {
                x: out.roi.x - win.x,
                y: out.roi.y - win.y,
                ..out.roi
            };
            let point = point.map(|(x, y)| (x - f64::from(win.x), y - f64::from(win.y)));
            pslg::overlay::draw_overlay_with_legend(&view, &crop, roi, point, Some(&prompt))
        } else {
            pslg::overlay::draw_overlay_with_legend(
                &image,
                &out.mask,
                out.roi,
                point,
                Some(&prompt),
            )
        };
        pic.save(path).map_err(|source| PslgError::WriteImage {
            path: path.clone(),
            source,
        })?;
        say!("overlay written to {}", path.display());
    }
    Ok(())
}

/// `--tile`: the box segmented on a tile grid over the scene, tiles read one at a time with a scene-wide
/// stretch. Returns the merged scene mask with the box and the CFPG point of the part holding the box centre
/// in scene pixels.
fn segment_in_tiles(
    a: &SegmentArgs,
    seg: &BoxSegmenter,
    mut sam: Option<&mut pslg::SamSegmenter<CpuBackend>>,
    options: &LoadOptions,
    size: u32,
    bbox: pslg::cfpg::PixelBox,
) -> Result<pslg::BoxMask> {
    use pslg::tile::{TileGrid, segment_tiled_with};
    let (w, h) = scene_dimensions(&a.image)?;
    let grid = TileGrid::new(w, h, size, a.overlap)?;
    let fixed = LoadOptions {
        stretch: pslg::io::scene_stretch(&a.image, options)?,
        ..options.clone()
    };
    let tiled = segment_tiled_with(
        &grid,
        bbox,
        |side| seg.context_margin(side),
        |roi| load_rgb_window(&a.image, roi, &fixed).map(|(img, _)| img),
        |tile, b| match sam.as_deref_mut() {
            // SAM encodes each tile it is used in.
            Some(s) => s.set_image(tile).and_then(|()| s.segment(tile, b)),
            None => seg.segment(tile, b),
        },
    )?;
    let (cols, rows) = grid.dims();
    say!(
        "{}x{} scene in {cols}x{rows} tiles of {size} px (overlap {}); the box was handled in {} tile(s): {}",
        w,
        h,
        a.overlap,
        tiled.parts.len(),
        tiled
            .parts
            .iter()
            .map(|(t, _)| format!("({},{})", t.col, t.row))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let roi = pslg::cfpg::clamp_box(bbox, w, h)?;
    let (cx, cy) = (roi.x + roi.width / 2, roi.y + roi.height / 2);
    let inside = |r: &pslg::cfpg::Roi, x: u32, y: u32| {
        x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height
    };
    let collapsed = tiled.parts.iter().any(|(_, o)| o.collapsed);
    let home = tiled
        .parts
        .iter()
        .find(|(t, _)| tiled.parts.len() == 1 || inside(&t.core, cx, cy));
    let point = home.and_then(|(t, o)| {
        o.point.clone().map(|mut p| {
            p.x += f64::from(t.roi.x);
            p.y += f64::from(t.roi.y);
            p
        })
    });
    let mut timings = pslg::StageTimings::default();
    for (_, o) in &tiled.parts {
        timings.cfpg += o.timings.cfpg;
        timings.mbo += o.timings.mbo;
    }
    Ok(pslg::BoxMask {
        sam: None,
        mask: tiled.mask,
        roi,
        point,
        refinement: None,
        collapsed,
        timings,
    })
}

/// Width and height of an image file without decoding its pixels.
fn scene_dimensions(path: &Path) -> Result<(u32, u32)> {
    if is_tiff_path(path) {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file))
            .with_context(|| format!("reading the TIFF header of {}", path.display()))?;
        return Ok(dec.dimensions()?);
    }
    image::image_dimensions(path).with_context(|| format!("reading the size of {}", path.display()))
}

/// `pslg sam`: the backend is chosen before any device is touched (creating a CUDA device without a driver
/// aborts).
fn sam(a: SamArgs) -> Result<()> {
    if a.cuda {
        #[cfg(feature = "cuda")]
        {
            return sam_on::<burn::backend::Cuda>(&a, Default::default());
        }
        #[cfg(not(feature = "cuda"))]
        bail!("--cuda needs a binary built with `--features cuda`");
    }
    sam_on::<CpuBackend>(&a, Default::default())
}

/// `n` finite comma-separated numbers (f64: map coordinates need it).
fn parse_numbers(text: &str, n: usize, what: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = text
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<f64>| v.len() == n && v.iter().all(|x| x.is_finite()))
        .with_context(|| format!("{what} {text:?} is not {n} comma-separated numbers"))?;
    Ok(v)
}

fn sam_on<B: burn::tensor::backend::Backend>(a: &SamArgs, device: B::Device) -> Result<()> {
    use pslg::sam::{Prompt, Sam, SamPredictor, npy};
    let mut prompt = Prompt::default();
    for p in &a.points {
        let v = parse_numbers(p, 3, "--point")?;
        if v[2] != 0.0 && v[2] != 1.0 {
            bail!("--point {p:?}: the label must be 1 (foreground) or 0 (background)");
        }
        prompt = prompt.with_point([v[0] as f32, v[1] as f32], v[2] as i32);
    }
    if let Some(b) = &a.bbox {
        let v = parse_numbers(b, 4, "--box")?;
        prompt = prompt.with_box([v[0] as f32, v[1] as f32, v[2] as f32, v[3] as f32]);
    }
    if let Some(path) = &a.mask_input {
        let (values, shape) = npy::read_f32(path)?;
        let (h, w) = match shape[..] {
            [h, w] | [1, h, w] | [1, 1, h, w] => (h, w),
            _ => bail!(
                "{}: mask input of shape {shape:?}; give (h,w), (1,h,w) or (1,1,h,w)",
                path.display()
            ),
        };
        prompt = prompt.with_mask_input(values, h, w);
    }
    if prompt == Prompt::default() {
        bail!("give a prompt: --box, --point (repeatable) and/or --mask-input");
    }
    let image = load_rgb_with(&a.image, &a.image_flags.options()?)?;
    let t = Instant::now();
    let model = Sam::<B>::load(&a.checkpoint, Some(a.decoder_heads), &device)?;
    let c = model.config();
    say!(
        "SAM loaded from {} in {:.1} s: {}x{} input, ViT {} wide x {} blocks ({} heads, window {}, global {:?}), prompt dim {}",
        a.checkpoint.display(),
        t.elapsed().as_secs_f64(),
        c.image_size,
        c.image_size,
        c.embed_dim,
        c.depth,
        c.num_heads,
        c.window_size,
        c.global_attn_indexes,
        c.prompt_dim
    );
    let mut predictor = SamPredictor::new(model, device);
    let t = Instant::now();
    predictor.set_image(&image)?;
    let embedding = predictor.embedding()?;
    let encode = t.elapsed();
    let t = Instant::now();
    let out = predictor.predict(&prompt, a.multimask)?;
    let decode = t.elapsed();
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    npy::write_f32(
        &a.out_dir.join("image_embedding.npy"),
        &embedding.values,
        &embedding.shape,
    )?;
    let (lh, lw) = out.low_res_size;
    npy::write_f32(
        &a.out_dir.join("low_res_masks.npy"),
        &out.low_res,
        &[1, out.num_masks, lh, lw],
    )?;
    npy::write_f32(
        &a.out_dir.join("iou_predictions.npy"),
        &out.iou,
        &[1, out.num_masks],
    )?;
    let best = out.best_index();
    let best_mask = out.mask(best);
    save_mask(&best_mask, &a.out_dir.join("mask.png"))?;
    say!(
        "image encoded in {:.1} ms, prompt decoded in {:.1} ms; {} mask(s), IoU predictions {:?}; best #{best} written to {} ({} foreground pixels)",
        ms(encode),
        ms(decode),
        out.num_masks,
        out.iou,
        a.out_dir.join("mask.png").display(),
        best_mask.pixels().filter(|p| p[0] != 0).count()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct CaseReport {
    segment_ms: f64,
    cfpg_ms: f64,
    mbo_ms: f64,
    collapsed: bool,
    fallback_point: bool,
}

/// `batch`: grounds the cases that carry a sentence and no box (each image loaded once), writing
/// `OUT_DIR/groundings.jsonl` (`{"id", "text", "box", "score"}` per case). Returns the failures.
fn ground_cases(
    cases: &mut [Case],
    g: &GroundingFlags,
    options: &LoadOptions,
    out_dir: &Path,
) -> Result<Vec<String>> {
    let todo: Vec<usize> = (0..cases.len())
        .filter(|&i| cases[i].bbox.is_none())
        .collect();
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let Some(grounder) = g.grounder()? else {
        bail!(
            "{} case(s) carry a \"text\" and no \"box\" (the first: {}); give --grounding CHECKPOINT and --tokenizer TOKENIZER.json to ground them",
            todo.len(),
            cases[todo[0]].id
        );
    };
    let mut failures = Vec::new();
    let mut lines = String::new();
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} sentences grounded, {elapsed} elapsed, eta {eta}",
    )?);
    let mut order = todo;
    order.sort_by(|&x, &y| cases[x].image.cmp(&cases[y].image));
    let mut current: Option<(PathBuf, RgbImage)> = None;
    for i in order {
        let c = &cases[i];
        if current.as_ref().is_none_or(|(p, _)| p != &c.image) {
            match load_rgb_with(&c.image, options) {
                Ok(img) => current = Some((c.image.clone(), img)),
                Err(e) => {
                    failures.push(format!("{}: {e}", c.id));
                    current = None;
                    bar.inc(1);
                    continue;
                }
            }
        }
        let Some((_, image)) = current.as_ref() else {
            continue;
        };
        let text = c.text.clone().unwrap_or_default();
        match grounder.predict(image, &text) {
            Ok(out) => {
                let b = pslg::pixel_box(out.box_xyxy, image.width(), image.height());
                lines += &format!(
                    "{}\n",
                    serde_json::json!({"id": c.id, "text": text, "box": [b.x1, b.y1, b.x2, b.y2], "score": out.score})
                );
                cases[i].bbox = Some(b);
            }
            Err(e) => failures.push(format!("{}: {e}", c.id)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let path = out_dir.join("groundings.jsonl");
    std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    Ok(failures)
}

fn batch(a: BatchArgs) -> Result<()> {
    let mut cases = read_cases(&a.cases)?;
    let seg = a.stages.segmenter()?;
    let load_options = a.image_flags.options()?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let grounding_failures = ground_cases(&mut cases, &a.grounding, &load_options, &a.out_dir)?;
    let cases = cases;
    // Group the cases by image so that each image is decoded once.
    let mut by_image: BTreeMap<&Path, Vec<&Case>> = BTreeMap::new();
    for c in &cases {
        by_image.entry(c.image.as_path()).or_default().push(c);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()?;
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} cases, {elapsed} elapsed, eta {eta}",
    )?);
    let reports = Mutex::new(Vec::new());
    let failures = Mutex::new(grounding_failures);
    let mut sam = a.sam.segmenter(&seg)?;
    let t0 = Instant::now();
    // One image's cases: `segment` runs one case (after `prepare` on the image, e.g. SAM's encoding).
    let run_group = |path: &Path,
                     group: &[&Case],
                     prepare: &mut dyn FnMut(&image::RgbImage) -> Result<(), PslgError>,
                     segment: &dyn Fn(
        &image::RgbImage,
        pslg::cfpg::PixelBox,
    ) -> Result<pslg::BoxMask, PslgError>| {
        let image = match load_rgb_with(path, &load_options).and_then(|i| prepare(&i).map(|()| i)) {
            Ok(i) => i,
            Err(e) => {
                let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                f.extend(group.iter().map(|c| format!("{}: {e}", c.id)));
                bar.inc(group.len() as u64);
                return;
            }
        };
        for c in group {
            let Some(bbox) = c.bbox else {
                // A sentence that could not be grounded (already counted as a failure).
                bar.inc(1);
                continue;
            };
            let t = Instant::now();
            let result = segment(&image, bbox);
            let elapsed = t.elapsed();
            match result.and_then(|out| {
                save_mask(&out.mask, &a.out_dir.join(format!("{}.png", c.id))).map(|()| out)
            }) {
                Ok(out) => reports
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(CaseReport {
                        segment_ms: ms(elapsed),
                        cfpg_ms: ms(out.timings.cfpg),
                        mbo_ms: ms(out.timings.mbo),
                        collapsed: out.collapsed,
                        fallback_point: out.point.as_ref().is_some_and(|p| p.is_fallback()),
                    }),
                Err(e) => failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{}: {e}", c.id)),
            }
            bar.inc(1);
        }
    };
    match sam.as_mut() {
        // SAM: images one after another (the encoder uses every core), each encoded once.
        Some(sam) => {
            for (path, group) in &by_image {
                let sam_cell = std::cell::RefCell::new(&mut *sam);
                run_group(
                    path,
                    group,
                    &mut |img| sam_cell.borrow_mut().set_image(img),
                    &|img, b| sam_cell.borrow().segment(img, b),
                );
            }
        }
        None => pool.install(|| {
            by_image.par_iter().for_each(|(path, group)| {
                run_group(path, group, &mut |_| Ok(()), &|img, b| seg.segment(img, b));
            });
        }),
    }
    bar.finish_and_clear();
    let reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut seg_ms: Vec<f64> = reports.iter().map(|r| r.segment_ms).collect();
    let mut cfpg_ms: Vec<f64> = reports.iter().map(|r| r.cfpg_ms).collect();
    let mut mbo_ms: Vec<f64> = reports.iter().map(|r| r.mbo_ms).collect();
    let summary = serde_json::json!({
        "cases": cases.len(),
        "written": reports.len(),
        "failed": failures.len(),
        "images": by_image.len(),
        "wall_s": (t0.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "median_ms": round2(median(&mut seg_ms)),
        "median_cfpg_ms": round2(median(&mut cfpg_ms)),
        "median_mbo_ms": round2(median(&mut mbo_ms)),
        "mbo_collapsed_to_box": reports.iter().filter(|r| r.collapsed).count(),
        "cfpg_box_centre_fallbacks": reports.iter().filter(|r| r.fallback_point).count(),
        "out_dir": a.out_dir.display().to_string(),
    });
    say!("{summary}");
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("failed: {f}");
        }
        bail!("{} of {} cases failed", failures.len(), cases.len());
    }
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn eval(a: EvalArgs) -> Result<()> {
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
            return Err(PslgError::MaskSize {
                path: pred_path,
                got: pred.dimensions(),
                expected: gt.dimensions(),
            }
            .into());
        }
        let stats = mask_stats_by(pred.as_raw(), gt.as_raw(), |&v| v != 0, |&v| v != 0)?;
        acc.add(stats, c.category.as_deref());
    }
    let s = acc.summary();
    if a.table {
        say!(
            "{}",
            pslg::evaluate::format_table(&[("all", &s)]).trim_end()
        );
    } else {
        say!("{}", pslg::evaluate::summary_json(&s));
    }
    Ok(())
}

/// A `finetune-decoder --out` folder → its best decoder; a file as it is.
fn decoder_file(p: &Path) -> PathBuf {
    if p.is_dir() {
        let best = p.join("best/decoder.safetensors");
        if best.is_file() {
            return best;
        }
        return p.join("last/decoder.safetensors");
    }
    p.to_path_buf()
}

/// Peak resident memory of this process in MB (Linux `VmHWM`), when known.
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn eval_rrsis(a: EvalRrsisArgs) -> Result<()> {
    if a.cuda {
        #[cfg(feature = "cuda")]
        {
            return eval_rrsis_on::<burn::backend::Cuda>(a, Default::default());
        }
        #[cfg(not(feature = "cuda"))]
        bail!("--cuda needs a binary built with `--features cuda`");
    }
    eval_rrsis_on::<CpuBackend>(a, Default::default())
}

fn eval_rrsis_on<B: burn::tensor::backend::Backend>(
    a: EvalRrsisArgs,
    device: B::Device,
) -> Result<()> {
    use pslg::evaluate::{EvalSettings, ResultsFile, Tally, Variant, evaluate, format_table};
    let t = Instant::now();
    let mut samples = read_split(&a.layout, &a.root, &a.refs, &a.split)?;
    if let Some(n) = a.limit {
        samples.truncate(n);
    }
    eprintln!(
        "pslg: {} samples of split {:?} read from {} in {:.1} s",
        samples.len(),
        a.split,
        a.root.display(),
        t.elapsed().as_secs_f64()
    );
    let seg = a.stages.segmenter()?;
    let base = seg.params().clone();
    let variants: Vec<Variant> = if a.ablation {
        Variant::GRID.to_vec()
    } else {
        vec![Variant {
            cfpg: !a.stages.no_cfpg,
            mbo: !a.stages.no_mbo,
        }]
    };
    let stages = variants
        .iter()
        .map(|v| v.stages(&base))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = pslg::Pipeline::<B>::builder(device.clone()).params(base.clone());
    if let Some(path) = &a.sam.sam {
        let mut model = pslg::sam::Sam::<B>::load(path, Some(a.sam.sam_decoder_heads), &device)?;
        if let Some(d) = &a.decoder {
            model = model.load_decoder(decoder_file(d))?;
        }
        let params = pslg::SamSegmenterParams {
            point_prompt: !a.sam.sam_box_only,
            ..Default::default()
        };
        builder = builder.sam(model, params);
    }
    if !a.gt_box {
        let Some(grounder) = a.grounding.grounder_on::<B>(device.clone())? else {
            bail!("without --gt-box, give --grounding CHECKPOINT and --tokenizer TOKENIZER.json");
        };
        builder = builder.grounding(grounder);
    }
    let mut pipeline = builder.build()?;
    let path_json = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let settings = EvalSettings {
        gt_box: a.gt_box,
        variants: variants.clone(),
        protocol: a.protocol.to_string(),
        run: serde_json::json!({
            "root": a.root.display().to_string(),
            "layout": a.layout,
            "split": a.split,
            "limit": a.limit,
            "grounding": path_json(&a.grounding.grounding),
            "sam": path_json(&a.sam.sam),
            "decoder": path_json(&a.decoder),
            "sam_box_only": a.sam.sam_box_only,
            "stages": format!("{base:?}"),
        }),
    };
    let mut results = a
        .out
        .as_ref()
        .map(|p| ResultsFile::open(p, &settings))
        .transpose()?;
    let mut tally = Tally::new(variants.len());
    let skip = results.as_ref().map(|r| r.done.clone()).unwrap_or_default();
    if !skip.is_empty() {
        eprintln!("pslg: resuming: {} samples already scored", skip.len());
    }
    let todo = samples.iter().filter(|s| !skip.contains(&s.id)).count();
    let bar = ProgressBar::new(todo as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} samples, {elapsed} elapsed, eta {eta}",
    )?);
    let speed = evaluate(
        &mut pipeline,
        &samples,
        &settings,
        &stages,
        &skip,
        |r| {
            tally.add(r)?;
            match results.as_mut() {
                Some(f) => f.push(r),
                None => Ok(()),
            }
        },
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    // With a results file, the totals include the resumed samples.
    let tally = results.as_ref().map_or(tally, |r| r.tally.clone());
    let summaries = tally.summaries();
    let mut lines = Vec::new();
    for (v, s) in variants.iter().zip(&summaries) {
        let mut j = pslg::evaluate::summary_json(s);
        if a.ablation {
            j["cfpg"] = v.cfpg.into();
            j["mbo"] = v.mbo.into();
        }
        if let Some(acc) = tally.box_accuracy() {
            j["box_Pr@0.5"] = ((acc * 10000.0).round() / 100.0).into();
        }
        lines.push(j);
    }
    let mut speed_json = speed.to_json();
    if let Some(mb) = peak_rss_mb() {
        speed_json["peak_rss_mb"] = mb.round().into();
    }
    if let Some(f) = results.as_mut() {
        f.finish(&serde_json::json!({"results": lines, "speed": speed_json}))?;
    }
    if a.table {
        let labels: Vec<String> = variants
            .iter()
            .map(|v| {
                if a.ablation {
                    v.name().to_string()
                } else {
                    "all".to_string()
                }
            })
            .collect();
        let rows: Vec<(&str, &Summary)> =
            labels.iter().map(String::as_str).zip(&summaries).collect();
        say!("{}", format_table(&rows).trim_end());
    } else {
        for j in &lines {
            say!("{j}");
        }
    }
    eprintln!(
        "pslg: {} images, {} samples in {:.1} s ({:.2} images/s, {:.2} samples/s; encode {:.1} s, grounding {:.1} s, stage 2 {:.1} s){}",
        speed.images,
        speed.queries,
        speed.wall.as_secs_f64(),
        speed_json["images_per_s"].as_f64().unwrap_or(0.0),
        speed_json["queries_per_s"].as_f64().unwrap_or(0.0),
        speed.encode.as_secs_f64(),
        speed.ground.as_secs_f64(),
        speed.stage2.as_secs_f64(),
        peak_rss_mb().map_or(String::new(), |m| format!("; peak RSS {m:.0} MB"))
    );
    Ok(())
}

fn finetune_decoder(a: FinetuneDecoderArgs) -> Result<()> {
    if a.cuda {
        #[cfg(feature = "cuda")]
        {
            return finetune_decoder_on::<burn::backend::Autodiff<burn::backend::Cuda>>(
                &a,
                Default::default(),
            );
        }
        #[cfg(not(feature = "cuda"))]
        bail!("--cuda needs a binary built with `--features cuda`");
    }
    finetune_decoder_on::<burn::backend::Autodiff<CpuBackend>>(&a, Default::default())
}

fn read_split(
    layout: &str,
    root: &Path,
    refs: &str,
    split: &str,
) -> Result<Vec<pslg::rrsis::RefSample>> {
    Ok(match layout {
        "refsegrs" => pslg::rrsis::read_refsegrs(root, split)?,
        "pairs" => pslg::rrsis::read_pairs(root, split)?,
        _ => pslg::rrsis::read_refcoco(root, refs, split)?,
    })
}

fn finetune_decoder_on<B: burn::tensor::backend::AutodiffBackend>(
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
    let train_all = read_split(&a.layout, &a.root, &a.refs, &a.split)?;
    let mut val = read_split(&a.layout, &a.root, &a.refs, &a.val_split)?;
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

fn ground(a: GroundArgs) -> Result<()> {
    if a.cuda {
        #[cfg(feature = "cuda")]
        {
            return ground_on::<burn::backend::Cuda>(&a, Default::default());
        }
        #[cfg(not(feature = "cuda"))]
        bail!("--cuda needs a binary built with `--features cuda`");
    }
    ground_on::<CpuBackend>(&a, Default::default())
}

fn ground_on<B: burn::tensor::backend::Backend>(a: &GroundArgs, device: B::Device) -> Result<()> {
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

fn train_grounding(a: TrainGroundingArgs) -> Result<()> {
    if a.cuda {
        #[cfg(feature = "cuda")]
        {
            return train_grounding_on::<burn::backend::Autodiff<burn::backend::Cuda>>(
                &a,
                Default::default(),
            );
        }
        #[cfg(not(feature = "cuda"))]
        bail!("--cuda needs a binary built with `--features cuda`");
    }
    train_grounding_on::<burn::backend::Autodiff<CpuBackend>>(&a, Default::default())
}

/// One letterboxed, normalised training or validation sample.
struct Prepared {
    image: image::RgbImage,
    ids: Vec<u32>,
    box_input: [f32; 4],
}

fn prepare_split(
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

fn prepared_batch<B: burn::tensor::backend::Backend>(
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

fn train_grounding_on<B: burn::tensor::backend::AutodiffBackend>(
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
