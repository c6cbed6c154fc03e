//! `pslg sam`: Segment Anything on one image with point / box / mask prompts; writes the embedding, the
//! low-resolution masks, the IoU predictions and the best mask.

use crate::flags::ImageFlags;
use crate::report::{ms, parse_numbers};
use anyhow::{Context, Result, bail};
use clap::Args;
use pslg::io::{load_rgb_with, save_mask};
use std::path::PathBuf;
use std::time::Instant;

/// `pslg sam`.
#[derive(Args)]
pub(crate) struct SamArgs {
    /// SAM checkpoint: an official sam_vit_{b,l,h}_*.pth (or a .safetensors export of its state dict);
    /// the architecture is read from its tensor shapes.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Input image (PNG, JPEG, TIFF; see `segment`).
    #[arg(long)]
    pub(crate) image: PathBuf,
    /// Box prompt `x1,y1,x2,y2` in original-image pixels.
    #[arg(long = "box", value_name = "X1,Y1,X2,Y2", allow_hyphen_values = true)]
    pub(crate) bbox: Option<String>,
    /// Point prompt `x,y,label` (label 1 foreground, 0 background) in original-image pixels; repeatable.
    #[arg(long = "point", value_name = "X,Y,LABEL", allow_hyphen_values = true)]
    pub(crate) points: Vec<String>,
    /// Low-resolution mask input (float32 .npy of shape (h,w), (1,h,w) or (1,1,h,w); e.g. a previous
    /// low_res_masks.npy with one mask).
    #[arg(long)]
    pub(crate) mask_input: Option<PathBuf>,
    /// Return the three multimask outputs instead of one mask.
    #[arg(long)]
    pub(crate) multimask: bool,
    /// Decoder attention heads (not visible in the checkpoint's shapes; 8 in every official model).
    #[arg(long, default_value_t = 8)]
    pub(crate) decoder_heads: usize,
    /// Folder for image_embedding.npy, low_res_masks.npy, iou_predictions.npy and mask.png.
    #[arg(long)]
    pub(crate) out_dir: PathBuf,
    /// Run on the CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    pub(crate) cuda: bool,
    #[command(flatten)]
    pub(crate) image_flags: ImageFlags,
}

/// Runs `pslg sam` on backend `B`.
pub(crate) fn run_on<B: burn::tensor::backend::Backend>(
    a: &SamArgs,
    device: B::Device,
) -> Result<()> {
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
        "SAM loaded from {} in {:.1} s: {}x{} input, {}, prompt dim {}",
        a.checkpoint.display(),
        t.elapsed().as_secs_f64(),
        c.image_size,
        c.image_size,
        c.encoder,
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
