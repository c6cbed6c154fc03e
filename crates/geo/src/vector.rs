//! Masks to polygons (with holes) and GeoJSON features.
//!
//! Boundaries come from marching squares at level ½ on the mask (`contour` crate, the algorithm of
//! d3-contour): every vertex lies half-way between a foreground and a background pixel centre, so each
//! foreground pixel centre is inside the polygons and each background one outside — rasterising the
//! unsimplified polygons at pixel centres gives the mask back exactly. Coordinates are pixel-corner
//! coordinates (pixel `(i, j)` covers `[i, i + 1) × [j, j + 1)`) before the geotransform is applied.

use contour::ContourBuilder;
use geo::{Contains, Coord, MapCoords, MultiPolygon, Point, Simplify};
use geojson::{Feature, FeatureCollection, Geometry, JsonObject, JsonValue};
use image::GrayImage;

use crate::{GeoError, GeoReference, GeoTransform};

/// Polygons with holes covering the non-zero pixels of `mask`, in pixel-corner coordinates.
///
/// With `simplify = Some(eps)` each ring is simplified by Ramer–Douglas–Peucker with tolerance `eps` pixels
/// (`geo::Simplify`); rings that collapse are dropped. An empty mask gives an empty multipolygon.
///
/// # Errors
/// [`GeoError::Contour`] when the contour builder rejects the grid (it does not for any mask of positive size).
pub fn mask_polygons(
    mask: &GrayImage,
    simplify: Option<f64>,
) -> Result<MultiPolygon<f64>, GeoError> {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    if w == 0 || h == 0 || mask.pixels().all(|p| p[0] == 0) {
        return Ok(MultiPolygon::new(Vec::new()));
    }
    let values: Vec<f64> = mask
        .pixels()
        .map(|p| f64::from(u8::from(p[0] != 0)))
        .collect();
    let contours = ContourBuilder::new(w, h, false)
        .contours(&values, &[0.5])
        .map_err(|e| GeoError::Contour(e.to_string()))?;
    let polygons = contours
        .into_iter()
        .next()
        .map(|c| c.into_inner().0)
        .unwrap_or_else(|| MultiPolygon::new(Vec::new()));
    Ok(match simplify {
        Some(eps) if eps > 0.0 => {
            let s = polygons.simplify(eps);
            MultiPolygon::new(
                s.0.into_iter()
                    .filter(|p| p.exterior().0.len() >= 4)
                    .collect(),
            )
        }
        _ => polygons,
    })
}

/// `polygons` (pixel-corner coordinates) in map coordinates.
pub fn to_map(polygons: &MultiPolygon<f64>, transform: &GeoTransform) -> MultiPolygon<f64> {
    polygons.map_coords(|c| {
        let (x, y) = transform.pixel_to_map(c.x, c.y);
        Coord { x, y }
    })
}

/// Rasterises `polygons` (pixel-corner coordinates) at pixel centres onto a `width × height` mask
/// (255 inside). The inverse of [`mask_polygons`] without simplification.
pub fn rasterize(polygons: &MultiPolygon<f64>, width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        let c = Point::new(f64::from(x) + 0.5, f64::from(y) + 0.5);
        image::Luma([if polygons.contains(&c) { 255 } else { 0 }])
    })
}

/// One segmented object, for [`feature_collection`].
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectFeature {
    /// Identifier written as the feature's `id` property.
    pub id: String,
    /// The prompt that produced it (a box, a sentence).
    pub prompt: String,
    /// A confidence score when the producing stage has one.
    pub score: Option<f64>,
    /// The object's polygons in pixel-corner coordinates ([`mask_polygons`]).
    pub polygons: MultiPolygon<f64>,
    /// Number of mask pixels of the object (its area is this times the pixel area).
    pub pixels: u64,
}

/// A GeoJSON FeatureCollection with one Feature (MultiPolygon) per object.
///
/// With a georeference, coordinates are in the image's CRS, named by a `crs` member
/// (`urn:ogc:def:crs:EPSG::<code>`, the 2008 GeoJSON convention GDAL and QGIS read; RFC 7946 files are WGS 84
/// only, which would need a reprojection this crate does not do), and each feature's `area` is in map units²
/// (`area_unit`: `"m²"` for a projected CRS, `"map units²"` otherwise). Without one, coordinates are pixel
/// coordinates (x right, y down, pixel `(i, j)` covering `[i, i+1) × [j, j+1)`), said by the collection's
/// `pslg:coordinates` member, and areas are in pixels.
pub fn feature_collection(
    objects: &[ObjectFeature],
    georef: Option<&GeoReference>,
) -> FeatureCollection {
    let features = objects
        .iter()
        .map(|o| {
            let (geometry, area, unit) = match georef {
                Some(g) => (
                    to_map(&o.polygons, &g.transform),
                    o.pixels as f64 * g.transform.pixel_area(),
                    if g.projected { "m²" } else { "map units²" },
                ),
                None => (o.polygons.clone(), o.pixels as f64, "pixels"),
            };
            let mut props = JsonObject::new();
            props.insert("id".into(), JsonValue::from(o.id.clone()));
            props.insert("prompt".into(), JsonValue::from(o.prompt.clone()));
            props.insert(
                "score".into(),
                o.score.map_or(JsonValue::Null, JsonValue::from),
            );
            props.insert("area".into(), JsonValue::from(area));
            props.insert("area_unit".into(), JsonValue::from(unit));
            props.insert("pixels".into(), JsonValue::from(o.pixels));
            Feature {
                bbox: None,
                geometry: Some(Geometry::new((&geometry).into())),
                id: None,
                properties: Some(props),
                foreign_members: None,
            }
        })
        .collect();
    let mut members = JsonObject::new();
    match georef.and_then(|g| g.epsg) {
        Some(code) => {
            members.insert(
                "crs".into(),
                serde_json::json!({
                    "type": "name",
                    "properties": { "name": format!("urn:ogc:def:crs:EPSG::{code}") }
                }),
            );
        }
        None => {
            let what = if georef.is_some() {
                "map coordinates of a georeference without an EPSG code"
            } else {
                "pixel coordinates: x right, y down, pixel (i, j) covers [i, i+1) x [j, j+1)"
            };
            members.insert("pslg:coordinates".into(), JsonValue::from(what));
        }
    }
    FeatureCollection {
        bbox: None,
        features,
        foreign_members: Some(members),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// A ring (square with a square hole), an isolated pixel, a diagonal pair and a border-touching bar.
    fn shapes() -> GrayImage {
        GrayImage::from_fn(24, 16, |x, y| {
            let ring = (2..12).contains(&x)
                && (2..12).contains(&y)
                && !((5..8).contains(&x) && (5..8).contains(&y));
            let dot = x == 15 && y == 3;
            let diag = (x, y) == (18, 6) || (x, y) == (19, 7);
            let bar = x == 23 || y == 15;
            Luma([if ring || dot || diag || bar { 255 } else { 0 }])
        })
    }

    #[test]
    fn polygons_rasterise_back_to_the_mask_exactly() {
        let m = shapes();
        let p = mask_polygons(&m, None).unwrap();
        assert!(
            p.0.iter().any(|poly| !poly.interiors().is_empty()),
            "the ring's hole is kept"
        );
        assert_eq!(rasterize(&p, 24, 16), m);
        assert!(
            mask_polygons(&GrayImage::new(5, 5), None)
                .unwrap()
                .0
                .is_empty()
        );
        assert!(
            mask_polygons(&GrayImage::new(0, 0), None)
                .unwrap()
                .0
                .is_empty()
        );
        let one = GrayImage::from_pixel(1, 1, Luma([255]));
        assert_eq!(rasterize(&mask_polygons(&one, None).unwrap(), 1, 1), one);
    }

    #[test]
    fn simplification_reduces_vertices_and_stays_close() {
        let disc = GrayImage::from_fn(64, 64, |x, y| {
            let d = (f64::from(x) - 31.5).powi(2) + (f64::from(y) - 31.5).powi(2);
            Luma([if d < 400.0 { 255 } else { 0 }])
        });
        let full = mask_polygons(&disc, None).unwrap();
        let simple = mask_polygons(&disc, Some(1.0)).unwrap();
        let count = |p: &MultiPolygon<f64>| p.0.iter().map(|q| q.exterior().0.len()).sum::<usize>();
        assert!(count(&simple) < count(&full) / 2);
        let back = rasterize(&simple, 64, 64);
        let (mut i, mut u) = (0u32, 0u32);
        for (a, b) in back.pixels().zip(disc.pixels()) {
            i += u32::from(a[0] != 0 && b[0] != 0);
            u += u32::from(a[0] != 0 || b[0] != 0);
        }
        assert!(f64::from(i) / f64::from(u) > 0.95);
    }

    #[test]
    fn features_carry_crs_or_say_pixels() {
        let m = shapes();
        let obj = ObjectFeature {
            id: "a".into(),
            prompt: "box".into(),
            score: None,
            polygons: mask_polygons(&m, None).unwrap(),
            pixels: m.pixels().filter(|p| p[0] != 0).count() as u64,
        };
        let fc = feature_collection(std::slice::from_ref(&obj), None);
        let text = fc.to_string();
        assert!(text.contains("pslg:coordinates") && !text.contains("\"crs\""));
        assert_eq!(fc.features.len(), 1);
    }
}
