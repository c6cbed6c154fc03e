//! `pslg batch`: every case of a case file, each image decoded once, images in parallel (one after another
//! with SAM, whose encoder uses every core); one JSON summary line. With `--shard K/N` (or `auto` in a job
//! array) only that shard's images; with `--resume` the cases whose mask is already written are skipped.
//! Malformed lines and failed cases are reported per case (with their line) and the rest runs.

use crate::flags::{GroundingFlags, ImageFlags, SamFlags, StageFlags};
use crate::report::{median, ms, round2};
use anyhow::{Context, Result, bail};
use clap::Args;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use pslg::PslgError;
use pslg::io::{LoadOptions, load_rgb_with, save_mask};
use pslg_datasets::cases::{Case, CaseFile, read_cases, read_cases_lenient};
use pslg_datasets::shard::Shard;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// `pslg batch`.
#[derive(Args)]
pub(crate) struct BatchArgs {
    /// Case file: one JSON object per line with id, image, box (paths relative to the file).
    #[arg(long)]
    pub(crate) cases: PathBuf,
    /// Folder for the predictions, written as <id>.png.
    #[arg(long)]
    pub(crate) out_dir: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    #[command(flatten)]
    pub(crate) image_flags: ImageFlags,
    #[command(flatten)]
    pub(crate) stages: StageFlags,
    #[command(flatten)]
    pub(crate) sam: SamFlags,
    /// Grounding model for the cases that carry a "text" instead of a "box".
    #[command(flatten)]
    pub(crate) grounding: GroundingFlags,
    /// Run only shard K of N (0-based; whole images, balanced by case count), or `auto`: the index and count
    /// of a Slurm array task or Kubernetes Indexed Job (docs/scale-out.md). `auto` turns --resume on.
    #[arg(long)]
    pub(crate) shard: Option<String>,
    /// Skip the cases whose mask is already in --out-dir (every file is written whole or not at all, so a
    /// present mask is complete): rerunning a killed run finishes it.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Refuse the whole case file at its first malformed line, before any work (without it, malformed lines
    /// are reported per case and the rest runs).
    #[arg(long)]
    pub(crate) strict: bool,
}

/// A case that produced no mask: its line in the case file (when known), id (when known) and why.
pub(crate) struct Failure {
    line: Option<usize>,
    id: Option<String>,
    error: String,
}

impl Failure {
    fn of(c: &Case, error: impl std::fmt::Display) -> Self {
        Self {
            line: Some(c.line),
            id: Some(c.id.clone()),
            error: error.to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"line": self.line, "id": self.id, "error": self.error})
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, &self.id) {
            (Some(l), Some(id)) => write!(f, "line {l} ({id}): {}", self.error),
            (Some(l), None) => write!(f, "line {l}: {}", self.error),
            _ => write!(f, "{}", self.error),
        }
    }
}

/// What one segmented case reports into the summary.
pub(crate) struct CaseReport {
    segment_ms: f64,
    cfpg_ms: f64,
    mbo_ms: f64,
    collapsed: bool,
    fallback_point: bool,
}

/// `batch`: grounds the cases that carry a sentence and no box (each image loaded once), writing
/// `groundings` (`{"id", "text", "box", "score"}` per case; the lines of other ids already there are kept,
/// for a resumed run). Returns the failures.
pub(crate) fn ground_cases(
    cases: &mut [Case],
    g: &GroundingFlags,
    options: &LoadOptions,
    groundings: &Path,
) -> Result<Vec<Failure>> {
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
                    failures.push(Failure::of(c, e));
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
            Err(e) => failures.push(Failure::of(c, e)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Keep what an earlier (killed) run of this shard grounded for the cases it finished.
    let regrounded: HashSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let old = std::fs::read_to_string(groundings).unwrap_or_default();
    let kept: String = old
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["id"].as_str().map(|id| !regrounded.contains(id)))
                .unwrap_or(false)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    pslg_core::atomic::write_atomic_bytes(groundings, (kept + &lines).as_bytes())
        .with_context(|| format!("writing {}", groundings.display()))?;
    Ok(failures)
}

/// Runs `pslg batch`.
pub(crate) fn run(a: BatchArgs) -> Result<()> {
    let shard = match a.shard.as_deref() {
        Some(s) => Shard::parse(s, |n| std::env::var(n).ok())?,
        None => Shard::WHOLE,
    };
    let resume = a.resume || a.shard.as_deref().is_some_and(|s| s.trim() == "auto");
    let file = if a.strict {
        CaseFile {
            cases: read_cases(&a.cases)?,
            errors: Vec::new(),
        }
    } else {
        read_cases_lenient(&a.cases)?
    };
    // Malformed lines belong to no image: shard 0 reports them, once for the whole array.
    let mut failures: Vec<Failure> = if shard.index == 0 {
        file.errors
            .iter()
            .map(|e| Failure {
                line: match e {
                    pslg_datasets::DatasetError::BadCase { line, .. } => Some(*line),
                    _ => None,
                },
                id: None,
                error: e.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let cases = shard.select(file.cases, |c| c.image.as_path());
    let in_shard = cases.len() + failures.len();
    let seg = a.stages.segmenter()?;
    let load_options = a.image_flags.options()?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let groundings = a.out_dir.join(if shard.is_whole() {
        "groundings.jsonl".to_string()
    } else {
        format!("groundings.{}.jsonl", shard.tag())
    });
    // Temporary files that a killed run of this shard left (never another shard's, which may be writing).
    let mine: HashSet<String> = cases
        .iter()
        .map(|c| format!("{}.png", c.id))
        .chain(
            groundings
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
        )
        .collect();
    pslg_core::atomic::remove_partials(&a.out_dir, |t| mine.contains(t))
        .with_context(|| format!("clearing partial files in {}", a.out_dir.display()))?;
    let mask_path = |c: &Case| a.out_dir.join(format!("{}.png", c.id));
    let (done, mut cases): (Vec<Case>, Vec<Case>) = cases
        .into_iter()
        .partition(|c| resume && mask_path(c).is_file());
    failures.extend(ground_cases(
        &mut cases,
        &a.grounding,
        &load_options,
        &groundings,
    )?);
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
    let failures = Mutex::new(failures);
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
        let image = match load_rgb_with(path, &load_options)
            .map_err(PslgError::from)
            .and_then(|i| prepare(&i).map(|()| i))
        {
            Ok(i) => i,
            Err(e) => {
                let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                f.extend(group.iter().map(|c| Failure::of(c, &e)));
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
                save_mask(&out.mask, &mask_path(c))
                    .map(|()| out)
                    .map_err(PslgError::from)
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
                    .push(Failure::of(c, e)),
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
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by_key(|f| f.line);
    let mut seg_ms: Vec<f64> = reports.iter().map(|r| r.segment_ms).collect();
    let mut cfpg_ms: Vec<f64> = reports.iter().map(|r| r.cfpg_ms).collect();
    let mut mbo_ms: Vec<f64> = reports.iter().map(|r| r.mbo_ms).collect();
    let summary = serde_json::json!({
        "cases": in_shard,
        "written": reports.len(),
        "skipped": done.len(),
        "failed": failures.len(),
        "images": by_image.len(),
        "wall_s": (t0.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "median_ms": round2(median(&mut seg_ms)),
        "median_cfpg_ms": round2(median(&mut cfpg_ms)),
        "median_mbo_ms": round2(median(&mut mbo_ms)),
        "mbo_collapsed_to_box": reports.iter().filter(|r| r.collapsed).count(),
        "cfpg_box_centre_fallbacks": reports.iter().filter(|r| r.fallback_point).count(),
        "out_dir": a.out_dir.display().to_string(),
        "shard": shard.to_string(),
        "failures": failures.iter().map(Failure::json).collect::<Vec<_>>(),
    });
    say!("{summary}");
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("failed: {f}");
        }
        bail!("{} of {} cases failed", failures.len(), in_shard);
    }
    Ok(())
}
