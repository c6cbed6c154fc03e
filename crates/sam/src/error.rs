//! Errors of the SAM crate.

use std::path::PathBuf;

/// What can go wrong loading a checkpoint or running SAM on user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamError {
    /// The checkpoint file could not be read as a PyTorch or safetensors state dict.
    #[error(
        "cannot read SAM checkpoint {path}: {reason} (expected an official sam_vit_*.pth or a safetensors \
         export of its state dict; a truncated download gives this error, download it again)"
    )]
    ReadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
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
    /// The checkpoint lacks a tensor the architecture needs.
    #[error(
        "SAM checkpoint {path} has no tensor `{key}` (shape {expected:?} expected); is it a SAM checkpoint?"
    )]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
    /// The checkpoint has a tensor the architecture does not use.
    #[error(
        "SAM checkpoint {path} has an unexpected tensor `{key}` of shape {shape:?} (not part of {what})"
    )]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The architecture it was compared with.
        what: String,
    },
    /// A tensor's shape does not fit the architecture.
    #[error(
        "SAM checkpoint {path}: tensor `{key}` has shape {found:?} but the architecture needs {expected:?}; \
         the checkpoint does not match the configuration"
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the model needs.
        expected: Vec<usize>,
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
