//! The pipeline's stages on one real image, as pictures: the box prompt, CFPG's foreground cluster and
//! point, SAM's mask (with `--sam`), and the mask after MBO. Writes `OUT_DIR/walkthrough_*.jpg` (the
//! pictures of `docs/walkthrough.md`) and prints one JSON line with each stage's mask size and IoU against
//! the footprint when one is given.
//!
//! ```sh
//! cargo run --release --example walkthrough -- [--image IMG] [--box x1,y1,x2,y2] [--truth MASK.tif]
//!     [--sam sam_vit_b_01ec64.pth] [--out-dir docs/img]
//! ```
//! Defaults: the SpaceNet GeoTIFF shipped in `examples/data/` and one of its buildings.

use anyhow::{Context, Result, bail};
use image::{GrayImage, Luma, RgbImage, imageops};
use pslg::cfpg::{PixelBox, Roi, clamp_box};
use pslg::io::load_rgb;
use pslg::overlay::draw_overlay_with_legend;
use pslg::{BoxSegmenter, BoxSegmenterParams, SamSegmenter, SamSegmenterParams};
use std::path::PathBuf;

/// Zoom of the pictures (nearest neighbour, so pixels stay visible).
const ZOOM: u32 = 3;

struct Args {
    image: PathBuf,
    bbox: PixelBox,
    truth: Option<PathBuf>,
    sam: Option<PathBuf>,
    out_dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        image: "examples/data/sample_geotiff.tif".into(),
        bbox: PixelBox::new(477, 358, 528, 397),
        truth: None,
        sam: None,
        out_dir: "docs/img".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--image" => a.image = value()?.into(),
            "--box" => a.bbox = value()?.parse()?,
            "--truth" => a.truth = Some(value()?.into()),
            "--sam" => a.sam = Some(value()?.into()),
            "--out-dir" => a.out_dir = value()?.into(),
            other => bail!("unknown argument {other:?} (see the example's documentation)"),
        }
    }
    Ok(a)
}

/// The box's neighbourhood (the box and one box size around it), clamped to the image.
fn view(roi: Roi, w: u32, h: u32) -> Roi {
    let (mx, my) = (roi.width, roi.height);
    let x0 = roi.x.saturating_sub(mx);
    let y0 = roi.y.saturating_sub(my);
    let x1 = (roi.x + roi.width + mx).min(w);
    let y1 = (roi.y + roi.height + my).min(h);
    Roi {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

/// One picture: the view of `image` with `mask`, the box and the point, zoomed, with a caption.
fn picture(
    image: &RgbImage,
    mask: &GrayImage,
    roi: Roi,
    point: Option<(f64, f64)>,
    caption: &str,
) -> RgbImage {
    let v = view(roi, image.width(), image.height());
    let crop = imageops::crop_imm(image, v.x, v.y, v.width, v.height).to_image();
    let crop_mask = imageops::crop_imm(mask, v.x, v.y, v.width, v.height).to_image();
    let (zw, zh) = (v.width * ZOOM, v.height * ZOOM);
    let crop = imageops::resize(&crop, zw, zh, imageops::FilterType::Nearest);
    let crop_mask = imageops::resize(&crop_mask, zw, zh, imageops::FilterType::Nearest);
    let zroi = Roi {
        x: (roi.x - v.x) * ZOOM,
        y: (roi.y - v.y) * ZOOM,
        width: roi.width * ZOOM,
        height: roi.height * ZOOM,
    };
    let zpoint = point.map(|(x, y)| {
        (
            (x - f64::from(v.x)) * f64::from(ZOOM),
            (y - f64::from(v.y)) * f64::from(ZOOM),
        )
    });
    draw_overlay_with_legend(&crop, &crop_mask, zroi, zpoint, Some(caption))
}

fn area(m: &GrayImage) -> u64 {
    m.pixels().filter(|p| p[0] != 0).count() as u64
}

fn iou(a: &GrayImage, b: &GrayImage) -> f64 {
    let (mut i, mut u) = (0u64, 0u64);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let (p, q) = (p[0] != 0, q[0] != 0);
        i += u64::from(p && q);
        u += u64::from(p || q);
    }
    if u == 0 { 0.0 } else { i as f64 / u as f64 }
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let image = load_rgb(&a.image)?;
    let (w, h) = image.dimensions();
    let roi = clamp_box(a.bbox, w, h)?;
    let truth = a
        .truth
        .as_ref()
        .map(|p| pslg::io::load_mask(p))
        .transpose()?;
    std::fs::create_dir_all(&a.out_dir)?;
    let save = |name: &str, pic: RgbImage| -> Result<PathBuf> {
        let p = a.out_dir.join(name);
        pic.save(&p)
            .with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let mut report = serde_json::Map::new();
    let mut record = |stage: &str, m: &GrayImage| {
        let mut j = serde_json::json!({"pixels": area(m)});
        if let Some(t) = &truth {
            j["iou"] = ((iou(m, t) * 10000.0).round() / 10000.0).into();
        }
        report.insert(stage.into(), j);
    };

    // 1. The box prompt (from grounding, or given): the box itself as the mask.
    let mut box_mask = GrayImage::new(w, h);
    for y in roi.y..roi.y + roi.height {
        for x in roi.x..roi.x + roi.width {
            box_mask.put_pixel(x, y, Luma([255]));
        }
    }
    record("box", &box_mask);
    save(
        "walkthrough_1_box.jpg",
        picture(&image, &GrayImage::new(w, h), roi, None, "1. box prompt"),
    )?;

    // 2. CFPG: the foreground cluster of k-means after opening/closing, and the point of the most convex region.
    let seg = BoxSegmenter::new(BoxSegmenterParams::default())?;
    let out = seg.segment(&image, a.bbox)?;
    let point = out.point.as_ref().context("CFPG ran")?;
    let mut cluster = GrayImage::new(w, h);
    if let Some(maps) = &point.maps {
        for (x, y, v) in maps.cleaned.enumerate_pixels() {
            if v[0] != 0 {
                cluster.put_pixel(point.roi.x + x, point.roi.y + y, Luma([255]));
            }
        }
    }
    save(
        "walkthrough_2_cfpg.jpg",
        picture(
            &image,
            &cluster,
            roi,
            Some((point.x, point.y)),
            "2. CFPG cluster + point",
        ),
    )?;

    // 3. SAM with box + point (needs an official checkpoint), then 4. MBO from SAM's mask.
    let (final_mask, final_point) = match &a.sam {
        Some(ckpt) => {
            let device = Default::default();
            let sam = pslg::sam::Sam::<burn_ndarray::NdArray>::load(ckpt, None, &device)?;
            let mut s = SamSegmenter::new(sam, device, seg.clone(), SamSegmenterParams::default());
            s.set_image(&image)?;
            let with_mbo = s.segment(&image, a.bbox)?;
            let sam_only = s.segment_with(
                &image,
                a.bbox,
                &BoxSegmenter::new(BoxSegmenterParams {
                    mbo: None,
                    ..BoxSegmenterParams::default()
                })?,
            )?;
            record("sam", &sam_only.mask);
            save(
                "walkthrough_3_sam.jpg",
                picture(
                    &image,
                    &sam_only.mask,
                    roi,
                    Some((point.x, point.y)),
                    "3. SAM mask",
                ),
            )?;
            (with_mbo.mask, Some((point.x, point.y)))
        }
        None => {
            eprintln!(
                "no --sam checkpoint: the SAM picture is skipped and MBO starts from the box"
            );
            (out.mask.clone(), Some((point.x, point.y)))
        }
    };
    record("mbo", &final_mask);
    let p = save(
        "walkthrough_4_mbo.jpg",
        picture(
            &image,
            &final_mask,
            roi,
            final_point,
            "4. refined mask (MBO)",
        ),
    )?;
    report.insert(
        "out".into(),
        p.parent().map(|d| d.display().to_string()).into(),
    );
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}
