//! GeoTIFF georeference: read it from a file, map pixels to map coordinates and back, write it onto a mask.
//!
//! The raster-to-model tags (`ModelPixelScale` + `ModelTiepoint`, or `ModelTransformation`) and the GeoKey
//! directory with its parameter tags (`GeoDoubleParams`, `GeoAsciiParams`) are kept **verbatim**: writing them
//! onto a mask of the same size reproduces the input's georeference exactly, whatever CRS it names.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::GrayImage;
use tiff::decoder::Decoder;
use tiff::encoder::{TiffEncoder, colortype};
use tiff::tags::Tag;

use crate::GeoError;

/// GeoKey `GTRasterTypeGeoKey`: `1` = PixelIsArea, `2` = PixelIsPoint.
const RASTER_TYPE_KEY: u16 = 1025;
/// GeoKey `GeographicTypeGeoKey` (EPSG code of a geographic CRS).
const GEOGRAPHIC_TYPE_KEY: u16 = 2048;
/// GeoKey `ProjectedCSTypeGeoKey` (EPSG code of a projected CRS).
const PROJECTED_TYPE_KEY: u16 = 3072;

/// A GDAL-style affine geotransform `[x0, a, b, y0, c, d]`:
/// `X = x0 + a·col + b·row`, `Y = y0 + c·col + d·row`, where `(col, row)` are pixel-corner coordinates —
/// pixel `(i, j)` covers `[i, i + 1) × [j, j + 1)`, so its centre is `(i + 0.5, j + 0.5)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// The identity: map coordinates are pixel coordinates.
    pub const IDENTITY: Self = Self([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    /// Map coordinates of pixel-corner coordinates `(col, row)`.
    pub fn pixel_to_map(&self, col: f64, row: f64) -> (f64, f64) {
        let t = &self.0;
        (
            t[0] + t[1] * col + t[2] * row,
            t[3] + t[4] * col + t[5] * row,
        )
    }

    /// Pixel-corner coordinates of map coordinates `(x, y)`.
    ///
    /// # Errors
    /// [`GeoError::SingularTransform`] when the transform cannot be inverted (zero pixel size).
    pub fn map_to_pixel(&self, x: f64, y: f64) -> Result<(f64, f64), GeoError> {
        let t = &self.0;
        let det = t[1] * t[5] - t[2] * t[4];
        if det == 0.0 || !det.is_finite() {
            return Err(GeoError::SingularTransform(self.0));
        }
        let (dx, dy) = (x - t[0], y - t[3]);
        Ok((
            (t[5] * dx - t[2] * dy) / det,
            (-t[4] * dx + t[1] * dy) / det,
        ))
    }

    /// The smallest box of whole pixels covering the map rectangle between the corners `(x0, y0)` and
    /// `(x1, y1)` (any two opposite corners, map units): what a box prompt in map coordinates means in the
    /// image. Corners within 1e-6 pixel of a pixel edge count as on it (map ↔ pixel round trips are not
    /// exact), so a rectangle drawn on pixel edges gives exactly those pixels.
    ///
    /// # Errors
    /// [`GeoError::SingularTransform`] as [`GeoTransform::map_to_pixel`].
    ///
    /// # Examples
    /// ```
    /// use pslg_geo::GeoTransform;
    /// let t = GeoTransform([500_000.0, 0.5, 0.0, 4_000_000.0, 0.0, -0.5]);
    /// let b = t.pixel_box_covering([500_010.0, 3_999_990.0], [500_005.0, 3_999_995.2]).unwrap();
    /// assert_eq!((b.x1, b.y1, b.x2, b.y2), (10, 9, 20, 20));
    /// ```
    pub fn pixel_box_covering(
        &self,
        corner0: [f64; 2],
        corner1: [f64; 2],
    ) -> Result<pslg_core::PixelBox, GeoError> {
        let (c0, r0) = self.map_to_pixel(corner0[0], corner0[1])?;
        let (c1, r1) = self.map_to_pixel(corner1[0], corner1[1])?;
        let snap = |x: f64| {
            if (x - x.round()).abs() < 1e-6 {
                x.round()
            } else {
                x
            }
        };
        let (c0, r0, c1, r1) = (snap(c0), snap(r0), snap(c1), snap(r1));
        let clamp = |x: f64| x.clamp(-1e9, 1e9) as i64;
        Ok(pslg_core::PixelBox::new(
            clamp(c0.min(c1).floor()),
            clamp(r0.min(r1).floor()),
            clamp(c0.max(c1).ceil()),
            clamp(r0.max(r1).ceil()),
        ))
    }

    /// Area of one pixel in map units² (`|a·d − b·c|`).
    pub fn pixel_area(&self) -> f64 {
        let t = &self.0;
        (t[1] * t[5] - t[2] * t[4]).abs()
    }
}

/// The georeference of a GeoTIFF image.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoReference {
    /// Pixel → map transform (GDAL convention, PixelIsPoint rasters already shifted by half a pixel as GDAL
    /// does).
    pub transform: GeoTransform,
    /// EPSG code of the CRS when the GeoKeys name one (`ProjectedCSTypeGeoKey`, else `GeographicTypeGeoKey`).
    pub epsg: Option<u32>,
    /// Whether the CRS is projected (map units are then linear, usually metres) rather than geographic.
    pub projected: bool,
    /// Whether the raster declares `PixelIsPoint`.
    pub pixel_is_point: bool,
    tags: RawTags,
}

/// The georeference tags exactly as read.
#[derive(Debug, Clone, PartialEq, Default)]
struct RawTags {
    pixel_scale: Option<Vec<f64>>,
    tiepoints: Option<Vec<f64>>,
    model_transformation: Option<Vec<f64>>,
    key_directory: Option<Vec<u16>>,
    double_params: Option<Vec<f64>>,
    ascii_params: Option<String>,
}

fn tiff_err(path: &Path) -> impl Fn(tiff::TiffError) -> GeoError + '_ {
    move |source| GeoError::Tiff {
        path: path.to_path_buf(),
        source,
    }
}

impl GeoReference {
    /// Reads the georeference of the TIFF at `path`; `Ok(None)` for a TIFF without one.
    ///
    /// # Errors
    /// * [`GeoError::Io`] when the file cannot be opened;
    /// * [`GeoError::Tiff`] when it is not a readable TIFF;
    /// * [`GeoError::BadTag`] when a georeference tag is malformed (too few values, a GeoKey directory whose
    ///   length disagrees with its header, a non-finite or zero pixel size).
    pub fn read(path: &Path) -> Result<Option<Self>, GeoError> {
        let file = File::open(path).map_err(|source| GeoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut dec = Decoder::new(BufReader::new(file)).map_err(tiff_err(path))?;
        let mut f64s = |tag: Tag| -> Result<Option<Vec<f64>>, GeoError> {
            match dec.find_tag(tag).map_err(tiff_err(path))? {
                None => Ok(None),
                Some(v) => v.into_f64_vec().map(Some).map_err(tiff_err(path)),
            }
        };
        let tags = RawTags {
            pixel_scale: f64s(Tag::ModelPixelScaleTag)?,
            tiepoints: f64s(Tag::ModelTiepointTag)?,
            model_transformation: f64s(Tag::ModelTransformationTag)?,
            double_params: f64s(Tag::GeoDoubleParamsTag)?,
            key_directory: match dec
                .find_tag(Tag::GeoKeyDirectoryTag)
                .map_err(tiff_err(path))?
            {
                None => None,
                Some(v) => Some(v.into_u16_vec().map_err(tiff_err(path))?),
            },
            ascii_params: match dec
                .find_tag(Tag::GeoAsciiParamsTag)
                .map_err(tiff_err(path))?
            {
                None => None,
                Some(v) => Some(v.into_string().map_err(tiff_err(path))?),
            },
        };
        Self::from_tags(tags, path)
    }

    fn from_tags(tags: RawTags, path: &Path) -> Result<Option<Self>, GeoError> {
        let bad = |tag: &'static str, reason: String| GeoError::BadTag {
            path: path.to_path_buf(),
            tag,
            reason,
        };
        let keys = match &tags.key_directory {
            Some(k) => parse_keys(k).map_err(|r| bad("GeoKeyDirectory", r))?,
            None => Vec::new(),
        };
        let key = |id: u16| keys.iter().find(|k| k.0 == id).map(|k| k.1);
        let pixel_is_point = key(RASTER_TYPE_KEY) == Some(2);
        let mut t = if let Some(m) = &tags.model_transformation {
            if m.len() < 16 {
                return Err(bad(
                    "ModelTransformation",
                    format!("{} values, expected 16", m.len()),
                ));
            }
            [m[3], m[0], m[1], m[7], m[4], m[5]]
        } else {
            let (Some(tp), Some(sc)) = (&tags.tiepoints, &tags.pixel_scale) else {
                return Ok(None);
            };
            if tp.len() < 6 {
                return Err(bad(
                    "ModelTiepoint",
                    format!("{} values, expected ≥ 6", tp.len()),
                ));
            }
            if sc.len() < 2 {
                return Err(bad(
                    "ModelPixelScale",
                    format!("{} values, expected ≥ 2", sc.len()),
                ));
            }
            // The first tiepoint anchors raster (I, J) at model (X, Y); rows go south, hence −Sy.
            [
                tp[3] - tp[0] * sc[0],
                sc[0],
                0.0,
                tp[4] + tp[1] * sc[1],
                0.0,
                -sc[1],
            ]
        };
        if pixel_is_point {
            // The tiepoint names a pixel centre: move the origin to the pixel corner (GDAL's default).
            t[0] -= 0.5 * (t[1] + t[2]);
            t[3] -= 0.5 * (t[4] + t[5]);
        }
        let transform = GeoTransform(t);
        if !t.iter().all(|v| v.is_finite()) || transform.pixel_area() == 0.0 {
            return Err(bad(
                "ModelPixelScale",
                format!("degenerate geotransform {t:?}"),
            ));
        }
        let projected_code = key(PROJECTED_TYPE_KEY).filter(|&c| c != 0 && c != 32767);
        let geographic_code = key(GEOGRAPHIC_TYPE_KEY).filter(|&c| c != 0 && c != 32767);
        Ok(Some(Self {
            transform,
            epsg: projected_code.or(geographic_code).map(u32::from),
            projected: projected_code.is_some(),
            pixel_is_point,
            tags,
        }))
    }

    /// The georeference of the window of this raster whose top-left pixel is `(x0, y0)`: same CRS and pixel
    /// size, origin moved. The raster coordinates of the tiepoints are shifted (a ModelTransformation is
    /// translated instead), so a window written with it overlays its source exactly.
    pub fn shifted(&self, x0: u32, y0: u32) -> Self {
        let (dx, dy) = (f64::from(x0), f64::from(y0));
        let mut tags = self.tags.clone();
        if let Some(tp) = tags.tiepoints.as_mut() {
            for t in tp.chunks_exact_mut(6) {
                t[0] -= dx;
                t[1] -= dy;
            }
        }
        if let Some(m) = tags.model_transformation.as_mut().filter(|m| m.len() >= 16) {
            m[3] += m[0] * dx + m[1] * dy;
            m[7] += m[4] * dx + m[5] * dy;
        }
        let mut t = self.transform.0;
        t[0] += t[1] * dx + t[2] * dy;
        t[3] += t[4] * dx + t[5] * dy;
        Self {
            transform: GeoTransform(t),
            tags,
            ..self.clone()
        }
    }

    /// Writes `mask` as a single-band 8-bit GeoTIFF carrying this georeference (the tags as read, so GIS
    /// tools overlay the mask exactly on the image it came from, which must have the mask's size).
    ///
    /// # Errors
    /// [`GeoError::Io`] / [`GeoError::Tiff`] when the file cannot be written.
    pub fn write_mask(&self, path: &Path, mask: &GrayImage) -> Result<(), GeoError> {
        write_gray_tiff(path, mask, Some(&self.tags))
    }
}

/// Writes `mask` as a plain single-band 8-bit TIFF (no georeference).
///
/// # Errors
/// [`GeoError::Io`] / [`GeoError::Tiff`] when the file cannot be written.
pub fn write_plain_mask(path: &Path, mask: &GrayImage) -> Result<(), GeoError> {
    write_gray_tiff(path, mask, None)
}

/// Writes the TIFF crash-safely (complete or not at all, [`pslg_core::atomic`]).
fn write_gray_tiff(path: &Path, mask: &GrayImage, tags: Option<&RawTags>) -> Result<(), GeoError> {
    let mut failure = None;
    pslg_core::atomic::write_atomic(path, |w| {
        encode_gray_tiff(w, path, mask, tags).map_err(|e| {
            failure = Some(e);
            std::io::Error::other("TIFF encoding failed")
        })
    })
    .map_err(|source| {
        failure.take().unwrap_or_else(|| GeoError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

fn encode_gray_tiff<W: std::io::Write + std::io::Seek>(
    w: W,
    path: &Path,
    mask: &GrayImage,
    tags: Option<&RawTags>,
) -> Result<(), GeoError> {
    let err = tiff_err(path);
    let mut enc = TiffEncoder::new(w).map_err(&err)?;
    let mut img = enc
        .new_image::<colortype::Gray8>(mask.width(), mask.height())
        .map_err(&err)?;
    if let Some(t) = tags {
        let d = img.encoder();
        if let Some(v) = &t.pixel_scale {
            d.write_tag(Tag::ModelPixelScaleTag, &v[..]).map_err(&err)?;
        }
        if let Some(v) = &t.tiepoints {
            d.write_tag(Tag::ModelTiepointTag, &v[..]).map_err(&err)?;
        }
        if let Some(v) = &t.model_transformation {
            d.write_tag(Tag::ModelTransformationTag, &v[..])
                .map_err(&err)?;
        }
        if let Some(v) = &t.key_directory {
            d.write_tag(Tag::GeoKeyDirectoryTag, &v[..]).map_err(&err)?;
        }
        if let Some(v) = &t.double_params {
            d.write_tag(Tag::GeoDoubleParamsTag, &v[..]).map_err(&err)?;
        }
        if let Some(v) = &t.ascii_params {
            d.write_tag(Tag::GeoAsciiParamsTag, v.as_str())
                .map_err(&err)?;
        }
    }
    img.write_data(mask.as_raw()).map_err(&err)?;
    Ok(())
}

/// `(key id, inline value)` of every GeoKey stored inline (TIFF tag location 0); keys whose values live in
/// the double or ASCII parameter tags are listed with value 0.
fn parse_keys(dir: &[u16]) -> Result<Vec<(u16, u16)>, String> {
    if dir.len() < 4 {
        return Err(format!("{} values, expected a 4-value header", dir.len()));
    }
    let n = usize::from(dir[3]);
    if dir.len() < 4 + 4 * n {
        return Err(format!(
            "header announces {n} keys ({} values), the tag has {}",
            4 + 4 * n,
            dir.len()
        ));
    }
    Ok(dir[4..4 + 4 * n]
        .chunks_exact(4)
        .map(|k| (k[0], if k[1] == 0 { k[3] } else { 0 }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_round_trips_and_rejects_singular() {
        let t = GeoTransform([733601.0, 0.5, 0.1, 3725139.0, -0.05, -0.5]);
        let (x, y) = t.pixel_to_map(12.5, 7.25);
        let (c, r) = t.map_to_pixel(x, y).unwrap();
        assert!((c - 12.5).abs() < 1e-9 && (r - 7.25).abs() < 1e-9);
        assert!((t.pixel_area() - (0.5 * -0.5 - 0.1 * -0.05f64).abs()).abs() < 1e-12);
        assert!(matches!(
            GeoTransform([0.0; 6]).map_to_pixel(1.0, 1.0),
            Err(GeoError::SingularTransform(_))
        ));
    }

    #[test]
    fn shifted_window_keeps_map_coordinates() {
        let p = Path::new("x.tif");
        for tags in [
            RawTags {
                pixel_scale: Some(vec![0.5, 0.5, 0.0]),
                tiepoints: Some(vec![0.0, 0.0, 0.0, 100.0, 200.0, 0.0]),
                ..Default::default()
            },
            RawTags {
                model_transformation: Some(vec![
                    0.5, 0.1, 0.0, 100.0, -0.05, -0.5, 0.0, 200.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                    0.0, 1.0,
                ]),
                ..Default::default()
            },
        ] {
            let g = GeoReference::from_tags(tags, p).unwrap().unwrap();
            let w = g.shifted(30, 7);
            // Pixel (c, r) of the window is pixel (c + 30, r + 7) of the source.
            let (a, b) = (
                w.transform.pixel_to_map(2.5, 1.5),
                g.transform.pixel_to_map(32.5, 8.5),
            );
            assert!(
                (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9,
                "{a:?} vs {b:?}"
            );
            // And the shifted tags say the same when read back.
            let again = GeoReference::from_tags(w.tags.clone(), p).unwrap().unwrap();
            assert_eq!(again.transform, w.transform);
        }
    }

    #[test]
    fn tags_to_transform_pixel_is_point_and_bad_directories() {
        let p = Path::new("x.tif");
        let tags = RawTags {
            pixel_scale: Some(vec![0.5, 0.5, 0.0]),
            tiepoints: Some(vec![0.0, 0.0, 0.0, 100.0, 200.0, 0.0]),
            key_directory: Some(vec![1, 1, 0, 2, 1025, 0, 1, 2, 3072, 0, 1, 32616]),
            ..Default::default()
        };
        let g = GeoReference::from_tags(tags.clone(), p).unwrap().unwrap();
        assert!(g.pixel_is_point && g.projected);
        assert_eq!(g.epsg, Some(32616));
        assert_eq!(g.transform.0, [99.75, 0.5, 0.0, 200.25, 0.0, -0.5]);
        let truncated = RawTags {
            key_directory: Some(vec![1, 1, 0, 3, 1025, 0, 1, 2]),
            ..tags.clone()
        };
        assert!(matches!(
            GeoReference::from_tags(truncated, p),
            Err(GeoError::BadTag {
                tag: "GeoKeyDirectory",
                ..
            })
        ));
        let zero_scale = RawTags {
            pixel_scale: Some(vec![0.0, 0.0]),
            ..tags
        };
        assert!(matches!(
            GeoReference::from_tags(zero_scale, p),
            Err(GeoError::BadTag { .. })
        ));
        assert_eq!(
            GeoReference::from_tags(RawTags::default(), p).unwrap(),
            None
        );
    }
}
