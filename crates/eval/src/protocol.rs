//! How a prediction is compared with its target: at the image's size, or both resized to a square first.

use crate::EvalError;
use image::{GrayImage, imageops::FilterType};
use pslg_metrics::{MaskStats, mask_stats_by};
use serde::{Deserialize, Serialize};

/// How predictions are compared with targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Protocol {
    /// At the image's own size (the PSLG-SAM paper's evaluation).
    Original,
    /// Both masks resized to `n × n` first (RMSIN's evaluation uses 480): targets with nearest-neighbour
    /// sampling, predictions bilinearly (a 0/255 mask filtered, then thresholded at ½), as a network's
    /// logits resized before the threshold would be.
    Square(u32),
}

/// A protocol given as text that is neither `original` nor a square side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol {0:?}: use `original` or a square side in pixels such as `480` (RMSIN)")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, UnknownProtocol> {
        if s == "original" {
            return Ok(Self::Original);
        }
        s.parse::<u32>()
            .ok()
            .filter(|&n| (1..=16384).contains(&n))
            .map(Self::Square)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

impl From<Protocol> for String {
    fn from(p: Protocol) -> Self {
        p.to_string()
    }
}

impl TryFrom<String> for Protocol {
    type Error = UnknownProtocol;

    fn try_from(s: String) -> Result<Self, UnknownProtocol> {
        s.parse()
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
/// [`EvalError::InvalidParam`] when the two masks differ in size.
pub fn score(pred: &GrayImage, gt: &GrayImage, protocol: Protocol) -> Result<MaskStats, EvalError> {
    if pred.dimensions() != gt.dimensions() {
        return Err(EvalError::InvalidParam {
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
