//! Referring-segmentation evaluation over a dataset (`pslg eval-rrsis`): every sample of a split through the
//! pipeline, scored as the RRSIS tables are (Pr@0.5–0.9, oIoU, mIoU, per-category mIoU), optionally for the
//! whole CFPG × MBO ablation grid in one pass, streamed to a resumable JSON-lines results file.
//!
//! Each image is loaded and encoded by SAM once for all its expressions (samples are visited grouped by
//! image); the grounding box of a sentence is computed once and shared by every cell of the grid; memory holds
//! one image, its masks and the running totals, whatever the dataset's size.

use crate::rrsis::RefSample;
use crate::{BoxSegmenter, BoxSegmenterParams, Pipeline, PslgError};
use burn::tensor::backend::Backend;
use image::{GrayImage, imageops::FilterType};
use pslg_cfpg::PixelBox;
use pslg_metrics::{Accumulator, MaskStats, PRECISION_THRESHOLDS, Summary, mask_stats_by};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How predictions are compared with targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// At the image's own size (the PSLG-SAM paper's evaluation).
    Original,
    /// Both masks resized to `n × n` first (RMSIN's evaluation uses 480): targets with nearest-neighbour
    /// sampling, predictions bilinearly (a 0/255 mask filtered, then thresholded at ½), as a network's
    /// logits resized before the threshold would be.
    Square(u32),
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "original" {
            return Ok(Self::Original);
        }
        s.parse::<u32>()
            .ok()
            .filter(|&n| (1..=16384).contains(&n))
            .map(Self::Square)
            .ok_or_else(|| {
                format!("protocol {s:?}: use `original` or a square side in pixels such as `480` (RMSIN)")
            })
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Original => f.write_str("original"),
            Self::Square(n) => write!(f, "{n}"),
        }
    }
}

/// Intersection and union of `pred` and `gt` (0 = background, anything else foreground) under `protocol`.
///
/// # Errors
/// [`PslgError::InvalidParam`] when the two masks differ in size.
pub fn score(pred: &GrayImage, gt: &GrayImage, protocol: Protocol) -> Result<MaskStats, PslgError> {
    if pred.dimensions() != gt.dimensions() {
        return Err(PslgError::InvalidParam {
            name: "prediction size",
            value: format!(
                "{:?} (ground truth {:?})",
                pred.dimensions(),
                gt.dimensions()
            ),
        });
    }
    let fg = |v: &u8| *v != 0;
    match protocol {
        Protocol::Original => Ok(mask_stats_by(pred.as_raw(), gt.as_raw(), fg, fg)?),
        Protocol::Square(n) => {
            let binary = GrayImage::from_fn(pred.width(), pred.height(), |x, y| {
                image::Luma([if pred.get_pixel(x, y)[0] != 0 { 255 } else { 0 }])
            });
            let p = image::imageops::resize(&binary, n, n, FilterType::Triangle);
            let g = image::imageops::resize(gt, n, n, FilterType::Nearest);
            Ok(mask_stats_by(p.as_raw(), g.as_raw(), |v| *v >= 128, fg)?)
        }
    }
}

/// The tight box of a mask's foreground (`x2`/`y2` exclusive), `None` for an empty mask: the ground-truth
/// box prompt of `--gt-box`.
pub fn mask_box(mask: &GrayImage) -> Option<PixelBox> {
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, v) in mask.enumerate_pixels() {
        if v[0] != 0 {
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
        }
    }
    (x2 > 0).then(|| PixelBox::new(x1.into(), y1.into(), x2.into(), y2.into()))
}

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

/// What an evaluation run is: checked when a results file is resumed, so that one file never mixes two
/// settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Box prompts from the ground-truth masks (`--gt-box`) instead of grounding.
    pub gt_box: bool,
    /// The cells evaluated (one, or the ablation grid).
    pub variants: Vec<Variant>,
    /// `original` or the square side.
    pub protocol: String,
    /// Anything else that identifies the run (dataset, split, checkpoints, parameters), as the caller
    /// describes it.
    pub run: serde_json::Value,
}

/// One scored sample: a line of the results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The sample id.
    pub id: String,
    /// Its category, when the dataset has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The box prompt used, pixels `[x1, y1, x2, y2]` (`x2`/`y2` exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[i64; 4]>,
    /// The grounding score (sentence → box runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// IoU of the grounding box with the ground-truth box (sentence → box runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_iou: Option<f64>,
    /// `[intersection, union]` pixels for each variant, in the settings' order.
    pub stats: Vec<[u64; 2]>,
    /// Why the sample has no prediction (it then scores as an empty mask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Running totals of an evaluation: one [`Accumulator`] per variant, and the grounding boxes' accuracy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    accumulators: Vec<Accumulator>,
    boxes: u64,
    boxes_hit: u64,
}

impl Tally {
    /// Empty totals for `variants` cells.
    pub fn new(variants: usize) -> Self {
        Self {
            accumulators: vec![Accumulator::new(); variants],
            ..Self::default()
        }
    }

    /// Adds one record.
    ///
    /// # Errors
    /// [`PslgError::InvalidParam`] when the record has another number of variants.
    pub fn add(&mut self, r: &SampleRecord) -> Result<(), PslgError> {
        if r.stats.len() != self.accumulators.len() {
            return Err(PslgError::InvalidParam {
                name: "record variants",
                value: format!("{} (expected {})", r.stats.len(), self.accumulators.len()),
            });
        }
        for (acc, s) in self.accumulators.iter_mut().zip(&r.stats) {
            acc.add(
                MaskStats {
                    intersection: s[0],
                    union: s[1],
                },
                r.category.as_deref(),
            );
        }
        if let Some(iou) = r.box_iou {
            self.boxes += 1;
            self.boxes_hit += u64::from(iou >= 0.5);
        }
        Ok(())
    }

    /// Samples added.
    pub fn len(&self) -> u64 {
        self.accumulators.first().map_or(0, Accumulator::len)
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metrics of each variant.
    pub fn summaries(&self) -> Vec<Summary> {
        self.accumulators.iter().map(Accumulator::summary).collect()
    }

    /// Fraction of grounding boxes with IoU ≥ 0.5 against the ground-truth box (the grounding stage's own
    /// Pr@0.5), `None` without grounding.
    pub fn box_accuracy(&self) -> Option<f64> {
        (self.boxes > 0).then(|| self.boxes_hit as f64 / self.boxes as f64)
    }
}

/// Metrics in percent, keyed as in the RRSIS tables (and `pslg eval`, `boxmask_eval.py`):
/// `{"n", "mIoU", "oIoU", "Pr@0.5", …, "Pr@0.9", "per_category": {name: {"n", "mIoU"}}}`.
pub fn summary_json(s: &Summary) -> serde_json::Value {
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let mut m = serde_json::Map::new();
    m.insert("n".into(), s.n.into());
    m.insert("mIoU".into(), round2(100.0 * s.miou).into());
    m.insert("oIoU".into(), round2(100.0 * s.oiou).into());
    for t in PRECISION_THRESHOLDS {
        m.insert(
            format!("Pr@{t}"),
            round2(100.0 * s.precision_at(t).unwrap_or(0.0)).into(),
        );
    }
    let per: serde_json::Map<String, serde_json::Value> = s
        .per_category
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::json!({"n": v.n, "mIoU": round2(100.0 * v.miou)}),
            )
        })
        .collect();
    m.insert("per_category".into(), per.into());
    serde_json::Value::Object(m)
}

/// A text table of labelled summaries (percent): one row per summary, then each one's per-category mIoU.
pub fn format_table(rows: &[(&str, &Summary)]) -> String {
    let mut out = format!(
        "{:<22} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
        "", "n", "mIoU", "oIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9"
    );
    for (label, s) in rows {
        let pr: Vec<String> = PRECISION_THRESHOLDS
            .iter()
            .map(|&t| format!("{:>7.2}", 100.0 * s.precision_at(t).unwrap_or(0.0)))
            .collect();
        out += &format!(
            "{:<22} {:>6} {:>7.2} {:>7.2} {}\n",
            label,
            s.n,
            100.0 * s.miou,
            100.0 * s.oiou,
            pr.join(" ")
        );
    }
    for (label, s) in rows {
        if s.per_category.is_empty() {
            continue;
        }
        if rows.len() > 1 {
            out += &format!("per category ({label}):\n");
        }
        for (k, v) in &s.per_category {
            out += &format!("{:<22} {:>6} {:>7.2}\n", k, v.n, 100.0 * v.miou);
        }
    }
    out
}

/// A JSON-lines results file: a header line `{"settings": …}`, one [`SampleRecord`] per line, and after a
/// finished run a `{"summary": …}` line. Reopening it resumes: the records already there are counted and
/// skipped.
#[derive(Debug)]
pub struct ResultsFile {
    path: PathBuf,
    writer: BufWriter<std::fs::File>,
    /// Totals of the records in the file (resumed ones included).
    pub tally: Tally,
    /// Ids already scored.
    pub done: HashSet<String>,
}

impl ResultsFile {
    /// Creates `path`, or resumes it when it exists: its settings must equal `settings`; a truncated last
    /// line (an interrupted run) is dropped; an old summary line is removed (a new one is written at the end).
    ///
    /// # Errors
    /// [`PslgError::Results`] when the file cannot be read or written, holds other settings, or has a
    /// malformed line other than the last.
    pub fn open(path: &Path, settings: &EvalSettings) -> Result<Self, PslgError> {
        let err = |reason: String| PslgError::Results {
            path: path.to_path_buf(),
            reason,
        };
        let header = serde_json::json!({ "settings": settings });
        let mut tally = Tally::new(settings.variants.len());
        let mut done = HashSet::new();
        let mut kept: Vec<String> = Vec::new();
        if path.exists() {
            let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
            let lines: Vec<String> = std::io::BufReader::new(f)
                .lines()
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?;
            let first: serde_json::Value = lines
                .first()
                .and_then(|l| serde_json::from_str(l).ok())
                .ok_or_else(|| {
                    err("its first line is not a settings header; is it a results file?".into())
                })?;
            if first != header {
                return Err(err(format!(
                    "it was written with other settings ({}); resume with the same options, or give another --out",
                    first["settings"]
                )));
            }
            let n = lines.len();
            for (i, line) in lines.iter().enumerate().skip(1) {
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(_) if i + 1 == n => break, // the interrupted last write
                    Err(e) => return Err(err(format!("line {}: {e}", i + 1))),
                };
                if v.get("summary").is_some() {
                    continue;
                }
                let r: SampleRecord =
                    serde_json::from_value(v).map_err(|e| err(format!("line {}: {e}", i + 1)))?;
                if done.insert(r.id.clone()) {
                    tally
                        .add(&r)
                        .map_err(|e| err(format!("line {}: {e}", i + 1)))?;
                    kept.push(line.clone());
                }
            }
        }
        let tmp = path.with_extension("rewrite");
        {
            let f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
            let mut w = BufWriter::new(f);
            writeln!(w, "{header}").map_err(|e| err(e.to_string()))?;
            for l in &kept {
                writeln!(w, "{l}").map_err(|e| err(e.to_string()))?;
            }
            w.flush().map_err(|e| err(e.to_string()))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::new(f),
            tally,
            done,
        })
    }

    /// Appends a record (flushed, so an interruption loses at most the sample in progress) and counts it.
    ///
    /// # Errors
    /// [`PslgError::Results`] when writing fails.
    pub fn push(&mut self, r: &SampleRecord) -> Result<(), PslgError> {
        let err = |reason: String| PslgError::Results {
            path: self.path.clone(),
            reason,
        };
        let line = serde_json::to_string(r).map_err(|e| err(e.to_string()))?;
        writeln!(self.writer, "{line}").map_err(|e| err(e.to_string()))?;
        self.writer.flush().map_err(|e| err(e.to_string()))?;
        self.tally.add(r)?;
        self.done.insert(r.id.clone());
        Ok(())
    }

    /// Appends the final `{"summary": …}` line.
    ///
    /// # Errors
    /// [`PslgError::Results`] when writing fails.
    pub fn finish(&mut self, summary: &serde_json::Value) -> Result<(), PslgError> {
        let err = |reason: String| PslgError::Results {
            path: self.path.clone(),
            reason,
        };
        writeln!(self.writer, "{}", serde_json::json!({ "summary": summary }))
            .map_err(|e| err(e.to_string()))?;
        self.writer.flush().map_err(|e| err(e.to_string()))
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

fn empty_stats(gt: &GrayImage, protocol: Protocol) -> Result<[u64; 2], PslgError> {
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
/// [`PslgError::ReadImage`] / [`PslgError::Dataset`] for unreadable data, [`PslgError::NoGrounding`] without
/// `settings.gt_box` on a pipeline without grounding, and whatever `sink` returns.
pub fn evaluate<B: Backend>(
    pipeline: &mut Pipeline<B>,
    samples: &[RefSample],
    settings: &EvalSettings,
    stages: &[BoxSegmenter],
    skip: &HashSet<String>,
    mut sink: impl FnMut(&SampleRecord) -> Result<(), PslgError>,
    mut progress: impl FnMut(),
) -> Result<EvalSpeed, PslgError> {
    let protocol: Protocol =
        settings
            .protocol
            .parse()
            .map_err(|value| PslgError::InvalidParam {
                name: "protocol",
                value,
            })?;
    if stages.len() != settings.variants.len() {
        return Err(PslgError::InvalidParam {
            name: "stages",
            value: format!("{} for {} variants", stages.len(), settings.variants.len()),
        });
    }
    if !settings.gt_box && !pipeline.has_grounding() {
        return Err(PslgError::NoGrounding);
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
        let image = crate::io::load_rgb(path)?;
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
) -> Result<SampleRecord, PslgError> {
    let gt = sample.mask()?;
    if gt.dimensions() != image.dimensions() {
        return Err(PslgError::Dataset {
            path: sample.image.clone(),
            record: sample.id.clone(),
            reason: format!(
                "the mask is {:?} but the image is {:?} (width, height)",
                gt.dimensions(),
                image.dimensions()
            ),
        });
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
    let failed = |mut record: SampleRecord, reason: String| -> Result<SampleRecord, PslgError> {
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
            Err(e) => return Err(e),
        }
    };
    record.bbox = Some([bbox.x1, bbox.y1, bbox.x2, bbox.y2]);
    let t = Instant::now();
    for s in stages {
        let stats = match pipeline.segment_box_with(image, bbox, s) {
            Ok(out) => {
                let st = score(&out.mask, &gt, protocol)?;
                [st.intersection, st.union]
            }
            Err(e @ (PslgError::Cfpg(_) | PslgError::Mbo(_))) => {
                record.error.get_or_insert(e.to_string());
                empty_stats(&gt, protocol)?
            }
            Err(e) => return Err(e),
        };
        record.stats.push(stats);
    }
    speed.stage2 += t.elapsed();
    Ok(record)
}
