//! Errors of the SAM crate.

use std::path::PathBuf;

/// What can go wrong loading a checkpoint or running SAM on user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamError {
    /// A checkpoint cannot be loaded: unreadable or truncated, or a tensor missing, unexpected or
    /// mis-shaped (the shared checkpoint layer's error, naming the file and the key).
    #[error(
        "SAM: {0} (official SAM checkpoints: sam_vit_b/l/h_*.pth, MobileSAM mobile_sam.pt, or a safetensors export of the same state dict)"
    )]
    Checkpoint(#[from] pslg_checkpoint::CheckpointError),
    /// A checkpoint (e.g. a fine-tuned decoder) could not be written.
    #[error(
        "cannot write SAM checkpoint {path}: {reason} (check that the folder exists and is writable)"
    )]
    WriteCheckpoint {
        /// The file.
        path: PathBuf,
        /// What the writer said.
        reason: String,
    },
    /// A configuration value is invalid or cannot be inferred.
    #[error("invalid SAM configuration: {0}")]
    Config(String),
    /// A prompt is invalid (no prompt at all, non-finite coordinates, wrong label, wrong mask shape…).
    #[error("invalid SAM prompt: {0}")]
    Prompt(String),
    /// An image is unusable (no pixels).
    #[error("invalid image for SAM: {0}")]
    Image(String),
    /// `predict` was called before `set_image` / `set_embedding`.
    #[error("no image set: call set_image (or set_embedding) before predict")]
    NoImage,
    /// The image given differs in size from the one encoded by the last `set_image`.
    #[error(
        "the image is {}x{} but the encoded image is {}x{}: call set_image with this image first",
        .given.0, .given.1, .encoded.0, .encoded.1
    )]
    ImageMismatch {
        /// (width, height) of the encoded image.
        encoded: (u32, u32),
        /// (width, height) of the image given.
        given: (u32, u32),
    },
    /// A `.npy` file could not be read or written.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
