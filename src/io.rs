//! Image and mask files: decoding PNG / JPEG / TIFF into 8-bit RGB, writing 0/255 masks.

use crate::PslgError;
use image::{DynamicImage, GrayImage, ImageReader, Rgb, RgbImage};
use pslg_cfpg::Roi;
use std::path::Path;

/// How wide samples (16/32-bit, float) become the 8-bit values the models see. 8-bit images are never
/// stretched.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Stretch {
    /// One linear map for all chosen bands, from their joint minimum and maximum to 0–255 (keeps the bands'
    /// relative brightness; a flat image becomes 0). The default.
    #[default]
    MinMax,
    /// Each band on its own, from its `low`-th to its `high`-th percentile (0–100) to 0–255, values outside
    /// clipped: GIS display-style, robust to a few very bright or dark pixels (e.g. `2, 98`).
    Percentile {
        /// Lower percentile, in [0, 100).
        low: f64,
        /// Upper percentile, in (low, 100].
        high: f64,
    },
    /// Fixed levels per chosen band (R, G, B order; a gray image uses index 0): `low[k]` maps to 0 and
    /// `high[k]` to 255. [`scene_stretch`] resolves the other variants into this one over a whole scene, so
    /// that windows and tiles read separately share one mapping (no seams between tiles).
    Fixed {
        /// Value mapped to 0, per chosen band.
        low: [f32; 3],
        /// Value mapped to 255, per chosen band.
        high: [f32; 3],
    },
}

/// Options of [`load_rgb_with`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadOptions {
    /// 1-based band numbers to use, in R, G, B order: three bands, or one (shown as gray). `None`: bands 1–3
    /// of an image with at least three, band 1 of a single-band image.
    pub bands: Option<Vec<usize>>,
    /// Conversion of wide samples to 8 bits.
    pub stretch: Stretch,
}

/// Decodes an image file into 8-bit RGB for the models.
///
/// Accepts PNG, JPEG and TIFF (8- and 16-bit, 1–4 channels; the format is read from the file's content, not its
/// extension). Gray is replicated to RGB, alpha is dropped. 16-bit and float images are scaled to 0–255 by
/// the image's **own** minimum and maximum over its colour channels (a flat image becomes 0), which suits
/// satellite rasters whose values use a small part of the 16-bit range.
///
/// # Errors
/// [`PslgError::ReadImage`] when the file cannot be opened or decoded, [`PslgError::EmptyImage`] for a 0-pixel
/// image.
pub fn load_rgb(path: &Path) -> Result<RgbImage, PslgError> {
    load_rgb_with(path, &LoadOptions::default())
}

/// [`load_rgb`] with band selection and a choice of stretch ([`LoadOptions`]).
///
/// With default options this is exactly [`load_rgb`]. Otherwise TIFFs are read with the `tiff` crate, which
/// also takes multi-band rasters (any number of bands, 8–64-bit integer or float samples, pixel-interleaved)
/// that the `image` crate refuses; other formats go through `image` and offer their RGB channels as bands
/// 1–3.
///
/// # Errors
/// As [`load_rgb`], plus [`PslgError::Bands`] for a band number the image does not have, a band list that is
/// not one or three long, or a percentile range outside 0 ≤ low < high ≤ 100.
pub fn load_rgb_with(path: &Path, options: &LoadOptions) -> Result<RgbImage, PslgError> {
    let bands_err = |reason: String| PslgError::Bands {
        path: path.to_path_buf(),
        reason,
    };
    if let Stretch::Percentile { low, high } = options.stretch
        && !(0.0 <= low && low < high && high <= 100.0)
    {
        return Err(bands_err(format!(
            "percentile range {low},{high} must satisfy 0 <= low < high <= 100"
        )));
    }
    let rgb = if *options == LoadOptions::default() {
        to_rgb8(decode(path)?)
    } else {
        let raster = if crate::io::is_tiff_path(path) || is_tiff_content(path) {
            Raster::read_tiff(path)?
        } else {
            Raster::from_image(decode(path)?)
        };
        raster.to_rgb8(options).map_err(bands_err)?
    };
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(PslgError::EmptyImage {
            path: path.to_path_buf(),
        });
    }
    Ok(rgb)
}

/// Whether the file starts with a TIFF byte-order mark.
fn is_tiff_content(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && (magic == *b"II*\0" || magic == *b"MM\0*")
}

/// A decoded raster as bands of `f32` samples, before conversion to 8-bit RGB.
struct Raster {
    width: u32,
    height: u32,
    /// One plane per band, row-major.
    bands: Vec<Vec<f32>>,
    /// Whether the samples are 8-bit (then used as they are, no stretch).
    eight_bit: bool,
}

impl Raster {
    fn from_image(image: DynamicImage) -> Self {
        let (width, height) = (image.width(), image.height());
        let eight_bit = matches!(
            image,
            DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_)
        );
        let gray = matches!(
            image,
            DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
        );
        let scale = if eight_bit { 255.0 } else { 1.0 };
        let f = image.to_rgb32f();
        let n = if gray { 1 } else { 3 };
        let bands = (0..n)
            .map(|c| f.pixels().map(|p| p[c] * scale).collect())
            .collect();
        Self {
            width,
            height,
            bands,
            eight_bit,
        }
    }

    fn read_tiff(path: &Path) -> Result<Self, PslgError> {
        Self::read_tiff_window(path, None).map(|(r, _)| r)
    }

    /// Reads a TIFF, or only `window` of it (clamped to the image; returned) by decoding just the strips or
    /// tiles the window touches.
    fn read_tiff_window(path: &Path, window: Option<Roi>) -> Result<(Self, Roi), PslgError> {
        use tiff::decoder::{ChunkType, Decoder};
        use tiff::tags::Tag;
        let err = |e: String| PslgError::ReadImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(std::io::Error::other(e)),
        };
        let terr = |e: tiff::TiffError| err(e.to_string());
        let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut dec = Decoder::new(std::io::BufReader::new(file)).map_err(terr)?;
        let (width, height) = dec.dimensions().map_err(terr)?;
        let samples = match dec.colortype().map_err(terr)? {
            tiff::ColorType::Gray(_) => 1,
            tiff::ColorType::GrayA(_) => 2,
            tiff::ColorType::RGB(_) | tiff::ColorType::YCbCr(_) | tiff::ColorType::Lab(_) => 3,
            tiff::ColorType::RGBA(_) | tiff::ColorType::CMYK(_) => 4,
            tiff::ColorType::CMYKA(_) => 5,
            tiff::ColorType::Multiband { num_samples, .. } => usize::from(num_samples),
            other => return Err(err(format!("unsupported TIFF colour type {other:?}"))),
        };
        let planar = || {
            err(format!(
                "sample count does not match {width}x{height} pixels of {samples} bands; band-sequential \
                 (planar) TIFFs are not read: convert with gdal_translate -co INTERLEAVE=PIXEL"
            ))
        };
        let full = Roi {
            x: 0,
            y: 0,
            width,
            height,
        };
        let Some(win) = window else {
            let (values, eight_bit) = samples_f32(dec.read_image().map_err(terr)?);
            if values.len() != width as usize * height as usize * samples {
                return Err(planar());
            }
            let bands = (0..samples)
                .map(|b| values.iter().skip(b).step_by(samples).copied().collect())
                .collect();
            return Ok((
                Self {
                    width,
                    height,
                    bands,
                    eight_bit,
                },
                full,
            ));
        };
        let clamped = clamp_window(win, width, height, path)?;
        let (x0, y0, ww, wh) = (clamped.x, clamped.y, clamped.width, clamped.height);
        let (x1, y1) = (x0 + ww, y0 + wh);
        let tag_u32 = |dec: &mut Decoder<_>, tag| dec.find_tag_unsigned::<u32>(tag).map_err(terr);
        let (tiled, count) = match dec.get_chunk_type() {
            ChunkType::Tile => (true, dec.tile_count().map_err(terr)?),
            ChunkType::Strip => (false, dec.strip_count().map_err(terr)?),
        };
        let (cw, ch) = if tiled {
            (
                tag_u32(&mut dec, Tag::TileWidth)?.unwrap_or(0),
                tag_u32(&mut dec, Tag::TileLength)?.unwrap_or(0),
            )
        } else {
            let rows = tag_u32(&mut dec, Tag::RowsPerStrip)?.unwrap_or(height);
            (width, rows.min(height))
        };
        if cw == 0 || ch == 0 {
            return Err(err(format!("chunk size {cw}x{ch} is invalid")));
        }
        let across = width.div_ceil(cw);
        let mut bands = vec![vec![0.0f32; ww as usize * wh as usize]; samples];
        let mut eight_bit = true;
        for cy in y0 / ch..=(y1 - 1) / ch {
            for cx in x0 / cw..=(x1 - 1) / cw {
                let idx = cy * across + cx;
                if idx >= count {
                    return Err(err(format!("chunk {idx} is missing ({count} chunks)")));
                }
                let (dw, dh) = dec.chunk_data_dimensions(idx);
                let (values, eb) = samples_f32(dec.read_chunk(idx).map_err(terr)?);
                eight_bit &= eb;
                if values.len() != dw as usize * dh as usize * samples {
                    return Err(planar());
                }
                for r in 0..dh {
                    let gy = cy * ch + r;
                    if gy < y0 || gy >= y1 {
                        continue;
                    }
                    for c in 0..dw {
                        let gx = cx * cw + c;
                        if gx < x0 || gx >= x1 {
                            continue;
                        }
                        let src = (r as usize * dw as usize + c as usize) * samples;
                        let dst = (gy - y0) as usize * ww as usize + (gx - x0) as usize;
                        for (b, band) in bands.iter_mut().enumerate() {
                            band[dst] = values[src + b];
                        }
                    }
                }
            }
        }
        Ok((
            Self {
                width: ww,
                height: wh,
                bands,
                eight_bit,
            },
            clamped,
        ))
    }

    /// The 1-based bands `options` picks, checked against this raster.
    fn chosen_bands(&self, options: &LoadOptions) -> Result<Vec<usize>, String> {
        let n = self.bands.len();
        let chosen: Vec<usize> = match &options.bands {
            Some(b) => b.clone(),
            None if n >= 3 => vec![1, 2, 3],
            None => vec![1],
        };
        if chosen.len() != 1 && chosen.len() != 3 {
            return Err(format!(
                "{} bands chosen ({chosen:?}); give one (gray) or three (R,G,B)",
                chosen.len()
            ));
        }
        if let Some(&bad) = chosen.iter().find(|&&b| b == 0 || b > n) {
            return Err(format!(
                "band {bad} does not exist: the image has bands 1..={n}"
            ));
        }
        Ok(chosen)
    }

    /// Selects the bands and stretches them to 8 bits.
    fn to_rgb8(&self, options: &LoadOptions) -> Result<RgbImage, String> {
        let chosen = self.chosen_bands(options)?;
        let planes: Vec<&[f32]> = chosen.iter().map(|&b| &self.bands[b - 1][..]).collect();
        // Per plane: 8-bit value = (v − lo) · scale, clamped.
        let maps: Vec<(f32, f32)> = if self.eight_bit {
            vec![(0.0, 1.0); planes.len()]
        } else {
            match options.stretch {
                Stretch::MinMax => {
                    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                    for v in planes
                        .iter()
                        .flat_map(|p| p.iter())
                        .filter(|v| v.is_finite())
                    {
                        lo = lo.min(*v);
                        hi = hi.max(*v);
                    }
                    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
                    vec![(lo, scale); planes.len()]
                }
                Stretch::Percentile { low, high } => planes
                    .iter()
                    .map(|p| {
                        let (lo, hi) = percentiles(p, low, high);
                        (lo, if hi > lo { 255.0 / (hi - lo) } else { 0.0 })
                    })
                    .collect(),
                Stretch::Fixed { low, high } => (0..planes.len())
                    .map(|k| {
                        let (lo, hi) = (low[k], high[k]);
                        (lo, if hi > lo { 255.0 / (hi - lo) } else { 0.0 })
                    })
                    .collect(),
            }
        };
        let s = |v: f32, (lo, scale): (f32, f32)| {
            if v.is_finite() {
                ((v - lo) * scale).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        };
        let pick = |k: usize| if planes.len() == 3 { k } else { 0 };
        Ok(RgbImage::from_fn(self.width, self.height, |x, y| {
            let i = y as usize * self.width as usize + x as usize;
            Rgb([0, 1, 2].map(|k| s(planes[pick(k)][i], maps[pick(k)])))
        }))
    }
}

/// A decoded TIFF buffer as `f32` samples, and whether they were 8-bit.
fn samples_f32(data: tiff::decoder::DecodingResult) -> (Vec<f32>, bool) {
    use tiff::decoder::DecodingResult as D;
    let eight_bit = matches!(data, D::U8(_));
    let v = match data {
        D::U8(v) => v.into_iter().map(f32::from).collect(),
        D::U16(v) => v.into_iter().map(f32::from).collect(),
        D::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        D::U64(v) => v.into_iter().map(|x| x as f32).collect(),
        D::F16(v) => v.into_iter().map(|x| x.to_f32()).collect(),
        D::F32(v) => v,
        D::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        D::I8(v) => v.into_iter().map(f32::from).collect(),
        D::I16(v) => v.into_iter().map(f32::from).collect(),
        D::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        D::I64(v) => v.into_iter().map(|x| x as f32).collect(),
    };
    (v, eight_bit)
}

/// Reads only `window` of an image (clamped to it; the clamped window is returned with the pixels), with the
/// rules of [`load_rgb_with`]. From a TIFF only the strips or tiles the window touches are decoded, so memory
/// is bounded by the window plus those chunks, not by the scene; the stretch ([`Stretch`]) is then computed
/// over the window. Other formats are decoded whole and cropped.
///
/// # Errors
/// As [`load_rgb_with`], plus [`PslgError::Bands`] for a window outside the image.
pub fn load_rgb_window(
    path: &Path,
    window: Roi,
    options: &LoadOptions,
) -> Result<(RgbImage, Roi), PslgError> {
    if !(is_tiff_path(path) || is_tiff_content(path)) {
        let full = load_rgb_with(path, options)?;
        let win = clamp_window(window, full.width(), full.height(), path)?;
        let crop = image::imageops::crop_imm(&full, win.x, win.y, win.width, win.height).to_image();
        return Ok((crop, win));
    }
    let (raster, win) = Raster::read_tiff_window(path, Some(window))?;
    let rgb = raster.to_rgb8(options).map_err(|reason| PslgError::Bands {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok((rgb, win))
}

/// Resolves `options.stretch` over the whole scene into [`Stretch::Fixed`] levels, so that windows and tiles
/// read one by one ([`load_rgb_window`]) share the mapping a whole-scene [`load_rgb_with`] would use: the same
/// minimum/maximum, and the same percentiles (taken on the same regular sample of pixels). A TIFF is streamed in
/// strips of rows (memory: one strip of at most ~16 M samples plus ~1 M samples per chosen band), other formats
/// are decoded whole. For 8-bit images and an already fixed stretch the options' stretch is returned as it is.
///
/// # Errors
/// As [`load_rgb_with`].
pub fn scene_stretch(path: &Path, options: &LoadOptions) -> Result<Stretch, PslgError> {
    scene_stretch_in_strips(path, options, None)
}

/// [`scene_stretch`] reading a TIFF in strips of `rows` rows (default: ~16 MiB of `f32` per band).
fn scene_stretch_in_strips(
    path: &Path,
    options: &LoadOptions,
    rows: Option<u32>,
) -> Result<Stretch, PslgError> {
    if matches!(options.stretch, Stretch::Fixed { .. }) {
        return Ok(options.stretch);
    }
    let bands_err = |reason: String| PslgError::Bands {
        path: path.to_path_buf(),
        reason,
    };
    if !(is_tiff_path(path) || is_tiff_content(path)) {
        return scene_stretch_of(&Raster::from_image(decode(path)?), options).map_err(bands_err);
    }
    let (width, height) = {
        let file = std::fs::File::open(path).map_err(|e| PslgError::ReadImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(e),
        })?;
        tiff::decoder::Decoder::new(std::io::BufReader::new(file))
            .and_then(|mut d| d.dimensions())
            .map_err(|e| PslgError::ReadImage {
                path: path.to_path_buf(),
                source: image::ImageError::IoError(std::io::Error::other(e.to_string())),
            })?
    };
    // Strips of whole rows; the pixel sample is every `stride`-th pixel of the scene in row-major order,
    // exactly the sample `percentiles` takes on a whole-scene plane.
    let total = width as usize * height as usize;
    let stride = total.div_ceil(1 << 20).max(1);
    let rows = rows.unwrap_or(
        ((16usize << 20) / (width.max(1) as usize * 4)).clamp(1, height.max(1) as usize) as u32,
    );
    let mut samples: Vec<Vec<f32>> = Vec::new();
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut eight_bit = true;
    let mut visit = |raster: &Raster, first_pixel: usize| -> Result<(), String> {
        let chosen = raster.chosen_bands(options)?;
        eight_bit &= raster.eight_bit;
        samples.resize_with(chosen.len(), Vec::new);
        for (k, &b) in chosen.iter().enumerate() {
            let plane = &raster.bands[b - 1];
            let skip = (stride - first_pixel % stride) % stride;
            for &v in plane.iter().filter(|v| v.is_finite()) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            samples[k].extend(
                plane
                    .iter()
                    .skip(skip)
                    .step_by(stride)
                    .filter(|v| v.is_finite()),
            );
        }
        Ok(())
    };
    let mut y = 0;
    while y < height {
        let h = rows.min(height - y);
        let window = Roi {
            x: 0,
            y,
            width,
            height: h,
        };
        let (raster, _) = Raster::read_tiff_window(path, Some(window))?;
        visit(&raster, y as usize * width as usize).map_err(bands_err)?;
        y += h;
    }
    if eight_bit {
        return Ok(options.stretch);
    }
    Ok(levels(options.stretch, &mut samples, lo, hi))
}

/// [`scene_stretch`] for a raster already in memory.
fn scene_stretch_of(raster: &Raster, options: &LoadOptions) -> Result<Stretch, String> {
    let chosen = raster.chosen_bands(options)?;
    if raster.eight_bit {
        return Ok(options.stretch);
    }
    let stride = (raster.width as usize * raster.height as usize)
        .div_ceil(1 << 20)
        .max(1);
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut samples: Vec<Vec<f32>> = chosen
        .iter()
        .map(|&b| {
            let plane = &raster.bands[b - 1];
            for &v in plane.iter().filter(|v| v.is_finite()) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            plane
                .iter()
                .step_by(stride)
                .copied()
                .filter(|v| v.is_finite())
                .collect()
        })
        .collect();
    Ok(levels(options.stretch, &mut samples, lo, hi))
}

/// Fixed levels from a stretch rule: the joint extremes `lo`, `hi` of the chosen bands for
/// [`Stretch::MinMax`], each band's sampled percentiles for [`Stretch::Percentile`].
fn levels(stretch: Stretch, samples: &mut [Vec<f32>], lo: f32, hi: f32) -> Stretch {
    let (mut low, mut high) = ([0.0f32; 3], [0.0f32; 3]);
    match stretch {
        Stretch::MinMax => {
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
            low = [lo; 3];
            high = [hi; 3];
        }
        Stretch::Percentile { low: pl, high: ph } => {
            for (k, v) in samples.iter_mut().enumerate().take(3) {
                (low[k], high[k]) = percentiles_sampled(v, pl, ph);
            }
        }
        fixed @ Stretch::Fixed { .. } => return fixed,
    }
    Stretch::Fixed { low, high }
}

/// `window` clamped to a `width × height` image.
///
/// # Errors
/// [`PslgError::Bands`] when nothing of the window lies inside the image.
fn clamp_window(window: Roi, width: u32, height: u32, path: &Path) -> Result<Roi, PslgError> {
    let (x0, y0) = (window.x.min(width), window.y.min(height));
    let x1 = window.x.saturating_add(window.width).min(width);
    let y1 = window.y.saturating_add(window.height).min(height);
    if x1 <= x0 || y1 <= y0 {
        return Err(PslgError::Bands {
            path: path.to_path_buf(),
            reason: format!("window {window:?} lies outside the {width}x{height} image"),
        });
    }
    Ok(Roi {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

/// The `low`-th and `high`-th percentiles (0–100) of the finite values of `plane` (nearest rank, on at most
/// ~1 M values taken at a regular stride).
fn percentiles(plane: &[f32], low: f64, high: f64) -> (f32, f32) {
    let stride = plane.len().div_ceil(1 << 20).max(1);
    let mut v: Vec<f32> = plane
        .iter()
        .step_by(stride)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    percentiles_sampled(&mut v, low, high)
}

/// The `low`-th and `high`-th percentiles (nearest rank) of finite values `v` (reordered).
fn percentiles_sampled(v: &mut [f32], low: f64, high: f64) -> (f32, f32) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let rank = |p: f64| (((p / 100.0) * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
    let (il, ih) = (rank(low), rank(high));
    let lo = *v.select_nth_unstable_by(il, f32::total_cmp).1;
    let hi = *v.select_nth_unstable_by(ih, f32::total_cmp).1;
    (lo, hi)
}

/// Opens and decodes an image file, the format guessed from its content.
fn decode(path: &Path) -> Result<DynamicImage, PslgError> {
    let read_err = |source: image::ImageError| PslgError::ReadImage {
        path: path.to_path_buf(),
        source,
    };
    ImageReader::open(path)
        .map_err(|e| read_err(image::ImageError::IoError(e)))?
        .with_guessed_format()
        .map_err(|e| read_err(image::ImageError::IoError(e)))?
        .decode()
        .map_err(read_err)
}

/// Converts any decoded image to 8-bit RGB with the rules of [`load_rgb`].
pub fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image.to_rgb8(),
        other => {
            // Wide or float samples: stretch by the image's own range (alpha excluded).
            let f = other.to_rgb32f();
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for v in f.as_raw() {
                if v.is_finite() {
                    lo = lo.min(*v);
                    hi = hi.max(*v);
                }
            }
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            RgbImage::from_fn(f.width(), f.height(), |x, y| {
                let p = f.get_pixel(x, y);
                let s = |v: f32| {
                    if v.is_finite() {
                        ((v - lo) * scale).round().clamp(0.0, 255.0) as u8
                    } else {
                        0
                    }
                };
                Rgb([s(p[0]), s(p[1]), s(p[2])])
            })
        }
    }
}

/// Reads a mask file: any nonzero pixel of its first channel is foreground; returned as 0/255.
///
/// # Errors
/// [`PslgError::ReadImage`] when the file cannot be decoded.
pub fn load_mask(path: &Path) -> Result<GrayImage, PslgError> {
    let mut gray = match decode(path)? {
        DynamicImage::ImageLuma8(g) => g,
        other => {
            // First channel, thresholded at nonzero, whatever the bit depth.
            let l16 = other.to_luma16();
            GrayImage::from_fn(l16.width(), l16.height(), |x, y| {
                image::Luma([u8::from(l16.get_pixel(x, y)[0] != 0)])
            })
        }
    };
    for p in gray.pixels_mut() {
        p[0] = if p[0] != 0 { 255 } else { 0 };
    }
    Ok(gray)
}

/// Writes a 0/255 mask as PNG (creating parent folders).
///
/// # Errors
/// [`PslgError::WriteImage`] when the file cannot be written.
pub fn save_mask(mask: &GrayImage, path: &Path) -> Result<(), PslgError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| PslgError::WriteImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(e),
        })?;
    }
    mask.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| PslgError::WriteImage {
            path: path.to_path_buf(),
            source,
        })
}

/// Whether `path` names a TIFF file (`.tif` / `.tiff`, any case).
pub fn is_tiff_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"))
}

/// Writes a mask by the extension of `path`: `.tif` / `.tiff` as a single-band uint8 TIFF carrying
/// `georef` when given (a GeoTIFF GIS tools overlay on the source image), anything else as PNG (0/255).
///
/// # Errors
/// [`PslgError::WriteImage`] or [`PslgError::Geo`] when the file cannot be written.
pub fn save_mask_for(
    mask: &GrayImage,
    path: &Path,
    georef: Option<&pslg_geo::GeoReference>,
) -> Result<(), PslgError> {
    if !is_tiff_path(path) {
        return save_mask(mask, path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| PslgError::WriteImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(e),
        })?;
    }
    match georef {
        Some(g) => g.write_mask(path, mask)?,
        None => pslg_geo::write_plain_mask(path, mask)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgba};

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pslg-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A 4×2, 5-band uint16 TIFF: band b of pixel i holds 100·b + i, except pixel 7 of band 2 (an outlier).
    fn five_band_tiff(path: &Path) {
        use tiff::encoder::{TiffEncoder, colortype::ColorType};
        struct Five;
        impl ColorType for Five {
            type Inner = u16;
            const TIFF_VALUE: tiff::tags::PhotometricInterpretation =
                tiff::tags::PhotometricInterpretation::BlackIsZero;
            const BITS_PER_SAMPLE: &'static [u16] = &[16; 5];
            const SAMPLE_FORMAT: &'static [tiff::tags::SampleFormat] =
                &[tiff::tags::SampleFormat::Uint; 5];
            fn horizontal_predict(row: &[u16], result: &mut Vec<u16>) {
                // Not used: the test writes without a predictor.
                result.extend_from_slice(row);
            }
        }
        let mut data = Vec::new();
        for i in 0..8u16 {
            for b in 1..=5u16 {
                data.push(if b == 2 && i == 7 { 60000 } else { 100 * b + i });
            }
        }
        let file = std::fs::File::create(path).unwrap();
        let mut enc = TiffEncoder::new(std::io::BufWriter::new(file)).unwrap();
        enc.write_image::<Five>(4, 2, &data).unwrap();
    }

    #[test]
    fn bands_are_picked_and_stretched() {
        let p = tmp("five.tif");
        five_band_tiff(&p);
        // The image crate cannot decode 5 bands; the band path can.
        assert!(load_rgb(&p).is_err());
        let opts = |bands: Option<Vec<usize>>, stretch| LoadOptions { bands, stretch };
        let rgb = load_rgb_with(&p, &opts(Some(vec![3, 1, 5]), Stretch::MinMax)).unwrap();
        // Joint min/max over bands 3, 1, 5: 100 (band 1, pixel 0) .. 507 (band 5, pixel 7).
        let v = |x: f32| ((x - 100.0) * 255.0 / 407.0).round() as u8;
        assert_eq!(rgb.get_pixel(0, 0).0, [v(300.0), v(100.0), v(500.0)]);
        assert_eq!(rgb.get_pixel(3, 1).0, [v(307.0), v(107.0), v(507.0)]);
        // One band: gray. Percentiles per band clip band 2's outlier: 0..100 % would map 60000 to 255 and
        // squash the rest to 0; 0..85 % spreads 200..206 over the full range.
        let gray = load_rgb_with(
            &p,
            &opts(
                Some(vec![2]),
                Stretch::Percentile {
                    low: 0.0,
                    high: 85.0,
                },
            ),
        )
        .unwrap();
        assert_eq!(gray.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(gray.get_pixel(2, 1).0, [255, 255, 255]); // pixel 6 = 206, the 85th percentile
        assert_eq!(gray.get_pixel(3, 1).0, [255, 255, 255]); // the outlier, clipped
        assert!(gray.get_pixel(1, 0)[0] > 0 && gray.get_pixel(1, 0)[0] < 255);
        for bad in [vec![0], vec![6], vec![1, 2]] {
            assert!(matches!(
                load_rgb_with(&p, &opts(Some(bad), Stretch::MinMax)),
                Err(PslgError::Bands { .. })
            ));
        }
        assert!(matches!(
            load_rgb_with(
                &p,
                &opts(
                    None,
                    Stretch::Percentile {
                        low: 50.0,
                        high: 10.0
                    }
                )
            ),
            Err(PslgError::Bands { .. })
        ));
        // Default: bands 1, 2, 3.
        let d = load_rgb_with(
            &p,
            &opts(
                None,
                Stretch::Percentile {
                    low: 0.0,
                    high: 100.0,
                },
            ),
        )
        .unwrap();
        assert_eq!(d.get_pixel(0, 0).0, [0, 0, 0]);
    }

    #[test]
    fn eight_bit_images_are_never_stretched() {
        let p = tmp("rgb8.png");
        RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]))
            .save(&p)
            .unwrap();
        let a = load_rgb(&p).unwrap();
        let b = load_rgb_with(
            &p,
            &LoadOptions {
                bands: Some(vec![1, 2, 3]),
                stretch: Stretch::Percentile {
                    low: 5.0,
                    high: 95.0,
                },
            },
        )
        .unwrap();
        assert_eq!(a, b);
        let swapped = load_rgb_with(
            &p,
            &LoadOptions {
                bands: Some(vec![3, 2, 1]),
                stretch: Stretch::MinMax,
            },
        )
        .unwrap();
        assert_eq!(swapped.get_pixel(2, 1).0, [7, 20, 20]);
    }

    #[test]
    fn scene_stretch_streamed_in_strips_matches_the_whole_scene_stretch() {
        // > 1 M pixels, so the percentile sample is strided; strips of 7 rows do not divide the stride.
        let (w, h) = (1100u32, 1000u32);
        let mut state = 7u32;
        let img: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = (state >> 20) as u16;
            Rgb([n + x as u16, 3000 + n / 2 + y as u16, 500 + (n % 977)])
        });
        let p = tmp("stretch16.tif");
        img.save(&p).unwrap();
        for stretch in [
            Stretch::MinMax,
            Stretch::Percentile {
                low: 2.0,
                high: 98.0,
            },
        ] {
            let options = LoadOptions {
                bands: Some(vec![3, 1, 2]),
                stretch,
            };
            let whole = load_rgb_with(&p, &options).unwrap();
            let fixed = scene_stretch_in_strips(&p, &options, Some(7)).unwrap();
            assert!(matches!(fixed, Stretch::Fixed { .. }), "{fixed:?}");
            assert_eq!(fixed, scene_stretch(&p, &options).unwrap());
            let fixed_options = LoadOptions {
                stretch: fixed,
                ..options.clone()
            };
            assert_eq!(load_rgb_with(&p, &fixed_options).unwrap(), whole);
            let want = Roi {
                x: 1000,
                y: 900,
                width: 300,
                height: 300,
            };
            let (win, got) = load_rgb_window(&p, want, &fixed_options).unwrap();
            assert_eq!((got.width, got.height), (100, 100));
            let crop = image::imageops::crop_imm(&whole, 1000, 900, 100, 100).to_image();
            assert_eq!(win, crop, "{stretch:?}");
        }
        // 8-bit images are never stretched: the options' stretch comes back unchanged.
        let p8 = tmp("stretch8.png");
        RgbImage::new(4, 4).save(&p8).unwrap();
        let options = LoadOptions::default();
        assert_eq!(scene_stretch(&p8, &options).unwrap(), Stretch::MinMax);
    }

    #[test]
    fn sixteen_bit_gray_tiff_is_stretched_by_its_range() {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 1, |x, _| Luma([1000 + 100 * x as u16]));
        let p = tmp("g16.tif");
        img.save(&p).unwrap();
        let rgb = load_rgb(&p).unwrap();
        let row: Vec<u8> = (0..4).map(|x| rgb.get_pixel(x, 0)[0]).collect();
        assert_eq!(row, vec![0, 85, 170, 255]);
        assert_eq!(rgb.get_pixel(1, 0)[0], rgb.get_pixel(1, 0)[2]);
    }

    #[test]
    fn rgba_and_gray_alpha_drop_alpha() {
        let p = tmp("rgba.png");
        ImageBuffer::from_pixel(2, 2, Rgba([10u8, 20, 30, 0]))
            .save(&p)
            .unwrap();
        assert_eq!(load_rgb(&p).unwrap().get_pixel(0, 0), &Rgb([10, 20, 30]));
        let p = tmp("la.png");
        ImageBuffer::from_pixel(2, 2, LumaA([77u8, 5]))
            .save(&p)
            .unwrap();
        assert_eq!(load_rgb(&p).unwrap().get_pixel(1, 1), &Rgb([77, 77, 77]));
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let p = tmp("garbage.png");
        std::fs::write(&p, b"not an image at all").unwrap();
        assert!(matches!(load_rgb(&p), Err(PslgError::ReadImage { .. })));
        let p = tmp("truncated.png");
        let good = tmp("good.png");
        RgbImage::from_pixel(30, 30, Rgb([1, 2, 3]))
            .save(&good)
            .unwrap();
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(load_rgb(&p), Err(PslgError::ReadImage { .. })));
        assert!(matches!(
            load_rgb(&tmp("missing.png")),
            Err(PslgError::ReadImage { .. })
        ));
    }

    #[test]
    fn mask_round_trip() {
        let m = GrayImage::from_fn(3, 2, |x, _| Luma([if x == 1 { 1 } else { 0 }]));
        let p = tmp("sub/mask.png");
        save_mask(&m, &p).unwrap();
        let back = load_mask(&p).unwrap();
        assert_eq!(back.as_raw(), &vec![0, 255, 0, 0, 255, 0]);
    }
}
