//! GeoTIFF and GeoJSON output of `pslg segment`, checked with GDAL's own tools (`gdalinfo`, `ogrinfo`, from
//! Debian's gdal-bin) and by rasterising the polygons back onto the mask.
//!
//! Without GDAL the GDAL checks skip with a message, unless `PSLG_REQUIRE_GDAL=1` (CI sets it), which makes
//! them fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use geo::{Coord, MapCoords, MultiPolygon};
use pslg::geo::{GeoReference, rasterize};

const SAMPLE: &str = concat!(
    concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
    "/examples/data/sample_geotiff.tif"
);
const BOX: &str = "477,358,528,397";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-geo-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pslg(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pslg"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a GDAL tool; `None` (with a message) when GDAL is not installed and not required.
fn gdal(tool: &str, args: &[&std::ffi::OsStr]) -> Option<String> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some(ok(&out)),
        Err(e) => {
            assert!(
                std::env::var("PSLG_REQUIRE_GDAL").as_deref() != Ok("1"),
                "{tool} not runnable ({e}) but PSLG_REQUIRE_GDAL=1: apt-get install gdal-bin"
            );
            eprintln!("skipping the {tool} check: {e} (apt-get install gdal-bin)");
            None
        }
    }
}

fn gdalinfo(path: &Path) -> Option<serde_json::Value> {
    gdal("gdalinfo", &["-json".as_ref(), path.as_os_str()])
        .map(|s| serde_json::from_str(&s).unwrap())
}

fn segment_to(d: &Path, prompt: [&str; 2]) -> (PathBuf, PathBuf, String) {
    let (mask, json) = (d.join("mask.tif"), d.join("objects.geojson"));
    let stdout = ok(&pslg(&[
        "segment".as_ref(),
        "--image".as_ref(),
        SAMPLE.as_ref(),
        prompt[0].as_ref(),
        prompt[1].as_ref(),
        "--out".as_ref(),
        mask.as_os_str(),
        "--geojson".as_ref(),
        json.as_os_str(),
    ]));
    (mask, json, stdout)
}

#[test]
fn geotiff_mask_keeps_the_georeference_and_polygons_rasterise_back() {
    let d = tmp("geotiff");
    let (mask_path, json_path, stdout) = segment_to(&d, ["--box", BOX]);
    assert!(stdout.contains("EPSG:32616"), "{stdout}");
    let mask = image::open(&mask_path).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (900, 900));

    // Our own reader: the georeference is the input's.
    let src = GeoReference::read(Path::new(SAMPLE)).unwrap().unwrap();
    let out = GeoReference::read(&mask_path).unwrap().unwrap();
    assert_eq!(src.transform, out.transform);
    assert_eq!(out.epsg, Some(32616));
    assert_eq!(src.transform.0, [733601.0, 0.5, 0.0, 3725139.0, 0.0, -0.5]);

    // GDAL's reader: same geotransform and CRS, one Byte band.
    if let (Some(a), Some(b)) = (gdalinfo(Path::new(SAMPLE)), gdalinfo(&mask_path)) {
        assert_eq!(a["geoTransform"], b["geoTransform"]);
        assert_eq!(a["coordinateSystem"]["wkt"], b["coordinateSystem"]["wkt"]);
        assert_eq!(b["size"], serde_json::json!([900, 900]));
        assert_eq!(b["bands"].as_array().unwrap().len(), 1);
        assert_eq!(b["bands"][0]["type"], "Byte");
    }
    if let Some(info) = gdal(
        "ogrinfo",
        &[
            "-ro".as_ref(),
            "-al".as_ref(),
            "-so".as_ref(),
            json_path.as_os_str(),
        ],
    ) {
        assert!(info.contains("Feature Count: 1"), "{info}");
        assert!(info.contains("32616"), "{info}");
    }

    // The polygons, taken back to pixels and rasterised, give the mask.
    let gj: geojson::GeoJson = std::fs::read_to_string(&json_path)
        .unwrap()
        .parse()
        .unwrap();
    let geojson::GeoJson::FeatureCollection(fc) = gj else {
        panic!("not a FeatureCollection")
    };
    assert_eq!(fc.features.len(), 1);
    let props = fc.features[0].properties.as_ref().unwrap();
    let pixels = mask.pixels().filter(|p| p[0] != 0).count() as f64;
    assert_eq!(props["pixels"].as_f64().unwrap(), pixels);
    assert!((props["area"].as_f64().unwrap() - pixels * 0.25).abs() < 1e-9);
    let map: MultiPolygon<f64> = fc.features[0].geometry.clone().unwrap().try_into().unwrap();
    let px = map.map_coords(|c| {
        let (x, y) = src.transform.map_to_pixel(c.x, c.y).unwrap();
        Coord { x, y }
    });
    let back = rasterize(&px, 900, 900);
    let (mut i, mut u) = (0u64, 0u64);
    for (a, b) in back.pixels().zip(mask.pixels()) {
        i += u64::from(a[0] != 0 && b[0] != 0);
        u += u64::from(a[0] != 0 || b[0] != 0);
    }
    assert!(u > 0 && i as f64 / u as f64 >= 0.99, "IoU {i}/{u}");
}

#[test]
fn map_box_prompt_equals_the_pixel_box() {
    let d = tmp("mapbox");
    let g = GeoReference::read(Path::new(SAMPLE)).unwrap().unwrap();
    let (x0, y0) = g.transform.pixel_to_map(477.0, 397.0); // lower-left corner: min x, min y
    let (x1, y1) = g.transform.pixel_to_map(528.0, 358.0);
    let (pixel_mask, _, _) = segment_to(&d.join("px"), ["--box", BOX]);
    let (map_mask, _, _) = segment_to(
        &d.join("map"),
        ["--box-map", &format!("{x0},{y0},{x1},{y1}")],
    );
    let a = image::open(pixel_mask).unwrap().to_luma8();
    let b = image::open(map_mask).unwrap().to_luma8();
    assert_eq!(a, b);
}

#[test]
fn map_box_without_georeference_and_bad_map_boxes_are_errors() {
    let d = tmp("bad");
    let png = d.join("plain.png");
    image::RgbImage::from_pixel(20, 20, image::Rgb([9, 9, 9]))
        .save(&png)
        .unwrap();
    let out = pslg(&[
        "segment".as_ref(),
        "--image".as_ref(),
        png.as_os_str(),
        "--box-map".as_ref(),
        "1,2,3,4".as_ref(),
        "--out".as_ref(),
        d.join("m.png").as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no georeference"));
    let out = pslg(&[
        "segment".as_ref(),
        "--image".as_ref(),
        SAMPLE.as_ref(),
        "--box-map".as_ref(),
        "1,2,x,4".as_ref(),
        "--out".as_ref(),
        d.join("m.tif").as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("minx,miny,maxx,maxy"));
    // A plain (non-georeferenced) input written as .tif is a plain TIFF, and GeoJSON says pixel coordinates.
    let out = ok(&pslg(&[
        "segment".as_ref(),
        "--image".as_ref(),
        png.as_os_str(),
        "--box".as_ref(),
        "2,2,18,18".as_ref(),
        "--out".as_ref(),
        d.join("m.tif").as_os_str(),
        "--geojson".as_ref(),
        d.join("m.geojson").as_os_str(),
    ]));
    assert!(
        out.contains("plain TIFF") && out.contains("pixel coordinates"),
        "{out}"
    );
    assert_eq!(GeoReference::read(&d.join("m.tif")).unwrap(), None);
    assert!(
        std::fs::read_to_string(d.join("m.geojson"))
            .unwrap()
            .contains("pslg:coordinates")
    );
}

/// An 8-bit RGB GeoTIFF in strips of 3 rows: a bright disc on textured ground, 0.5 m pixels at (500000, 4000000).
fn striped_geotiff(path: &Path) {
    use tiff::encoder::{TiffEncoder, colortype::RGB8};
    use tiff::tags::Tag;
    let (w, h) = (120u32, 90u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let d = (x as f64 - 70.0).powi(2) + (y as f64 - 40.0).powi(2);
        let n = ((x * 7 + y * 3) % 13) as u8;
        if d < 150.0 {
            image::Rgb([215, 205 + n, 90])
        } else {
            image::Rgb([50 + n, 90, 60 + n])
        }
    });
    let file = std::fs::File::create(path).unwrap();
    let mut enc = TiffEncoder::new(std::io::BufWriter::new(file)).unwrap();
    let mut im = enc.new_image::<RGB8>(w, h).unwrap();
    im.rows_per_strip(3).unwrap();
    let d = im.encoder();
    d.write_tag(Tag::ModelPixelScaleTag, &[0.5f64, 0.5, 0.0][..])
        .unwrap();
    d.write_tag(
        Tag::ModelTiepointTag,
        &[0.0f64, 0.0, 0.0, 500000.0, 4000000.0, 0.0][..],
    )
    .unwrap();
    d.write_tag(
        Tag::GeoKeyDirectoryTag,
        &[
            1u16, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633,
        ][..],
    )
    .unwrap();
    im.write_data(img.as_raw()).unwrap();
}

#[test]
fn window_mode_decodes_only_the_context_and_keeps_georeference() {
    let d = tmp("window");
    let src = d.join("scene.tif");
    striped_geotiff(&src);
    let run = |window: bool, name: &str| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "segment".into(),
            "--image".into(),
            src.clone().into(),
            "--box".into(),
            "56,26,85,55".into(),
            "--out".into(),
            d.join(format!("{name}.tif")).into(),
            "--geojson".into(),
            d.join(format!("{name}.geojson")).into(),
        ];
        if window {
            args.push("--window".into());
        }
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        ok(&pslg(&refs))
    };
    run(false, "full");
    let stdout = run(true, "win");
    // Box side 29 → margin max(16, 14) + 1 = 17: window x 39..102, y 9..72.
    assert!(stdout.contains("window 39,9 63x63 decoded"), "{stdout}");
    let full = image::open(d.join("full.tif")).unwrap().to_luma8();
    let win = image::open(d.join("win.tif")).unwrap().to_luma8();
    assert_eq!(win.dimensions(), (63, 63));
    // 8-bit input: the window's mask is exactly the full mask's crop, and nothing lies outside it.
    let crop = image::imageops::crop_imm(&full, 39, 9, 63, 63).to_image();
    assert_eq!(win, crop);
    assert!(win.pixels().any(|p| p[0] != 0));
    assert_eq!(
        full.pixels().filter(|p| p[0] != 0).count(),
        win.pixels().filter(|p| p[0] != 0).count()
    );
    // The window GeoTIFF sits where it came from: origin moved by (39, 9) pixels of 0.5 m.
    let g = GeoReference::read(&d.join("win.tif")).unwrap().unwrap();
    assert_eq!(g.transform.0, [500019.5, 0.5, 0.0, 3999995.5, 0.0, -0.5]);
    if let Some(info) = gdalinfo(&d.join("win.tif")) {
        assert_eq!(
            info["geoTransform"],
            serde_json::json!([500019.5, 0.5, 0.0, 3999995.5, 0.0, -0.5])
        );
    }
    // GeoJSON polygons are in scene coordinates either way.
    let a = std::fs::read_to_string(d.join("full.geojson")).unwrap();
    let b = std::fs::read_to_string(d.join("win.geojson")).unwrap();
    let geom = |t: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(t).unwrap()["features"][0]["geometry"].clone()
    };
    assert_eq!(geom(&a), geom(&b));
}

/// A textured 600×256 scene with one elliptic object centred on x = 224, the seam between the first two
/// 256-px tiles of a 64-px-overlap grid; returns the image and the object's true mask.
fn seam_scene() -> (image::RgbImage, image::GrayImage) {
    let (w, h) = (600, 256);
    let mut rng = 99u32;
    let mut noise = move || {
        rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((rng >> 24) % 41) as i32 - 20
    };
    let mut truth = image::GrayImage::new(w, h);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = ((x as f64 - 224.5) / 60.0, (y as f64 - 128.5) / 40.0);
        let base: [i32; 3] = if dx * dx + dy * dy <= 1.0 {
            truth.put_pixel(x, y, image::Luma([255]));
            [200, 70, 60]
        } else {
            [70, 120, 80]
        };
        image::Rgb(base.map(|c| (c + noise()).clamp(0, 255) as u8))
    });
    (img, truth)
}

fn iou(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    let fg = |v: &u8| *v != 0;
    pslg::metrics::mask_stats_by(a.as_raw(), b.as_raw(), fg, fg)
        .expect("same size")
        .iou()
}

/// `--tile` on a block-tiled (64×64 blocks), 16-bit GeoTIFF made by `gdal_translate`, with the object
/// crossing a tile seam: both tiles are read on their own with one scene-wide stretch, the parts merge without
/// a seam, and the mask carries the scene's georeference.
#[test]
fn tiles_merge_an_object_across_a_seam_in_a_block_tiled_16_bit_geotiff() {
    let d = tmp("tiles");
    let (img, truth) = seam_scene();
    let png = d.join("scene.png");
    img.save(&png).unwrap();
    let src = d.join("scene.tif");
    let made = gdal(
        "gdal_translate",
        &[
            "-q",
            "-ot",
            "UInt16",
            "-scale",
            "0",
            "255",
            "1000",
            "5000",
            "-a_srs",
            "EPSG:32633",
            "-a_ullr",
            "500000",
            "4000000",
            "500300",
            "3999872",
            "-co",
            "TILED=YES",
            "-co",
            "BLOCKXSIZE=64",
            "-co",
            "BLOCKYSIZE=64",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([png.as_os_str(), src.as_os_str()])
        .collect::<Vec<_>>(),
    );
    if made.is_none() {
        return;
    }
    let run = |tile: bool, name: &str| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "segment".into(),
            "--image".into(),
            src.clone().into(),
            "--box".into(),
            "160,86,290,172".into(),
            "--out".into(),
            d.join(format!("{name}.tif")).into(),
            "--geojson".into(),
            d.join(format!("{name}.geojson")).into(),
        ];
        if tile {
            args.extend(["--tile", "256", "--overlap", "64"].map(Into::into));
        }
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        ok(&pslg(&refs))
    };
    run(false, "whole");
    let stdout = run(true, "tiled");
    assert!(
        stdout.contains("600x256 scene in 3x1 tiles of 256 px (overlap 64); the box was handled in 2 tile(s): (0,0) (1,0)"),
        "{stdout}"
    );
    let whole = image::open(d.join("whole.tif")).unwrap().to_luma8();
    let tiled = image::open(d.join("tiled.tif")).unwrap().to_luma8();
    assert_eq!(tiled.dimensions(), (600, 256));
    let (to_truth, to_whole) = (iou(&tiled, &truth), iou(&tiled, &whole));
    assert!(to_truth > 0.95, "IoU with the truth {to_truth}");
    assert!(to_whole > 0.97, "IoU with the untiled mask {to_whole}");
    // No seam: around the core boundary (x = 224) each column holds as many object pixels as the truth.
    let column =
        |m: &image::GrayImage, x: u32| (0..256).filter(|&y| m.get_pixel(x, y)[0] != 0).count();
    for x in 218..231 {
        let (got, want) = (column(&tiled, x), column(&truth, x));
        assert!(got.abs_diff(want) <= 3, "column {x}: {got} vs {want}");
    }
    let (a, b) = (
        gdalinfo(&src).unwrap(),
        gdalinfo(&d.join("tiled.tif")).unwrap(),
    );
    assert_eq!(a["geoTransform"], b["geoTransform"]);
    assert_eq!(a["coordinateSystem"]["wkt"], b["coordinateSystem"]["wkt"]);
    assert_eq!(b["bands"][0]["type"], "Byte");
    let fc = std::fs::read_to_string(d.join("tiled.geojson")).unwrap();
    assert!(fc.contains("32633"), "{fc}");
}
