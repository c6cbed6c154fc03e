//! `pslg batch`: every case of a case file, each image decoded once, images in parallel (one after another
//! with SAM, whose encoder uses every core); one JSON summary line.

use crate::flags::{GroundingFlags, ImageFlags, SamFlags, StageFlags};
use crate::report::{median, ms, round2};
use anyhow::{Context, Result, bail};
use clap::Args;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use pslg::PslgError;
use pslg::io::{LoadOptions, load_rgb_with, save_mask};
use pslg_datasets::cases::{Case, read_cases};
use rayon::prelude::*;
use std::collections::BTreeMap;
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
/// `OUT_DIR/groundings.jsonl` (`{"id", "text", "box", "score"}` per case). Returns the failures.
pub(crate) fn ground_cases(
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

/// Runs `pslg batch`.
pub(crate) fn run(a: BatchArgs) -> Result<()> {
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
        let image = match load_rgb_with(path, &load_options)
            .map_err(PslgError::from)
            .and_then(|i| prepare(&i).map(|()| i))
        {
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
                save_mask(&out.mask, &a.out_dir.join(format!("{}.png", c.id)))
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
