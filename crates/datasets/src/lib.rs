//! Dataset readers of **pslg**, free of Burn: what the evaluation, the batch runner and decoder fine-tuning
//! read their samples from.
//!
//! | module | reads |
//! |---|---|
//! | [`cases`] | `cases.jsonl`: an image, a box or a sentence, an optional mask and category per line |
//! | [`rrsis`] | RRSIS-D / RRSIS-M (RefCOCO layout: `refs(unc).p`, `instances.json` with COCO polygons or RLE), RefSegRS, image–mask pairs; the COCO RLE codec |
//! | [`shard`] | which images shard `K` of `N` of a job array takes (Slurm, Kubernetes Indexed Jobs) |
//! | [`grounding`] | visual grounding: DIOR-RSVG (VOC XML, split files of object indices), RSVG-HR |
#![warn(missing_docs)]

pub mod cases;
pub mod grounding;
pub mod rrsis;
pub mod shard;

use std::path::PathBuf;

/// Errors of the dataset readers: each names the file and, where there is one, the record, and says what is
/// wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A case file could not be read.
    #[error("cannot read case file {path}: {source}")]
    ReadCases {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a case file is malformed.
    #[error(
        "{path}, line {line}: {reason} (expected {{\"id\", \"image\", \"box\": [x1, y1, x2, y2], \"mask\"?, \"category\"?}})"
    )]
    BadCase {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A dataset file or folder cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a grounding annotation (a VOC XML element, an RSVG-HR line, a split file) is malformed.
    #[error("{path}:{line}: {reason}")]
    Annotation {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the error is not tied to a line).
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A dataset record is malformed.
    #[error("{path} ({record}): {reason}")]
    Dataset {
        /// The file.
        path: PathBuf,
        /// The record (reference, annotation, line).
        record: String,
        /// What is wrong.
        reason: String,
    },
}
