//! Splitting a run into shards for a job array (Slurm arrays, Kubernetes Indexed Jobs): shard `K` of `N`
//! takes whole images, so that each image is decoded (and encoded by SAM) once and its sentences stay
//! together, and the shards get about the same number of cases.
//!
//! The rule ([`assign`]) is deterministic and depends only on the images and their case counts: groups
//! sorted by case count (largest first, ties by image path) go one by one to the shard with the fewest cases
//! so far (ties to the lowest index). Every task of an array computes the same assignment on its own, with
//! no coordination.

use std::collections::BTreeMap;
use std::path::Path;

/// Shard `index` of `count` (0-based): the part of a run one task of a job array does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which shard, `0..count`.
    pub index: usize,
    /// How many shards the run has (≥ 1).
    pub count: usize,
}

/// Why a shard cannot be read from a flag or the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// `K/N` is malformed or out of range.
    #[error(
        "shard {0:?}: give K/N with 0 ≤ K < N (K 0-based, e.g. 0/4), or `auto` inside a job array"
    )]
    Malformed(String),
    /// `auto` outside a job array.
    #[error(
        "--shard auto found no job-array index: set by Slurm arrays (SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT or MIN/MAX) or Kubernetes Indexed Jobs (JOB_COMPLETION_INDEX with PSLG_SHARD_COUNT); outside an array give --shard K/N"
    )]
    NoArray,
    /// A variable of the engine holds something unusable.
    #[error("{name}={value:?}: {reason}")]
    BadVariable {
        /// The environment variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl Shard {
    /// The whole run as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`ShardError::Malformed`] unless `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if index < count {
            Ok(Self { index, count })
        } else {
            Err(ShardError::Malformed(format!("{index}/{count}")))
        }
    }

    /// Parses `K/N` or, with `auto`, reads the engine's variables through `var` (pass
    /// `|n| std::env::var(n).ok()`); see [`Shard::from_env`].
    ///
    /// # Errors
    /// As [`Shard::new`] and [`Shard::from_env`].
    pub fn parse(s: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        if s.trim() == "auto" {
            return Self::from_env(var);
        }
        let bad = || ShardError::Malformed(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Self::new(k, n).map_err(|_| bad())
    }

    /// The shard of this task of a job array, from the engine's variables (read through `var`):
    /// * Slurm arrays: index `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN`, count `SLURM_ARRAY_TASK_COUNT` (or
    ///   `MAX − MIN + 1`); the array must have step 1 (`--array=0-7`, `--array=1-8`, `%` limits are fine);
    /// * Kubernetes Indexed Jobs: index `JOB_COMPLETION_INDEX`, count `PSLG_SHARD_COUNT` (the manifest sets
    ///   it to `spec.completions`; Kubernetes itself exports no count).
    ///
    /// # Errors
    /// [`ShardError::NoArray`] when neither engine's index is set, [`ShardError::BadVariable`] for a
    /// non-number, a missing count, a stepped array or an index outside the count.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let number = |name: &'static str| -> Result<Option<usize>, ShardError> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| ShardError::BadVariable {
                            name,
                            value: v.clone(),
                            reason: "not a non-negative integer".into(),
                        })
                })
                .transpose()
        };
        let out_of_range = |name: &'static str, index: usize, count: usize| {
            Self::new(index, count).map_err(|_| ShardError::BadVariable {
                name,
                value: index.to_string(),
                reason: format!("index {index} is outside the {count} shards"),
            })
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            if let Some(step) = number("SLURM_ARRAY_TASK_STEP")?.filter(|&s| s != 1) {
                return Err(ShardError::BadVariable {
                    name: "SLURM_ARRAY_TASK_STEP",
                    value: step.to_string(),
                    reason:
                        "submit a contiguous array (--array=0-N-1) so that every shard runs once"
                            .into(),
                });
            }
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = match number("SLURM_ARRAY_TASK_COUNT")? {
                Some(c) => c,
                None => match number("SLURM_ARRAY_TASK_MAX")? {
                    Some(max) if max >= min => max - min + 1,
                    _ => {
                        return Err(ShardError::BadVariable {
                            name: "SLURM_ARRAY_TASK_COUNT",
                            value: String::new(),
                            reason:
                                "unset, and no usable SLURM_ARRAY_TASK_MAX; is this an array job?"
                                    .into(),
                        });
                    }
                },
            };
            let index = id.checked_sub(min).ok_or_else(|| ShardError::BadVariable {
                name: "SLURM_ARRAY_TASK_ID",
                value: id.to_string(),
                reason: format!("below SLURM_ARRAY_TASK_MIN={min}"),
            })?;
            return out_of_range("SLURM_ARRAY_TASK_ID", index, count);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = number("PSLG_SHARD_COUNT")?.ok_or(ShardError::BadVariable {
                name: "PSLG_SHARD_COUNT",
                value: String::new(),
                reason: "unset: set it to the Indexed Job's completions (deploy/k8s does)".into(),
            })?;
            return out_of_range("JOB_COMPLETION_INDEX", index, count);
        }
        Err(ShardError::NoArray)
    }

    /// Whether this is the whole run (`0/1`).
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// The items of this shard, in their original order: items are grouped by `image`, and the groups
    /// assigned by [`assign`].
    pub fn select<T>(&self, items: Vec<T>, image: impl Fn(&T) -> &Path) -> Vec<T> {
        if self.is_whole() {
            return items;
        }
        let mut counts: BTreeMap<&Path, usize> = BTreeMap::new();
        for it in &items {
            *counts.entry(image(it)).or_default() += 1;
        }
        let shard_of = assign(&counts, self.count);
        let keep: Vec<bool> = items
            .iter()
            .map(|it| shard_of.get(image(it)) == Some(&self.index))
            .collect();
        items
            .into_iter()
            .zip(keep)
            .filter_map(|(it, k)| k.then_some(it))
            .collect()
    }

    /// File-name tag of the shard: `2-of-8`.
    pub fn tag(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of each group, given each group's item count: groups by descending count (ties by key) each go
/// to the shard with the fewest items so far (ties to the lowest index). Greedy longest-first balancing: no
/// shard exceeds the mean by more than the largest group.
pub fn assign<K: Ord + Clone>(counts: &BTreeMap<K, usize>, shards: usize) -> BTreeMap<K, usize> {
    let shards = shards.max(1);
    let mut order: Vec<(&K, usize)> = counts.iter().map(|(k, &n)| (k, n)).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut load = vec![0usize; shards];
    let mut out = BTreeMap::new();
    for (k, n) in order {
        let (best, _) = load
            .iter()
            .enumerate()
            .min_by_key(|&(i, &l)| (l, i))
            .unwrap_or((0, &0));
        load[best] += n;
        out.insert(k.clone(), best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n| m.get(n).cloned()
    }

    #[test]
    fn flags_parse_and_reject() {
        let none = env(&[]);
        assert_eq!(Shard::parse("2/5", &none), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1", "-1/3", "a/b", "0/0", "1/2/3"] {
            assert!(
                matches!(Shard::parse(bad, &none), Err(ShardError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(Shard::parse("auto", &none), Err(ShardError::NoArray));
        assert_eq!(Shard::new(1, 4).unwrap().tag(), "1-of-4");
        assert_eq!(Shard::new(1, 4).unwrap().to_string(), "1/4");
    }

    #[test]
    fn slurm_and_kubernetes_indices() {
        let s = |p: &[(&str, &str)]| Shard::from_env(env(p));
        assert_eq!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]),
            Ok(Shard { index: 3, count: 4 })
        );
        // --array=1-4: MIN/MAX, no COUNT.
        assert_eq!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "4")
            ]),
            Ok(Shard { index: 0, count: 4 })
        );
        assert!(matches!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_STEP", "2")
            ]),
            Err(ShardError::BadVariable {
                name: "SLURM_ARRAY_TASK_STEP",
                ..
            })
        ));
        assert!(matches!(
            s(&[("SLURM_ARRAY_TASK_ID", "x")]),
            Err(ShardError::BadVariable {
                name: "SLURM_ARRAY_TASK_ID",
                ..
            })
        ));
        assert!(matches!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]),
            Err(ShardError::BadVariable { .. })
        ));
        assert_eq!(
            s(&[("JOB_COMPLETION_INDEX", "0"), ("PSLG_SHARD_COUNT", "2")]),
            Ok(Shard { index: 0, count: 2 })
        );
        assert!(matches!(
            s(&[("JOB_COMPLETION_INDEX", "0")]),
            Err(ShardError::BadVariable {
                name: "PSLG_SHARD_COUNT",
                ..
            })
        ));
    }

    #[test]
    fn shards_split_by_image_balanced_and_cover_everything_once() {
        // 7 images with 1..=7 cases each, in a scrambled order.
        let mut items: Vec<(PathBuf, usize)> = Vec::new();
        for (img, n) in [(3, 3), (0, 1), (6, 7), (1, 2), (5, 6), (2, 4), (4, 5)] {
            for j in 0..n {
                items.push((PathBuf::from(format!("img{img}.png")), j));
            }
        }
        let total = items.len();
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for k in 0..3 {
            let part = Shard::new(k, 3).unwrap().select(items.clone(), |it| &it.0);
            // Original order kept.
            let pos: Vec<usize> = part
                .iter()
                .map(|it| items.iter().position(|x| x == it).unwrap())
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]));
            sizes.push(part.len());
            seen.extend(part);
        }
        assert_eq!(seen.len(), total);
        seen.sort();
        let mut all = items.clone();
        all.sort();
        assert_eq!(seen, all);
        // 28 cases over 3 shards: greedy longest-first gives 10/9/9.
        sizes.sort();
        assert_eq!(sizes, [9, 9, 10]);
        // An image's cases stay in one shard.
        for k in 0..3 {
            let part = Shard::new(k, 3).unwrap().select(items.clone(), |it| &it.0);
            for it in &part {
                let n = items.iter().filter(|x| x.0 == it.0).count();
                assert_eq!(part.iter().filter(|x| x.0 == it.0).count(), n);
            }
        }
        assert_eq!(Shard::WHOLE.select(items.clone(), |it| &it.0), items);
    }
}
