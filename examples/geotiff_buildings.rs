//! Every building of a real SpaceNet GeoTIFF, box → mask, scored against its footprint polygon, and written
//! out the way a GIS user wants it: one georeferenced mask GeoTIFF, one GeoJSON with a polygon per building,
//! and an overlay picture.
//!
//! ```sh
//! cargo run --release --example geotiff_buildings -- [DATA_DIR] [OUT_DIR]
//! ```
//! `DATA_DIR` defaults to `../shared/data/geotiff-sample` (files `sample_geotiff.tif`, `sample_geotiff.tif.txt`
//! with normalised boxes `0 cx cy w h`, and `geotiff_labels.geojson` with the footprints in map coordinates);
//! `OUT_DIR` to `out/geotiff-buildings`; an optional third argument `LOW,HIGH` stretches the 16-bit band by
//! those percentiles instead of its min/max. Prints one JSON line: per-building IoU of pslg and of the box itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use geo::{BoundingRect, Coord, MapCoords, MultiPolygon};
use image::{GrayImage, Luma, Rgb};
use pslg::cfpg::PixelBox;
use pslg::geo::{GeoReference, ObjectFeature, feature_collection, mask_polygons, rasterize};
use pslg::io::{LoadOptions, Stretch, load_rgb_with, save_mask_for};
use pslg::{BoxSegmenter, BoxSegmenterParams};

/// Normalised YOLO boxes `class cx cy w h` → pixel boxes (x2/y2 exclusive, rounded outwards).
fn read_boxes(path: &Path, width: u32, height: u32) -> Result<Vec<PixelBox>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (w, h) = (f64::from(width), f64::from(height));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: Vec<f64> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}:{}: not numbers", path.display(), i + 1))?;
            if v.len() != 5 {
                bail!("{}:{}: expected `class cx cy w h`", path.display(), i + 1);
            }
            let (cx, cy, bw, bh) = (v[1] * w, v[2] * h, v[3] * w, v[4] * h);
            Ok(PixelBox::new(
                (cx - bw / 2.0).floor() as i64,
                (cy - bh / 2.0).floor() as i64,
                (cx + bw / 2.0).ceil() as i64,
                (cy + bh / 2.0).ceil() as i64,
            ))
        })
        .collect()
}

/// The footprints of a GeoJSON FeatureCollection, in pixel-corner coordinates of the image.
fn read_footprints(path: &Path, georef: &GeoReference) -> Result<Vec<MultiPolygon<f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let gj: geojson::GeoJson = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let geojson::GeoJson::FeatureCollection(fc) = gj else {
        bail!("{}: not a FeatureCollection", path.display());
    };
    fc.features
        .into_iter()
        .filter_map(|f| f.geometry)
        .map(|g| {
            let geom: geo::Geometry<f64> = g.try_into().context("unsupported geometry")?;
            let mp = match geom {
                geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
                geo::Geometry::MultiPolygon(mp) => mp,
                other => bail!("footprint is not a polygon: {other:?}"),
            };
            let t = georef.transform;
            Ok(mp.try_map_coords(|c| t.map_to_pixel(c.x, c.y).map(|(x, y)| Coord { x, y }))?)
        })
        .collect()
}

fn iou(a: &GrayImage, b: &GrayImage) -> f64 {
    let (mut i, mut u) = (0u64, 0u64);
    for (p, q) in a.pixels().zip(b.pixels()) {
        i += u64::from(p[0] != 0 && q[0] != 0);
        u += u64::from(p[0] != 0 || q[0] != 0);
    }
    if u == 0 { 0.0 } else { i as f64 / u as f64 }
}

fn box_iou(a: PixelBox, b: PixelBox) -> f64 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0) as f64;
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0) as f64;
    let area = |p: PixelBox| ((p.x2 - p.x1).max(0) * (p.y2 - p.y1).max(0)) as f64;
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/geotiff-sample".into()),
    );
    let out = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "out/geotiff-buildings".into()),
    );
    // Optional third argument: percentile stretch `LOW,HIGH` instead of the default min/max.
    let stretch = match args.next() {
        None => Stretch::MinMax,
        Some(t) => {
            let v: Vec<f64> = t.split(',').map(str::parse).collect::<Result<_, _>>()?;
            if v.len() != 2 {
                bail!("stretch {t:?} is not LOW,HIGH");
            }
            Stretch::Percentile {
                low: v[0],
                high: v[1],
            }
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let image_path = data.join("sample_geotiff.tif");
    let image = load_rgb_with(
        &image_path,
        &LoadOptions {
            bands: None,
            stretch,
        },
    )?;
    let (w, h) = image.dimensions();
    let georef = GeoReference::read(&image_path)?
        .with_context(|| format!("{} has no georeference", image_path.display()))?;
    let boxes = read_boxes(&data.join("sample_geotiff.tif.txt"), w, h)?;
    let footprints = read_footprints(&data.join("geotiff_labels.geojson"), &georef)?;
    // Each box's footprint: the one whose bounding box overlaps it most.
    let footprint_boxes: Vec<PixelBox> = footprints
        .iter()
        .map(|f| {
            let r = f
                .bounding_rect()
                .unwrap_or(geo::Rect::new((0.0, 0.0), (0.0, 0.0)));
            PixelBox::new(
                r.min().x.round() as i64,
                r.min().y.round() as i64,
                r.max().x.round() as i64,
                r.max().y.round() as i64,
            )
        })
        .collect();

    let seg = BoxSegmenter::new(BoxSegmenterParams::default())?;
    let mut union_mask = GrayImage::new(w, h);
    let mut overlay = image.clone();
    let mut features = Vec::new();
    let (mut ious, mut box_ious) = (Vec::new(), Vec::new());
    for (k, &b) in boxes.iter().enumerate() {
        let Some((j, _)) = footprint_boxes
            .iter()
            .enumerate()
            .map(|(j, &f)| (j, box_iou(b, f)))
            .filter(|&(_, o)| o > 0.3)
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            eprintln!("box {k} matches no footprint; skipped");
            continue;
        };
        let truth = rasterize(&footprints[j], w, h);
        let out_mask = seg.segment(&image, b)?;
        ious.push(iou(&out_mask.mask, &truth));
        let boxed = GrayImage::from_fn(w, h, |x, y| {
            let inside =
                (x as i64) >= b.x1 && (x as i64) < b.x2 && (y as i64) >= b.y1 && (y as i64) < b.y2;
            Luma([if inside { 255 } else { 0 }])
        });
        box_ious.push(iou(&boxed, &truth));
        for (x, y, p) in out_mask.mask.enumerate_pixels() {
            if p[0] != 0 {
                union_mask.put_pixel(x, y, Luma([255]));
                let o = overlay.get_pixel_mut(x, y);
                *o = Rgb([o[0] / 2 + 120, o[1] / 2 + 10, o[2] / 2 + 10]);
            }
        }
        for (x, y) in footprints[j].exterior_pixels(w, h) {
            overlay.put_pixel(x, y, Rgb([40, 255, 40]));
        }
        features.push(ObjectFeature {
            id: format!("building-{k}"),
            prompt: format!("box {},{},{},{}", b.x1, b.y1, b.x2, b.y2),
            score: None,
            pixels: out_mask.mask.pixels().filter(|p| p[0] != 0).count() as u64,
            polygons: mask_polygons(&out_mask.mask, Some(0.5))?,
        });
    }
    save_mask_for(&union_mask, &out.join("buildings_mask.tif"), Some(&georef))?;
    std::fs::write(
        out.join("buildings.geojson"),
        feature_collection(&features, Some(&georef)).to_string(),
    )?;
    overlay.save(out.join("overlay.png"))?;
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        if s.is_empty() { 0.0 } else { s[s.len() / 2] }
    };
    println!(
        "{}",
        serde_json::json!({
            "buildings": ious.len(),
            "boxes": boxes.len(),
            "mean_iou": (mean(&ious) * 1e4).round() / 100.0,
            "median_iou": (median(&ious) * 1e4).round() / 100.0,
            "box_mean_iou": (mean(&box_ious) * 1e4).round() / 100.0,
            "box_median_iou": (median(&box_ious) * 1e4).round() / 100.0,
            "out_dir": out.display().to_string(),
        })
    );
    Ok(())
}

/// Pixels on the outline of a footprint, for drawing it.
trait ExteriorPixels {
    fn exterior_pixels(&self, width: u32, height: u32) -> Vec<(u32, u32)>;
}

impl ExteriorPixels for MultiPolygon<f64> {
    fn exterior_pixels(&self, width: u32, height: u32) -> Vec<(u32, u32)> {
        let mut px = Vec::new();
        for poly in &self.0 {
            for seg in poly.exterior().lines() {
                let n = (seg.dx().abs().max(seg.dy().abs()).ceil() as usize).max(1) * 2;
                for t in 0..=n {
                    let f = t as f64 / n as f64;
                    let (x, y) = (seg.start.x + f * seg.dx(), seg.start.y + f * seg.dy());
                    if x >= 0.0 && y >= 0.0 && (x as u32) < width && (y as u32) < height {
                        px.push((x as u32, y as u32));
                    }
                }
            }
        }
        px
    }
}
