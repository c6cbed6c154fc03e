//! Small helpers of the commands: number parsing, times, medians, peak memory, decoder folders.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `n` finite comma-separated numbers (f64: map coordinates need it).
pub(crate) fn parse_numbers(text: &str, n: usize, what: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = text
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<f64>| v.len() == n && v.iter().all(|x| x.is_finite()))
        .with_context(|| format!("{what} {text:?} is not {n} comma-separated numbers"))?;
    Ok(v)
}

/// A duration in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median of `v` (sorted in place); 0 when empty.
pub(crate) fn median(v: &mut [f64]) -> f64 {
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

/// `v` rounded to two decimals (for JSON reports).
pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A `finetune-decoder --out` folder → its best decoder; a file as it is.
pub(crate) fn decoder_file(p: &Path) -> PathBuf {
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
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
