//! `pslg eval-rrsis`: the pipeline on a referring segmentation split (the paper's Tables 1 and 3),
//! resumable through its results file; `--shard K/N` runs one shard of a job array, `--merge` totals the
//! shards' files into what one whole run prints.

use crate::flags::{GroundingFlags, SamFlags, StageFlags};
use crate::report::{decoder_file, peak_rss_mb};
use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// `pslg eval-rrsis`.
#[derive(Args)]
pub(crate) struct EvalRrsisArgs {
    /// Dataset root: `refs(unc).p`, `instances.json`, `JPEGImages/` (refcoco layout) or `images/`, `masks/`,
    /// `output_phrase_{split}.txt` (refsegrs layout).
    #[arg(long, required_unless_present = "merge")]
    pub(crate) root: Option<PathBuf>,
    /// `refcoco` (RRSIS-D, RRSIS-M), `refsegrs`, or `pairs` (`ROOT/{split}.jsonl` of image–mask pairs with
    /// a sentence each: `{"id", "image", "mask", "text", "category"?}`).
    #[arg(long, default_value = "refcoco", value_parser = |s: &str| s.parse::<pslg_datasets::rrsis::Layout>())]
    pub(crate) layout: pslg_datasets::rrsis::Layout,
    /// Split to evaluate (`test`, `val`, `train`…).
    #[arg(long, default_value = "test")]
    pub(crate) split: String,
    /// The references pickle of the refcoco layout, relative to --root.
    #[arg(long, default_value = "refs(unc).p")]
    pub(crate) refs: String,
    /// Prompt with the ground-truth mask's tight box instead of grounding the sentence (isolates stage 2).
    #[arg(long)]
    pub(crate) gt_box: bool,
    #[command(flatten)]
    pub(crate) grounding: GroundingFlags,
    #[command(flatten)]
    pub(crate) sam: SamFlags,
    /// A fine-tuned SAM mask decoder (`finetune-decoder --out` folder, or its decoder.safetensors).
    #[arg(long, requires = "sam")]
    pub(crate) decoder: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) stages: StageFlags,
    /// Evaluate the CFPG × MBO grid (Table 3) in one pass: images encoded and boxes grounded once.
    #[arg(long, conflicts_with_all = ["no_cfpg", "no_mbo"])]
    pub(crate) ablation: bool,
    /// `original` (masks at the image size) or a square side such as `480` (RMSIN's protocol).
    #[arg(long, default_value = "original")]
    pub(crate) protocol: pslg_eval::Protocol,
    /// Results file (JSON lines: settings, one line per sample, summary). An existing one is resumed.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Evaluate only the first N samples of the split.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Print a human-readable table instead of JSON lines.
    #[arg(long)]
    pub(crate) table: bool,
    /// Run SAM and grounding on the CUDA GPU (build with `--features cuda`); CFPG and MBO stay on the CPU.
    #[arg(long)]
    pub(crate) cuda: bool,
    /// Evaluate only shard K of N (0-based; whole images, balanced by sample count), or `auto` in a Slurm
    /// array / Kubernetes Indexed Job. Needs --out: the shard writes OUT with `.K-of-N` before its extension
    /// (`results.jsonl` → `results.2-of-8.jsonl`), resumed when it exists.
    #[arg(long, requires = "out")]
    pub(crate) shard: Option<String>,
    /// Merge the results files of a sharded run's N shards and print what one whole run prints (the same
    /// JSON lines, or --table); nothing is evaluated.
    #[arg(long, num_args = 1.., conflicts_with_all = ["shard", "root", "out"])]
    pub(crate) merge: Vec<PathBuf>,
}

/// Prints a run's results: JSON lines, or the table.
fn print_results(settings: &pslg_eval::EvalSettings, tally: &pslg_eval::Tally, table: bool) {
    if table {
        say!("{}", pslg_eval::result_table(settings, tally).trim_end());
    } else {
        for j in pslg_eval::result_lines(settings, tally) {
            say!("{j}");
        }
    }
}

/// Runs `pslg eval-rrsis` on backend `B`.
pub(crate) fn run_on<B: burn::tensor::backend::Backend>(
    a: EvalRrsisArgs,
    device: B::Device,
) -> Result<()> {
    use pslg_eval::{EvalSettings, ResultsFile, Tally, Variant, evaluate};
    if !a.merge.is_empty() {
        let (settings, tally) = pslg_eval::merge_results(&a.merge)?;
        eprintln!(
            "pslg: merged {} shards, {} samples",
            a.merge.len(),
            tally.len()
        );
        print_results(&settings, &tally, a.table);
        return Ok(());
    }
    let Some(root) = a.root.clone() else {
        bail!("give --root DATASET (or --merge RESULTS… to merge a sharded run)");
    };
    let shard = match a.shard.as_deref() {
        Some(s) => Some(pslg_datasets::shard::Shard::parse(s, |n| {
            std::env::var(n).ok()
        })?),
        None => None,
    };
    let t = Instant::now();
    let mut samples = pslg_datasets::rrsis::read_split(a.layout, &root, &a.refs, &a.split)?;
    if let Some(n) = a.limit {
        samples.truncate(n);
    }
    let split_samples = samples.len();
    if let Some(sh) = shard {
        samples = sh.select(samples, |s| s.image.as_path());
        eprintln!(
            "pslg: shard {sh}: {} of {split_samples} samples",
            samples.len()
        );
    }
    eprintln!(
        "pslg: {} samples of split {:?} read from {} in {:.1} s",
        samples.len(),
        a.split,
        root.display(),
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
        protocol: a.protocol,
        run: serde_json::json!({
            "root": root.display().to_string(),
            "layout": a.layout.name(),
            "split": a.split,
            "limit": a.limit,
            "grounding": path_json(&a.grounding.grounding),
            "sam": path_json(&a.sam.sam),
            "decoder": path_json(&a.decoder),
            "sam_box_only": a.sam.sam_box_only,
            "stages": format!("{base:?}"),
        }),
    };
    let (settings, out) = match shard {
        Some(sh) => (
            pslg_eval::shard_settings(&settings, sh, split_samples),
            a.out.as_ref().map(|p| pslg_eval::shard_path(p, sh)),
        ),
        None => (settings, a.out.clone()),
    };
    if let (Some(sh), Some(p)) = (shard, &out) {
        eprintln!("pslg: shard {sh} writes {}", p.display());
    }
    let mut results = out
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
    let lines = pslg_eval::result_lines(&settings, &tally);
    let mut speed_json = speed.to_json();
    if let Some(mb) = peak_rss_mb() {
        speed_json["peak_rss_mb"] = mb.round().into();
    }
    if let Some(f) = results.as_mut() {
        f.finish(&serde_json::json!({"results": lines, "speed": speed_json}))?;
    }
    print_results(&settings, &tally, a.table);
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
