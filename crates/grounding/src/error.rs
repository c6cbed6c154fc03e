//! Errors of the grounding crate.

use std::path::PathBuf;

/// What can go wrong loading LQVG, tokenising a sentence, grounding it or reading a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroundingError {
    /// A checkpoint cannot be loaded: unreadable or truncated, or a tensor missing, unexpected or
    /// mis-shaped (the shared checkpoint layer's error, naming the file and the key).
    #[error(
        "grounding: {0} (expected an LQVG checkpoint.pth, a safetensors export of its state dict, or a \
         BERT/RoBERTa model.safetensors)"
    )]
    Checkpoint(#[from] pslg_checkpoint::CheckpointError),
    /// A configuration value is invalid, cannot be inferred, or a config file is unreadable.
    #[error("invalid grounding configuration: {0}")]
    Config(String),
    /// The tokenizer file could not be loaded or failed on a sentence.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer.json file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The sentence or token ids are unusable (empty, too long, ids outside the vocabulary).
    #[error("invalid text input: {0}")]
    Text(String),
    /// The image is unusable (no pixels).
    #[error("invalid image for grounding: {0}")]
    Image(String),
    /// A dataset cannot be read (the reader's error, naming the file and line).
    #[error(transparent)]
    Reader(#[from] pslg_datasets::DatasetError),
    /// A dataset file is malformed, or a split selects nothing.
    #[error("{path}:{line}: {reason}")]
    Dataset {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the error is not tied to a line).
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A checkpoint or record could not be written.
    #[error(
        "cannot write {path}: {reason} (check that the folder is writable and the disk not full)"
    )]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// What the writer said.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
