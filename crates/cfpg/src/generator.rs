//! The whole generator: parameters, validation and the step-by-step run.

use crate::{
    CfpgError, FloatMap, KMeans, LabelMap, PixelBox, Region, Roi, binary_map, crop_roi,
    distance_markers, euclidean_distance_transform, foreground_cluster, kmeans_pp, mask_components,
    measure_regions, open_close, region_point, select_region, watershed,
};
use image::{GrayImage, Luma, RgbImage};

/// Parameters of the foreground point generator; [`CfpgParams::build`] validates them.
///
/// Defaults were tuned on the box → mask development set (see `docs/quality.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct CfpgParams {
    /// Number of colour clusters `k` of Eq. (5) (2 in the paper). Valid: 2..=8.
    pub k: usize,
    /// Seed of the k-means++ seeding; the result is deterministic for a seed.
    pub seed: u64,
    /// Lloyd iterations at most.
    pub max_kmeans_iter: usize,
    /// Points used to fit the k-means centres at most (a regular subsample of the ROI); all pixels are then
    /// assigned. Valid: ≥ 16.
    pub max_fit_points: usize,
    /// Side of the square opening element (odd, 1 = none). Valid: odd, ≤ 31.
    pub open_kernel: u8,
    /// Side of the square closing element (odd, 1 = none). Valid: odd, ≤ 31.
    pub close_kernel: u8,
    /// Markers are `D > distance_threshold · max D`. Valid: [0, 1).
    pub distance_threshold: f32,
    /// Regions smaller than this fraction of the ROI are ignored by Eq. (8). Valid: [0, 1].
    pub min_area_fraction: f64,
}

impl Default for CfpgParams {
    fn default() -> Self {
        Self {
            k: 2,
            seed: 0,
            max_kmeans_iter: 50,
            max_fit_points: 4096,
            open_kernel: 3,
            close_kernel: 3,
            distance_threshold: 0.5,
            min_area_fraction: 0.02,
        }
    }
}

impl CfpgParams {
    /// Checks every field and returns a ready generator.
    ///
    /// # Errors
    /// [`CfpgError::InvalidParam`] naming the field, its value and the valid range.
    pub fn build(self) -> Result<ForegroundPointGenerator, CfpgError> {
        let bad = |name: &'static str, value: String, valid: &'static str| {
            Err(CfpgError::InvalidParam { name, value, valid })
        };
        if !(2..=8).contains(&self.k) {
            return bad("k", self.k.to_string(), "2..=8");
        }
        if self.max_fit_points < 16 {
            return bad("max_fit_points", self.max_fit_points.to_string(), ">= 16");
        }
        for (name, v) in [
            ("open_kernel", self.open_kernel),
            ("close_kernel", self.close_kernel),
        ] {
            if v % 2 == 0 || v > 31 {
                return bad(name, v.to_string(), "odd, 1..=31");
            }
        }
        if !(0.0..1.0).contains(&self.distance_threshold) {
            return bad(
                "distance_threshold",
                self.distance_threshold.to_string(),
                "[0, 1)",
            );
        }
        if !(0.0..=1.0).contains(&self.min_area_fraction) {
            return bad(
                "min_area_fraction",
                self.min_area_fraction.to_string(),
                "[0, 1]",
            );
        }
        Ok(ForegroundPointGenerator { params: self })
    }
}

/// Why the generator fell back to the box centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The ROI has a single colour: nothing to cluster.
    UniformRoi,
    /// Opening removed the whole candidate foreground.
    NoForeground,
    /// No region reached the area threshold.
    NoRegionAboveArea,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fallback::UniformRoi => "the box has a single colour",
            Fallback::NoForeground => "no candidate foreground survived the morphological opening",
            Fallback::NoRegionAboveArea => "no region reached the area threshold",
        })
    }
}

/// Where the point came from.
#[derive(Debug, Clone, PartialEq)]
pub enum PointSource {
    /// The centroid of the selected region (Eqs. 8–9).
    Region {
        /// The selected region.
        region: Region,
        /// The centroid fell outside the region and was moved to the nearest region pixel.
        snapped: bool,
    },
    /// No region was usable; the point is the box centre.
    BoxCentre(Fallback),
}

/// Intermediate maps of one run, all in ROI coordinates, for inspection and figures.
#[derive(Debug, Clone, PartialEq)]
pub struct CfpgMaps {
    /// k-means clustering of the ROI colours.
    pub kmeans: KMeans,
    /// Which cluster was taken as candidate foreground.
    pub foreground_cluster: u8,
    /// Binary candidate map before morphology (0/255).
    pub binary: GrayImage,
    /// After opening and closing (0/255).
    pub cleaned: GrayImage,
    /// Euclidean distance transform of `cleaned`.
    pub distance: FloatMap,
    /// Watershed markers.
    pub markers: LabelMap,
    /// Watershed labels ([`crate::WATERSHED_LINE`] on lines).
    pub watershed: LabelMap,
    /// Connected components that Eq. (8) chooses from.
    pub components: LabelMap,
}

/// A foreground point for a box prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ForegroundPoint {
    /// `x` in image pixel coordinates (continuous: pixel `i` spans `[i, i + 1)`).
    pub x: f64,
    /// `y` in image pixel coordinates.
    pub y: f64,
    /// The region the point was taken from, or why it is the box centre.
    pub source: PointSource,
    /// The clamped box.
    pub roi: Roi,
    /// All measured regions.
    pub regions: Vec<Region>,
    /// Intermediate maps (`None` when the ROI was uniform and nothing was computed past k-means).
    pub maps: Option<CfpgMaps>,
}

impl ForegroundPoint {
    /// Whether the point is the box-centre fallback.
    pub fn is_fallback(&self) -> bool {
        matches!(self.source, PointSource::BoxCentre(_))
    }

    /// The point as a prompt for SAM (`x, y` pixels), `None` for the box-centre fallback, which PSLG-SAM does
    /// not give SAM.
    pub fn prompt_xy(&self) -> Option<[f32; 2]> {
        (!self.is_fallback()).then_some([self.x as f32, self.y as f32])
    }

    /// The integer pixel containing the point.
    pub fn pixel(&self) -> (u32, u32) {
        (
            self.x.floor().max(0.0) as u32,
            self.y.floor().max(0.0) as u32,
        )
    }
}

/// The clustering-based foreground point generator of PSLG-SAM (§3.2). Build it with [`CfpgParams::build`].
///
/// # Examples
/// ```
/// use image::{Rgb, RgbImage};
/// use pslg_cfpg::{CfpgParams, PixelBox};
/// // A bright disc on a dark background.
/// let img = RgbImage::from_fn(40, 40, |x, y| {
///     let d = (x as f64 - 20.0).powi(2) + (y as f64 - 18.0).powi(2);
///     if d < 100.0 { Rgb([230, 230, 220]) } else { Rgb([30, 60, 40]) }
/// });
/// let generator = CfpgParams::default().build().unwrap();
/// let p = generator.generate(&img, PixelBox::new(5, 5, 35, 35)).unwrap();
/// assert!(!p.is_fallback());
/// assert!((p.x - 20.5).abs() < 1.0 && (p.y - 18.5).abs() < 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ForegroundPointGenerator {
    params: CfpgParams,
}

impl ForegroundPointGenerator {
    /// The validated parameters.
    pub fn params(&self) -> &CfpgParams {
        &self.params
    }

    /// Runs every step of §3.2 on `image` for `bbox` and returns the foreground point.
    ///
    /// # Errors
    /// A typed [`CfpgError`] for an empty image or a degenerate / outside box (see [`crate::clamp_box`]).
    pub fn generate(&self, image: &RgbImage, bbox: PixelBox) -> Result<ForegroundPoint, CfpgError> {
        let p = &self.params;
        let (crop, roi) = crop_roi(image, bbox)?;
        let centre = (
            f64::from(roi.x) + f64::from(roi.width) / 2.0,
            f64::from(roi.y) + f64::from(roi.height) / 2.0,
        );
        let fallback = |why, regions, maps| ForegroundPoint {
            x: centre.0,
            y: centre.1,
            source: PointSource::BoxCentre(why),
            roi,
            regions,
            maps,
        };
        let colours: Vec<[f32; 3]> = crop
            .pixels()
            .map(|px| [f32::from(px[0]), f32::from(px[1]), f32::from(px[2])])
            .collect();
        let kmeans = kmeans_pp(&colours, p.k, p.seed, p.max_kmeans_iter, p.max_fit_points);
        if kmeans.centroids.len() < 2 {
            return Ok(fallback(Fallback::UniformRoi, Vec::new(), None));
        }
        let fg = foreground_cluster(&kmeans.labels, roi.width, roi.height);
        let binary = binary_map(&kmeans.labels, roi.width, roi.height, fg);
        let cleaned = open_close(&binary, p.open_kernel, p.close_kernel);
        let distance = euclidean_distance_transform(&cleaned);
        let markers = distance_markers(&distance, p.distance_threshold);
        let relief = FloatMap::from_fn(roi.width, roi.height, |x, y| {
            Luma([-distance.get_pixel(x, y)[0]])
        });
        let ws = watershed(&relief, &markers, &cleaned);
        let components = mask_components(&ws, &cleaned);
        let regions = measure_regions(&components);
        let min_area = ((p.min_area_fraction * roi.area() as f64).ceil() as usize).max(1);
        let chosen = select_region(&regions, min_area).cloned();
        let maps = CfpgMaps {
            kmeans,
            foreground_cluster: fg,
            binary,
            cleaned,
            distance,
            markers,
            watershed: ws,
            components,
        };
        let Some(region) = chosen else {
            let why = if regions.is_empty() {
                Fallback::NoForeground
            } else {
                Fallback::NoRegionAboveArea
            };
            return Ok(fallback(why, regions, Some(maps)));
        };
        let ((cx, cy), snapped) = region_point(&maps.components, &region);
        Ok(ForegroundPoint {
            x: f64::from(roi.x) + cx,
            y: f64::from(roi.y) + cy,
            source: PointSource::Region { region, snapped },
            roi,
            regions,
            maps: Some(maps),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;
    use image::Rgb;

    fn generator() -> ForegroundPointGenerator {
        CfpgParams::default().build().unwrap()
    }

    #[test]
    fn rejects_invalid_params() {
        for params in [
            CfpgParams {
                k: 1,
                ..Default::default()
            },
            CfpgParams {
                open_kernel: 4,
                ..Default::default()
            },
            CfpgParams {
                distance_threshold: 1.0,
                ..Default::default()
            },
            CfpgParams {
                min_area_fraction: -0.1,
                ..Default::default()
            },
            CfpgParams {
                max_fit_points: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                params.build(),
                Err(CfpgError::InvalidParam { .. })
            ));
        }
    }

    #[test]
    fn uniform_roi_falls_back_to_centre() {
        let img = RgbImage::from_pixel(20, 10, Rgb([7, 7, 7]));
        let p = generator()
            .generate(&img, PixelBox::new(2, 2, 8, 6))
            .unwrap();
        assert_eq!(p.source, PointSource::BoxCentre(Fallback::UniformRoi));
        assert_eq!((p.x, p.y), (5.0, 4.0));
    }

    #[test]
    fn tiny_images_and_boxes_never_panic() {
        let g = generator();
        let one = RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]));
        assert!(g.generate(&one, PixelBox::new(0, 0, 1, 1)).is_ok());
        let row = RgbImage::from_fn(9, 1, |x, _| Rgb([(x * 20) as u8, 0, 0]));
        assert!(g.generate(&row, PixelBox::new(-3, -3, 30, 30)).is_ok());
        let col = RgbImage::from_fn(1, 9, |_, y| Rgb([0, (y * 20) as u8, 0]));
        assert!(g.generate(&col, PixelBox::new(0, 2, 1, 5)).is_ok());
        assert!(matches!(
            g.generate(&col, PixelBox::new(3, 0, 2, 5)),
            Err(CfpgError::Box(BoxError::DegenerateBox { .. }))
        ));
        assert!(matches!(
            g.generate(&RgbImage::new(0, 0), PixelBox::new(0, 0, 1, 1)),
            Err(CfpgError::Box(BoxError::EmptyImage { .. }))
        ));
    }

    #[test]
    fn picks_the_convex_object_not_the_elongated_one() {
        // A bright square (convex) and a bright thin L-shaped strip (non-convex) inside one box.
        let img = RgbImage::from_fn(60, 60, |x, y| {
            let square = (30..45).contains(&x) && (30..45).contains(&y);
            let l_shape = ((8..12).contains(&x) && (8..50).contains(&y))
                || ((8..50).contains(&x) && (8..12).contains(&y));
            if square || l_shape {
                Rgb([240, 240, 240])
            } else {
                Rgb([20, 40, 20])
            }
        });
        let p = generator()
            .generate(&img, PixelBox::new(2, 2, 58, 58))
            .unwrap();
        let PointSource::Region { region, snapped } = &p.source else {
            panic!("fell back: {:?}", p.source)
        };
        assert!(!snapped);
        assert!(region.convexity > 0.9);
        assert!(
            (p.x - 37.5).abs() < 1.0 && (p.y - 37.5).abs() < 1.0,
            "({}, {})",
            p.x,
            p.y
        );
    }
}
