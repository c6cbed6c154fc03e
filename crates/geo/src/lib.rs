//! Geospatial I/O for pslg: the georeference of GeoTIFF images, masks written back as GeoTIFFs that GIS
//! tools overlay exactly on their source, and masks as GeoJSON polygons (with holes) in the image's CRS.
//!
//! | task | item |
//! |---|---|
//! | read ModelPixelScale / ModelTiepoint / ModelTransformation and the GeoKeys (EPSG) | [`GeoReference::read`] |
//! | pixel ↔ map coordinates | [`GeoTransform`] |
//! | mask → single-band uint8 GeoTIFF with the same georeference | [`GeoReference::write_mask`] |
//! | mask → polygons with holes, optional simplification | [`mask_polygons`] |
//! | polygons → GeoJSON FeatureCollection with properties | [`feature_collection`] |
//! | PNG / JPEG / (windowed, multi-band) TIFF → 8-bit RGB; masks → PNG / GeoTIFF | [`raster`] |
//!
//! # Example
//! ```
//! use image::{GrayImage, Luma};
//! use pslg_geo::{mask_polygons, rasterize};
//! let mask = GrayImage::from_fn(8, 8, |x, y| Luma([if (2..6).contains(&x) && (1..4).contains(&y) { 255 } else { 0 }]));
//! let polygons = mask_polygons(&mask, None)?;
//! assert_eq!(rasterize(&polygons, 8, 8), mask);
//! # Ok::<(), pslg_geo::GeoError>(())
//! ```

mod georef;
pub mod raster;
mod vector;

use std::path::PathBuf;

pub use georef::{GeoReference, GeoTransform, write_plain_mask};
pub use vector::{ObjectFeature, feature_collection, mask_polygons, rasterize, to_map};

/// Errors of the geospatial I/O.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be opened or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a TIFF this crate can read or write.
    #[error(
        "{path}: not a readable/writable TIFF ({source}); GeoTIFF input must be a baseline TIFF"
    )]
    Tiff {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: tiff::TiffError,
    },
    /// A georeference tag is malformed.
    #[error(
        "{path}: malformed GeoTIFF tag {tag}: {reason}; fix the georeference (e.g. gdal_edit.py -a_ullr / -a_srs)"
    )]
    BadTag {
        /// The file.
        path: PathBuf,
        /// The tag's name.
        tag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The geotransform has no inverse (zero pixel size), so map coordinates cannot be turned into pixels.
    #[error("geotransform {0:?} is singular: map coordinates cannot be converted to pixels")]
    SingularTransform([f64; 6]),
    /// The contour builder rejected the mask grid.
    #[error("polygon extraction failed: {0}")]
    Contour(String),
}
