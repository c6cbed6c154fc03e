//! The records of an evaluation run, their running totals, and the resumable JSON-lines results file.

use crate::{EvalError, Protocol, Variant};
use pslg_metrics::{Accumulator, MaskStats, PRECISION_THRESHOLDS, Summary};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What an evaluation run is: checked when a results file is resumed, so that one file never mixes two
/// settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Box prompts from the ground-truth masks (`--gt-box`) instead of grounding.
    pub gt_box: bool,
    /// The cells evaluated (one, or the ablation grid).
    pub variants: Vec<Variant>,
    /// How predictions are compared with targets (written as `"original"` or the square side).
    pub protocol: Protocol,
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
    /// [`EvalError::InvalidParam`] when the record has another number of variants.
    pub fn add(&mut self, r: &SampleRecord) -> Result<(), EvalError> {
        if r.stats.len() != self.accumulators.len() {
            return Err(EvalError::InvalidParam {
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
    file: std::fs::File,
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
    /// [`EvalError::Results`] when the file cannot be read or written, holds other settings, or has a
    /// malformed line other than the last.
    pub fn open(path: &Path, settings: &EvalSettings) -> Result<Self, EvalError> {
        let err = |reason: String| EvalError::Results {
            path: path.to_path_buf(),
            reason,
        };
        let header = serde_json::json!({ "settings": settings });
        let mut tally = Tally::new(settings.variants.len());
        let mut done = HashSet::new();
        let mut kept: Vec<String> = Vec::new();
        if path.exists() {
            let old = crate::read_results(path)?;
            if old.settings != *settings {
                return Err(err(format!(
                    "it was written with other settings ({}); resume with the same options, or give another --out",
                    serde_json::to_value(&old.settings).unwrap_or_default()
                )));
            }
            for r in old.records {
                if done.insert(r.id.clone()) {
                    tally.add(&r).map_err(|e| err(e.to_string()))?;
                    kept.push(serde_json::to_string(&r).map_err(|e| err(e.to_string()))?);
                }
            }
        }
        // The header and the kept records replace the file in one rename: an interruption here leaves the
        // old file or the new one, never a mix.
        pslg_core::atomic::write_atomic(path, |w| {
            writeln!(w, "{header}")?;
            for l in &kept {
                writeln!(w, "{l}")?;
            }
            Ok(())
        })
        .map_err(|e| err(e.to_string()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            tally,
            done,
        })
    }

    /// Appends a record (written through at once, so an interruption loses at most the sample in progress)
    /// and counts it.
    ///
    /// # Errors
    /// [`EvalError::Results`] when writing fails.
    pub fn push(&mut self, r: &SampleRecord) -> Result<(), EvalError> {
        let err = |reason: String| EvalError::Results {
            path: self.path.clone(),
            reason,
        };
        let mut line = serde_json::to_string(r).map_err(|e| err(e.to_string()))?;
        line.push('\n');
        // One `write` of the whole line (the file is unbuffered, opened for appending): a killed process
        // leaves whole lines, or at worst a torn last one, which resuming drops.
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        self.tally.add(r)?;
        self.done.insert(r.id.clone());
        Ok(())
    }

    /// Appends the final `{"summary": …}` line.
    ///
    /// # Errors
    /// [`EvalError::Results`] when writing fails.
    pub fn finish(&mut self, summary: &serde_json::Value) -> Result<(), EvalError> {
        let err = |reason: String| EvalError::Results {
            path: self.path.clone(),
            reason,
        };
        let line = format!("{}\n", serde_json::json!({ "summary": summary }));
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| err(e.to_string()))
    }
}
