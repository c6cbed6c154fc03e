//! What an evaluation prints, and the merge of a sharded run's results files into exactly that.
//!
//! A sharded run (`eval-rrsis --shard K/N`) writes one results file per shard. Each header carries the
//! run's settings plus `run.shard` (`"K/N"`) and `run.split_samples` (the samples of the whole run). Merging
//! checks that the files are the `N` shards of one run (same settings but the shard, each index once, each
//! finished), that no sample is scored twice and none is missing, and totals their records.

use crate::EvalError;
use crate::results::{EvalSettings, SampleRecord, Tally, format_table, summary_json};
use pslg_metrics::Summary;
use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The JSON lines a run prints on stdout: one per variant (metrics of [`summary_json`], with `cfpg` / `mbo`
/// for the cells of an ablation grid, and the grounding boxes' `box_Pr@0.5` when sentences were grounded).
pub fn result_lines(settings: &EvalSettings, tally: &Tally) -> Vec<serde_json::Value> {
    let ablation = settings.variants.len() > 1;
    settings
        .variants
        .iter()
        .zip(tally.summaries())
        .map(|(v, s)| {
            let mut j = summary_json(&s);
            if ablation {
                j["cfpg"] = v.cfpg.into();
                j["mbo"] = v.mbo.into();
            }
            if let Some(acc) = tally.box_accuracy() {
                j["box_Pr@0.5"] = ((acc * 10000.0).round() / 100.0).into();
            }
            j
        })
        .collect()
}

/// The table a run prints with `--table`: one row per variant (`all`, or each cell's name in an ablation).
pub fn result_table(settings: &EvalSettings, tally: &Tally) -> String {
    let ablation = settings.variants.len() > 1;
    let summaries = tally.summaries();
    let labels: Vec<&str> = settings
        .variants
        .iter()
        .map(|v| if ablation { v.name() } else { "all" })
        .collect();
    let rows: Vec<(&str, &Summary)> = labels.into_iter().zip(&summaries).collect();
    format_table(&rows)
}

/// One results file as written: its settings, records and whether its run finished (a summary line).
#[derive(Debug, Clone)]
pub struct ResultsContents {
    /// The header's settings.
    pub settings: EvalSettings,
    /// The records, in file order (a torn last line of a killed run is dropped).
    pub records: Vec<SampleRecord>,
    /// Whether the file ends its run with a `{"summary": …}` line.
    pub finished: bool,
}

/// Reads a results file without changing it.
///
/// # Errors
/// [`EvalError::Results`] when it cannot be read, has no settings header, or has a malformed line other
/// than the last.
pub fn read_results(path: &Path) -> Result<ResultsContents, EvalError> {
    let err = |reason: String| EvalError::Results {
        path: path.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let header: serde_json::Value = lines
        .first()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            err("its first line is not a settings header; is it a results file?".into())
        })?;
    let settings: EvalSettings = serde_json::from_value(header["settings"].clone())
        .map_err(|e| err(format!("line 1: {e}")))?;
    let mut records = Vec::new();
    let mut finished = false;
    let n = lines.len();
    for (i, line) in lines.iter().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if i + 1 == n => break,
            Err(e) => return Err(err(format!("line {}: {e}", i + 1))),
        };
        if v.get("summary").is_some() {
            finished = true;
            continue;
        }
        records.push(serde_json::from_value(v).map_err(|e| err(format!("line {}: {e}", i + 1)))?);
    }
    Ok(ResultsContents {
        settings,
        records,
        finished,
    })
}

/// The settings of shard `shard` of a run of `split_samples` samples: `settings` with `run.shard` and
/// `run.split_samples` set (what a sharded run writes in its header).
pub fn shard_settings(
    settings: &EvalSettings,
    shard: pslg_datasets::shard::Shard,
    split_samples: usize,
) -> EvalSettings {
    let mut s = settings.clone();
    s.run["shard"] = shard.to_string().into();
    s.run["split_samples"] = split_samples.into();
    s
}

/// `results.jsonl` → `results.2-of-8.jsonl`: where shard `shard` of a run given `--out path` writes.
pub fn shard_path(path: &Path, shard: pslg_datasets::shard::Shard) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(e) => format!("{stem}.{}.{}", shard.tag(), e.to_string_lossy()),
        None => format!("{stem}.{}", shard.tag()),
    };
    path.with_file_name(name)
}

/// Merges the results files of the `N` shards of one run (in any order): the whole run's settings (shard
/// removed) and the totals of all records, in shard order.
///
/// # Errors
/// [`EvalError::Results`] naming the file when one cannot be read, is not a shard's file, holds other
/// settings, is unfinished, or repeats a sample of another shard; and when a shard is missing, given twice,
/// or the records do not add up to the run's samples.
pub fn merge_results(paths: &[PathBuf]) -> Result<(EvalSettings, Tally), EvalError> {
    let first = paths.first().ok_or_else(|| EvalError::Results {
        path: PathBuf::new(),
        reason: "give the shards' results files to --merge".into(),
    })?;
    let mut shards: BTreeMap<usize, (PathBuf, ResultsContents)> = BTreeMap::new();
    let mut whole: Option<(EvalSettings, usize, usize)> = None;
    for p in paths {
        let err = |reason: String| EvalError::Results {
            path: p.clone(),
            reason,
        };
        let c = read_results(p)?;
        let shard_str = c.settings.run["shard"].as_str().map(str::to_string);
        let shard = shard_str
            .as_deref()
            .and_then(|s| pslg_datasets::shard::Shard::parse(s, |_| None).ok())
            .ok_or_else(|| err("it is not a shard's results file (no run.shard in its header); was it written with --shard?".into()))?;
        let total = c.settings.run["split_samples"]
            .as_u64()
            .ok_or_else(|| err("its header lacks run.split_samples".into()))?
            as usize;
        let mut base = c.settings.clone();
        if let Some(run) = base.run.as_object_mut() {
            run.remove("shard");
            run.remove("split_samples");
        }
        match &whole {
            None => whole = Some((base, shard.count, total)),
            Some((b, count, t)) => {
                if *b != base || *t != total {
                    return Err(err(format!(
                        "it belongs to another run than {} (settings differ); merge the shards of one run",
                        first.display()
                    )));
                }
                if *count != shard.count {
                    return Err(err(format!(
                        "it is shard {shard} but {} is of {count} shards",
                        first.display()
                    )));
                }
            }
        }
        if !c.finished {
            return Err(err(format!(
                "shard {shard} has not finished (no summary line, {} samples so far); rerun it (it resumes) before merging",
                c.records.len()
            )));
        }
        if let Some((other, _)) = shards.get(&shard.index) {
            return Err(err(format!(
                "shard {shard} is given twice (also {})",
                other.display()
            )));
        }
        shards.insert(shard.index, (p.clone(), c));
    }
    let Some((settings, count, total)) = whole else {
        unreachable!("paths is not empty");
    };
    let missing: Vec<String> = (0..count)
        .filter(|k| !shards.contains_key(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(EvalError::Results {
            path: first.clone(),
            reason: format!(
                "shard(s) {} missing: give all {count} shards' files",
                missing.join(", ")
            ),
        });
    }
    let mut tally = Tally::new(settings.variants.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut n = 0usize;
    for (k, (path, c)) in &shards {
        let mut own = HashSet::new();
        for r in &c.records {
            if !own.insert(r.id.as_str()) {
                continue; // a resumed shard never repeats a sample; tolerate it like ResultsFile does
            }
            if let Some(other) = seen.insert(r.id.clone(), *k) {
                return Err(EvalError::Results {
                    path: path.clone(),
                    reason: format!(
                        "sample {:?} is scored by shard {other} and shard {k}/{count}",
                        r.id
                    ),
                });
            }
            tally.add(r).map_err(|e| EvalError::Results {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            n += 1;
        }
    }
    if n != total {
        return Err(EvalError::Results {
            path: first.clone(),
            reason: format!("the shards hold {n} samples, the run has {total}: some are missing"),
        });
    }
    Ok((settings, tally))
}
