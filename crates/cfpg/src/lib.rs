//! Clustering-based foreground point generator (CFPG), §3.2 of PSLG-SAM.
//!
//! Given an image and a box prompt, CFPG finds one point that very likely lies on the referred object, to
//! prompt SAM together with the box. Each step of the paper is a public function here:
//!
//! | step | paper | function |
//! |---|---|---|
//! | ROI crop, clamped to the image | Eq. (4) | [`clamp_box`], [`crop_roi`] |
//! | k-means++ (k = 2) on ROI colours | Eq. (5) | [`kmeans_pp`] |
//! | binary candidate-foreground map | — | [`foreground_cluster`], [`binary_map`] |
//! | morphological opening and closing | — | [`open_close`] |
//! | exact Euclidean distance transform | Eq. (6) | [`euclidean_distance_transform`] |
//! | markers from the thresholded distance | — | [`distance_markers`] |
//! | watershed (Meyer's flooding) | — | [`watershed`] |
//! | connected components | — | [`label_components`], [`mask_components`] |
//! | convex hull, convexity κ = A / A_hull | Eq. (7) | [`pixel_hull`], [`polygon_area`], [`convexity`], [`measure_regions`] |
//! | area filter and argmax κ | Eq. (8) | [`select_region`] |
//! | centroid | Eq. (9) | [`region_point`] |
//!
//! [`ForegroundPointGenerator`] runs them all with validated [`CfpgParams`] and returns the point together with
//! every intermediate map. When no region survives it returns the box centre and says why
//! ([`PointSource::BoxCentre`]); it never panics on user input.
#![warn(missing_docs)]

mod binary;
mod distance;
mod generator;
mod regions;
mod watershed;

pub use binary::{binary_map, foreground_cluster, open_close};
pub use distance::{FloatMap, euclidean_distance_transform};
pub use generator::{
    CfpgMaps, CfpgParams, Fallback, ForegroundPoint, ForegroundPointGenerator, PointSource,
};
/// The box types, the ROI crop (Eq. 4) and k-means++ (Eq. 5) live in `pslg-core`, shared with MBO.
pub use pslg_core::{BoxError, KMeans, PixelBox, Roi, clamp_box, crop_roi, kmeans_pp, nearest};
pub use regions::{
    Connectivity, Region, convexity, label_components, mask_components, measure_regions,
    pixel_hull, polygon_area, region_point, select_region,
};
pub use watershed::{LabelMap, WATERSHED_LINE, distance_markers, watershed};

/// Errors of the foreground point generator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CfpgError {
    /// The box gives no region of interest in the image (empty image, inverted box, box outside).
    #[error(transparent)]
    Box(#[from] BoxError),
    /// A parameter is out of its valid range.
    #[error("parameter `{name}` = {value} is invalid: valid values are {valid}")]
    InvalidParam {
        /// Field name.
        name: &'static str,
        /// Value given.
        value: String,
        /// Valid range.
        valid: &'static str,
    },
}
