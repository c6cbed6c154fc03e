//! The evaluation loop: every sample of a split through the pipeline, grouped by image, each cell of the
//! ablation grid scored.

use crate::{EvalError, EvalSettings, Protocol, SampleRecord, score};
use burn::tensor::backend::Backend;
use image::GrayImage;
use pslg::{BoxSegmenter, BoxSegmenterParams, Pipeline, PslgError};
use pslg_core::{PixelBox, mask_box};
use pslg_datasets::{DatasetError, rrsis::RefSample};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// One cell of the CFPG × MBO ablation (Table 3 of the paper). With SAM, "no CFPG" prompts SAM with the box
/// alone and "no MBO" keeps SAM's mask; without SAM, "no CFPG" gives MBO no seed point and "no MBO" returns
/// the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Variant {
    /// CFPG point prompt on.
    pub cfpg: bool,
    /// MBO refinement on.
    pub mbo: bool,
}

impl Variant {
    /// The full method.
    pub const FULL: Self = Self {
        cfpg: true,
        mbo: true,
    };

    /// The four cells of the ablation, baseline first, full method last.
    pub const GRID: [Self; 4] = [
        Self {
            cfpg: false,
            mbo: false,
        },
        Self {
            cfpg: true,
            mbo: false,
        },
        Self {
            cfpg: false,
            mbo: true,
        },
        Self::FULL,
    ];

    /// A short name: `none`, `cfpg`, `mbo`, `cfpg+mbo`.
    pub fn name(&self) -> &'static str {
        match (self.cfpg, self.mbo) {
            (false, false) => "none",
            (true, false) => "cfpg",
            (false, true) => "mbo",
            (true, true) => "cfpg+mbo",
        }
    }

    /// The stages of this cell: `base` with CFPG and / or MBO removed.
    ///
    /// # Errors
    /// [`PslgError`] for invalid parameters in `base`.
    pub fn stages(&self, base: &BoxSegmenterParams) -> Result<BoxSegmenter, PslgError> {
        BoxSegmenter::new(BoxSegmenterParams {
            cfpg: base.cfpg.clone().filter(|_| self.cfpg),
            mbo: base.mbo.clone().filter(|_| self.mbo),
            ..base.clone()
        })
    }
}

/// Time spent by an evaluation run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvalSpeed {
    /// Images loaded and encoded.
    pub images: u64,
    /// Samples scored.
    pub queries: u64,
    /// Image decoding and SAM encoding.
    pub encode: Duration,
    /// Grounding forward passes.
    pub ground: Duration,
    /// Stage 2 (CFPG, SAM decoder, MBO), every variant.
    pub stage2: Duration,
    /// Wall time.
    pub wall: Duration,
}

impl EvalSpeed {
    /// As JSON: counts, seconds, images/s, queries/s.
    pub fn to_json(&self) -> serde_json::Value {
        let wall = self.wall.as_secs_f64().max(1e-9);
        serde_json::json!({
            "images": self.images,
            "queries": self.queries,
            "seconds": wall,
            "images_per_s": self.images as f64 / wall,
            "queries_per_s": self.queries as f64 / wall,
            "encode_s": self.encode.as_secs_f64(),
            "ground_s": self.ground.as_secs_f64(),
            "stage2_s": self.stage2.as_secs_f64(),
        })
    }
}

fn empty_stats(gt: &GrayImage, protocol: Protocol) -> Result<[u64; 2], EvalError> {
    let s = score(&GrayImage::new(gt.width(), gt.height()), gt, protocol)?;
    Ok([s.intersection, s.union])
}

/// Runs `samples` (except the ids in `skip`) through `pipeline`, visiting them grouped by image, and gives
/// each [`SampleRecord`] to `sink` as soon as it is scored; `progress` is called after every sample.
///
/// A sample that cannot be predicted (a sentence the tokenizer rejects, an empty ground-truth mask with
/// `--gt-box`, a degenerate grounding box) is recorded with its `error` and scores as an empty prediction:
/// one bad sample does not stop a long run. Unreadable images and masks of another size than their image are
/// errors.
///
/// # Errors
/// [`EvalError::Raster`] / [`EvalError::Dataset`] for unreadable data, [`PslgError::NoGrounding`] without
/// `settings.gt_box` on a pipeline without grounding, and whatever `sink` returns.
pub fn evaluate<B: Backend>(
    pipeline: &mut Pipeline<B>,
    samples: &[RefSample],
    settings: &EvalSettings,
    stages: &[BoxSegmenter],
    skip: &HashSet<String>,
    mut sink: impl FnMut(&SampleRecord) -> Result<(), EvalError>,
    mut progress: impl FnMut(),
) -> Result<EvalSpeed, EvalError> {
    let protocol = settings.protocol;
    if stages.len() != settings.variants.len() {
        return Err(EvalError::InvalidParam {
            name: "stages",
            value: format!("{} for {} variants", stages.len(), settings.variants.len()),
        });
    }
    if !settings.gt_box && !pipeline.has_grounding() {
        return Err(PslgError::NoGrounding.into());
    }
    let t0 = Instant::now();
    let mut speed = EvalSpeed::default();
    let mut order: Vec<&RefSample> = samples.iter().filter(|s| !skip.contains(&s.id)).collect();
    order.sort_by(|a, b| a.image.cmp(&b.image));
    let mut i = 0;
    while i < order.len() {
        let path = &order[i].image;
        let group_end = i + order[i..].iter().take_while(|s| &s.image == path).count();
        let t = Instant::now();
        let image = pslg_geo::raster::load_rgb(path)?;
        pipeline.set_image(&image)?;
        speed.encode += t.elapsed();
        speed.images += 1;
        for sample in &order[i..group_end] {
            let record = evaluate_one(
                pipeline, &image, sample, settings, stages, protocol, &mut speed,
            )?;
            sink(&record)?;
            speed.queries += 1;
            progress();
        }
        i = group_end;
    }
    speed.wall = t0.elapsed();
    Ok(speed)
}

fn evaluate_one<B: Backend>(
    pipeline: &Pipeline<B>,
    image: &image::RgbImage,
    sample: &RefSample,
    settings: &EvalSettings,
    stages: &[BoxSegmenter],
    protocol: Protocol,
    speed: &mut EvalSpeed,
) -> Result<SampleRecord, EvalError> {
    let gt = sample.mask()?;
    if gt.dimensions() != image.dimensions() {
        return Err(EvalError::Dataset(DatasetError::Dataset {
            path: sample.image.clone(),
            record: sample.id.clone(),
            reason: format!(
                "the mask is {:?} but the image is {:?} (width, height)",
                gt.dimensions(),
                image.dimensions()
            ),
        }));
    }
    let mut record = SampleRecord {
        id: sample.id.clone(),
        category: sample.category.clone(),
        bbox: None,
        score: None,
        box_iou: None,
        stats: Vec::new(),
        error: None,
    };
    let failed = |mut record: SampleRecord, reason: String| -> Result<SampleRecord, EvalError> {
        let empty = empty_stats(&gt, protocol)?;
        record.stats = vec![empty; stages.len()];
        record.error = Some(reason);
        Ok(record)
    };
    let gt_box = mask_box(&gt);
    let bbox = if settings.gt_box {
        match gt_box {
            Some(b) => b,
            None => {
                return failed(
                    record,
                    "the ground-truth mask is empty: no box to prompt".into(),
                );
            }
        }
    } else {
        let t = Instant::now();
        let grounded = pipeline.ground(image, &sample.text);
        speed.ground += t.elapsed();
        match grounded {
            Ok((g, b)) => {
                record.score = Some(g.score);
                record.box_iou = Some(gt_box.map_or(0.0, |gb| {
                    let xyxy = |p: PixelBox| {
                        pslg_metrics::BoxXyxy::new(
                            p.x1 as f64,
                            p.y1 as f64,
                            p.x2 as f64,
                            p.y2 as f64,
                        )
                    };
                    pslg_metrics::box_iou(&xyxy(b), &xyxy(gb))
                }));
                b
            }
            Err(e @ (PslgError::Grounding(_) | PslgError::Cfpg(_))) => {
                return failed(record, e.to_string());
            }
            Err(e) => return Err(e.into()),
        }
    };
    record.bbox = Some([bbox.x1, bbox.y1, bbox.x2, bbox.y2]);
    let t = Instant::now();
    for result in pipeline.segment_box_cells(image, bbox, stages) {
        let stats = match result {
            Ok(out) => {
                let st = score(&out.mask, &gt, protocol)?;
                [st.intersection, st.union]
            }
            Err(e @ (PslgError::Cfpg(_) | PslgError::Mbo(_))) => {
                record.error.get_or_insert(e.to_string());
                empty_stats(&gt, protocol)?
            }
            Err(e) => return Err(e.into()),
        };
        record.stats.push(stats);
    }
    speed.stage2 += t.elapsed();
    Ok(record)
}
