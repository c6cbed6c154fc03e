//! `pslg segment`: one box (pixels, map coordinates, or a sentence grounded by LQVG) of one image → mask,
//! GeoTIFF / GeoJSON, overlay; whole image, the box's window, or tile by tile.

use crate::flags::{CpuBackend, GroundingFlags, ImageFlags, SamFlags, StageFlags};
use crate::report::{ms, parse_numbers};
use anyhow::{Context, Result, bail};
use clap::Args;
use geo::MapCoords;
use image::RgbImage;
use pslg::BoxSegmenter;
use pslg::geo::{GeoReference, ObjectFeature, feature_collection, mask_polygons};
use pslg::io::{LoadOptions, is_tiff_path, load_rgb_window, load_rgb_with, save_mask_for};
use pslg_core::PixelBox;
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

/// `pslg segment`.
#[derive(Args)]
pub(crate) struct SegmentArgs {
    /// Input image (PNG, JPEG or TIFF; 8/16-bit; 1, 3 or 4 channels).
    #[arg(long)]
    pub(crate) image: PathBuf,
    /// Box prompt `x1,y1,x2,y2` in pixels, x2/y2 exclusive.
    #[arg(
        long = "box",
        value_name = "X1,Y1,X2,Y2",
        allow_hyphen_values = true,
        required_unless_present_any = ["box_map", "text"],
        conflicts_with = "box_map"
    )]
    pub(crate) bbox: Option<String>,
    /// Box prompt in the map coordinates of a georeferenced GeoTIFF input: `minx,miny,maxx,maxy` (any two
    /// opposite corners); converted through the geotransform to the smallest pixel box covering it.
    #[arg(long, value_name = "MINX,MINY,MAXX,MAXY", allow_hyphen_values = true)]
    pub(crate) box_map: Option<String>,
    /// Output mask, the image's size, 0/255: `.tif`/`.tiff` writes a single-band uint8 TIFF carrying the
    /// input's georeference when it has one (a GeoTIFF); any other name writes PNG.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Also write the mask as GeoJSON polygons (with holes) in the image's CRS (pixel coordinates when it has
    /// none, said in the file).
    #[arg(long)]
    pub(crate) geojson: Option<PathBuf>,
    /// Decode only the box's context (the crop MBO works on) instead of the whole scene: from a TIFF just the
    /// strips/tiles it touches, so memory follows the box, not the scene. `--out` and `--overlay` are then
    /// that window (a GeoTIFF `--out` keeps an exact georeference), `--geojson` stays in scene coordinates.
    /// A 16/32-bit stretch is computed over the window.
    #[arg(long, conflicts_with = "tile")]
    pub(crate) window: bool,
    /// Process the scene in `SIZE × SIZE` tiles (the model-input windows) read one at a time: memory follows
    /// the tile, not the scene (plus one byte per scene pixel for the output mask). A box whose context fits
    /// one tile is segmented there once; a box crossing tiles is segmented in each and merged along the tile
    /// cores. The stretch of 16/32-bit data is computed over the whole scene first (streamed), so tiles match.
    #[arg(long, value_name = "SIZE")]
    pub(crate) tile: Option<u32>,
    /// Overlap of neighbouring tiles in pixels (with `--tile`); each merged part has half of it as context
    /// beyond its seam.
    #[arg(long, value_name = "PIXELS", default_value_t = 64, requires = "tile")]
    pub(crate) overlap: u32,
    /// Ramer–Douglas–Peucker tolerance in pixels for the GeoJSON polygons (0 = exact pixel boundaries).
    #[arg(long, default_value_t = 0.0, requires = "geojson")]
    pub(crate) simplify: f64,
    #[command(flatten)]
    pub(crate) image_flags: ImageFlags,
    /// Also write the image with the mask, box and CFPG point drawn on it.
    #[arg(long)]
    pub(crate) overlay: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) stages: StageFlags,
    #[command(flatten)]
    pub(crate) sam: SamFlags,
    /// The referring sentence (instead of --box): LQVG grounds it to a box first.
    #[arg(
        long,
        requires_all = ["grounding", "tokenizer"],
        conflicts_with_all = ["bbox", "box_map", "window", "tile"]
    )]
    pub(crate) text: Option<String>,
    #[command(flatten)]
    pub(crate) grounding: GroundingFlags,
}

/// `segment --text`: the grounding box of the sentence as whole pixels, and the decoded image (segmented
/// next without decoding it again).
fn ground_text(
    g: &GroundingFlags,
    text: &str,
    image_path: &Path,
    options: &LoadOptions,
) -> Result<(pslg::cfpg::PixelBox, RgbImage)> {
    let t = Instant::now();
    let Some(grounder) = g.grounder()? else {
        bail!("--text needs --grounding CHECKPOINT and --tokenizer TOKENIZER.json");
    };
    let image = load_rgb_with(image_path, options)?;
    let out = grounder.predict(&image, text)?;
    let bbox = pslg::pixel_box(out.box_xyxy, image.width(), image.height());
    say!(
        "grounded {text:?}: box {:?} (pixels {},{},{},{}), score {:.3}, query {}, in {:.1} s",
        out.box_xyxy,
        bbox.x1,
        bbox.y1,
        bbox.x2,
        bbox.y2,
        out.score,
        out.query,
        t.elapsed().as_secs_f64()
    );
    Ok((bbox, image))
}

/// The pixel box of a `--box-map` prompt: the smallest box of whole pixels covering the map rectangle.
fn map_box(
    text: &str,
    georef: Option<&GeoReference>,
    image: &Path,
) -> Result<pslg::cfpg::PixelBox> {
    let Some(g) = georef else {
        bail!(
            "--box-map needs a georeferenced GeoTIFF input, and {} has no georeference; give --box in pixels",
            image.display()
        );
    };
    let v = parse_numbers(text, 4, "--box-map minx,miny,maxx,maxy:")?;
    Ok(g.transform.pixel_box_covering([v[0], v[1]], [v[2], v[3]])?)
}

/// Runs `pslg segment`.
pub(crate) fn run(a: SegmentArgs) -> Result<()> {
    let georef = if is_tiff_path(&a.image) {
        GeoReference::read(&a.image)
            .with_context(|| format!("reading the georeference of {}", a.image.display()))?
    } else {
        None
    };
    // `--text` decodes the image to ground the sentence; the segmentation reuses it.
    let mut decoded: Option<RgbImage> = None;
    let (bbox, prompt) = match (&a.bbox, &a.box_map, &a.text) {
        (Some(b), _, _) => (b.parse::<PixelBox>()?, format!("box {b}")),
        (None, Some(m), _) => (
            map_box(m, georef.as_ref(), &a.image)?,
            format!("map box {m}"),
        ),
        (None, None, Some(text)) => {
            let (bbox, image) =
                ground_text(&a.grounding, text, &a.image, &a.image_flags.options()?)?;
            decoded = Some(image);
            (bbox, format!("text {text:?}"))
        }
        (None, None, None) => bail!("give --box, --box-map or --text"),
    };
    let seg = a.stages.segmenter()?;
    let options = a.image_flags.options()?;
    // With --window only the box's context is decoded; everything written is that window.
    let (image, origin, bbox) = if a.window {
        let to_u32 = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        // The unclamped box's side bounds the clamped one's, so this window holds MBO's crop; +1 for rounding.
        let side = (bbox.x2 - bbox.x1).max(bbox.y2 - bbox.y1);
        let margin = i64::from(seg.context_margin(to_u32(side))) + 1;
        let (x0, y0) = ((bbox.x1 - margin).max(0), (bbox.y1 - margin).max(0));
        let (x1, y1) = ((bbox.x2 + margin).max(x0), (bbox.y2 + margin).max(y0));
        let want = pslg::cfpg::Roi {
            x: to_u32(x0),
            y: to_u32(y0),
            width: to_u32(x1 - x0),
            height: to_u32(y1 - y0),
        };
        let (img, win) = load_rgb_window(&a.image, want, &options)
            .with_context(|| format!("the context window of {prompt}"))?;
        say!(
            "window {},{} {}x{} decoded (box context, margin {margin} px)",
            win.x,
            win.y,
            win.width,
            win.height
        );
        let (wx, wy) = (i64::from(win.x), i64::from(win.y));
        let shifted =
            pslg::cfpg::PixelBox::new(bbox.x1 - wx, bbox.y1 - wy, bbox.x2 - wx, bbox.y2 - wy);
        (img, (win.x, win.y), shifted)
    } else if a.tile.is_some() {
        // Tiles are read one by one in segment_in_tiles; the overlay reads its own window.
        (RgbImage::new(0, 0), (0, 0), bbox)
    } else {
        let image = match decoded.take() {
            Some(image) => image,
            None => load_rgb_with(&a.image, &options)?,
        };
        (image, (0, 0), bbox)
    };
    let out_georef = georef.as_ref().map(|g| g.shifted(origin.0, origin.1));
    let mut sam = a.sam.segmenter(&seg)?;
    let t = Instant::now();
    let out = match (a.tile, sam.as_mut()) {
        (None, None) => seg.segment(&image, bbox).map_err(anyhow::Error::from),
        (None, Some(sam)) => sam
            .set_image(&image)
            .and_then(|()| {
                say!("image encoded by SAM in {:.1} s", t.elapsed().as_secs_f64());
                sam.segment(&image, bbox)
            })
            .map_err(anyhow::Error::from),
        (Some(size), sam) => segment_in_tiles(&a, &seg, sam, &options, size, bbox),
    }
    .with_context(|| format!("segmenting {prompt} in {}", a.image.display()))?;
    let elapsed = t.elapsed();
    if is_tiff_path(&a.out) && georef.is_none() {
        say!(
            "note: {} has no georeference; {} is a plain TIFF",
            a.image.display(),
            a.out.display()
        );
    }
    save_mask_for(&out.mask, &a.out, out_georef.as_ref())?;
    if let Some(path) = &a.geojson {
        if !(a.simplify >= 0.0 && a.simplify.is_finite()) {
            bail!(
                "--simplify {} must be a finite number of pixels ≥ 0",
                a.simplify
            );
        }
        // Polygons in the scene's pixel coordinates (a window's are offset by its origin).
        let (ox, oy) = (f64::from(origin.0), f64::from(origin.1));
        let polygons = mask_polygons(&out.mask, (a.simplify > 0.0).then_some(a.simplify))?
            .map_coords(|c| geo::Coord {
                x: c.x + ox,
                y: c.y + oy,
            });
        let object = ObjectFeature {
            id: a
                .image
                .file_stem()
                .map_or_else(|| "object".into(), |s| s.to_string_lossy().into_owned()),
            prompt: prompt.clone(),
            score: None,
            pixels: out.mask.pixels().filter(|p| p[0] != 0).count() as u64,
            polygons,
        };
        let fc = feature_collection(std::slice::from_ref(&object), georef.as_ref());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        pslg_core::atomic::write_atomic_bytes(path, fc.to_string().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        say!(
            "polygons written to {} ({} part(s), {})",
            path.display(),
            object.polygons.0.len(),
            match georef.as_ref().and_then(|g| g.epsg) {
                Some(code) => format!("EPSG:{code}"),
                None => "pixel coordinates".into(),
            }
        );
    }
    let area = out.mask.pixels().filter(|p| p[0] != 0).count();
    say!(
        "mask written to {} ({} foreground pixels, {:.1} ms)",
        a.out.display(),
        area,
        ms(elapsed)
    );
    if let Some(p) = &out.point {
        match &p.source {
            pslg::cfpg::PointSource::Region { region, .. } => {
                say!(
                    "CFPG point ({:.1}, {:.1}) in image pixels, region convexity {:.3}, area {} px",
                    p.x + f64::from(origin.0),
                    p.y + f64::from(origin.1),
                    region.convexity,
                    region.area
                )
            }
            pslg::cfpg::PointSource::BoxCentre(why) => say!("CFPG point: box centre ({why})"),
        }
    }
    if let Some(choice) = &out.choice {
        say!("mask: {}", choice.reason());
    }
    if let Some(path) = &a.overlay {
        let point = out.point.as_ref().map(|p| (p.x, p.y));
        let pic = if a.tile.is_some() {
            // The box's context window of the scene, read on its own.
            let margin = seg.context_margin(out.roi.width.max(out.roi.height));
            let want = pslg::cfpg::Roi {
                x: out.roi.x.saturating_sub(margin),
                y: out.roi.y.saturating_sub(margin),
                width: out.roi.width + 2 * margin,
                height: out.roi.height + 2 * margin,
            };
            let (view, win) = load_rgb_window(&a.image, want, &options)?;
            let crop = image::imageops::crop_imm(&out.mask, win.x, win.y, win.width, win.height)
                .to_image();
            let roi = pslg::cfpg::Roi {
                x: out.roi.x - win.x,
                y: out.roi.y - win.y,
                ..out.roi
            };
            let point = point.map(|(x, y)| (x - f64::from(win.x), y - f64::from(win.y)));
            pslg::overlay::draw_overlay_with_legend(&view, &crop, roi, point, Some(&prompt))
        } else {
            pslg::overlay::draw_overlay_with_legend(
                &image,
                &out.mask,
                out.roi,
                point,
                Some(&prompt),
            )
        };
        pslg::io::save_rgb(&pic, path)?;
        say!("overlay written to {}", path.display());
    }
    Ok(())
}

/// `--tile`: the box segmented on a tile grid over the scene, tiles read one at a time with a scene-wide
/// stretch. Returns the merged scene mask with the box and the CFPG point of the part holding the box centre
/// in scene pixels.
fn segment_in_tiles(
    a: &SegmentArgs,
    seg: &BoxSegmenter,
    mut sam: Option<&mut pslg::SamSegmenter<CpuBackend>>,
    options: &LoadOptions,
    size: u32,
    bbox: pslg::cfpg::PixelBox,
) -> Result<pslg::BoxMask> {
    use pslg::tile::{TileGrid, segment_tiled_with};
    let (w, h) = pslg::io::image_dimensions(&a.image)?;
    let grid = TileGrid::new(w, h, size, a.overlap)?;
    let fixed = LoadOptions {
        stretch: pslg::io::scene_stretch(&a.image, options)?,
        ..options.clone()
    };
    let tiled = segment_tiled_with(
        &grid,
        bbox,
        |side| seg.context_margin(side),
        |roi| {
            load_rgb_window(&a.image, roi, &fixed)
                .map(|(img, _)| img)
                .map_err(Into::into)
        },
        |tile, b| match sam.as_deref_mut() {
            // SAM encodes each tile it is used in.
            Some(s) => s.set_image(tile).and_then(|()| s.segment(tile, b)),
            None => seg.segment(tile, b),
        },
    )?;
    let (cols, rows) = grid.dims();
    say!(
        "{}x{} scene in {cols}x{rows} tiles of {size} px (overlap {}); the box was handled in {} tile(s): {}",
        w,
        h,
        a.overlap,
        tiled.parts.len(),
        tiled
            .parts
            .iter()
            .map(|(t, _)| format!("({},{})", t.col, t.row))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let roi = pslg::cfpg::clamp_box(bbox, w, h)?;
    let (cx, cy) = (roi.x + roi.width / 2, roi.y + roi.height / 2);
    let inside = |r: &pslg::cfpg::Roi, x: u32, y: u32| {
        x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height
    };
    let collapsed = tiled.parts.iter().any(|(_, o)| o.collapsed);
    let home = tiled
        .parts
        .iter()
        .find(|(t, _)| tiled.parts.len() == 1 || inside(&t.core, cx, cy));
    let point = home.and_then(|(t, o)| {
        o.point.clone().map(|mut p| {
            p.x += f64::from(t.roi.x);
            p.y += f64::from(t.roi.y);
            p
        })
    });
    let mut timings = pslg::StageTimings::default();
    for (_, o) in &tiled.parts {
        timings.cfpg += o.timings.cfpg;
        timings.mbo += o.timings.mbo;
    }
    Ok(pslg::BoxMask {
        sam: None,
        mask: tiled.mask,
        roi,
        point,
        refinement: None,
        collapsed,
        // The home tile's choice (the tile holding the box centre).
        choice: home.and_then(|(_, o)| o.choice.clone()),
        timings,
    })
}
