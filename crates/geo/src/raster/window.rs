//! Rasters of any band count and sample type (TIFF through the `tiff` crate): band selection, 16/32-bit →
//! 8-bit stretches (joint min/max or per-band percentiles, streamed over a whole scene), and windowed reads
//! that decode only the strips or tiles a region touches.

use super::{LoadOptions, RasterError, Stretch, decode, is_tiff_path, load_rgb_with};
use image::{DynamicImage, Rgb, RgbImage};
use pslg_core::Roi;
use std::path::Path;

/// Whether the file starts with a TIFF byte-order mark.
pub(super) fn is_tiff_content(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && (magic == *b"II*\0" || magic == *b"MM\0*")
}

/// A decoded raster as bands of `f32` samples, before conversion to 8-bit RGB.
pub(super) struct Raster {
    width: u32,
    height: u32,
    /// One plane per band, row-major.
    bands: Vec<Vec<f32>>,
    /// Whether the samples are 8-bit (then used as they are, no stretch).
    eight_bit: bool,
}

impl Raster {
    pub(super) fn from_image(image: DynamicImage) -> Self {
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

    pub(super) fn read_tiff(path: &Path) -> Result<Self, RasterError> {
        Self::read_tiff_window(path, None).map(|(r, _)| r)
    }

    /// Reads a TIFF, or only `window` of it (clamped to the image; returned) by decoding just the strips or
    /// tiles the window touches.
    fn read_tiff_window(path: &Path, window: Option<Roi>) -> Result<(Self, Roi), RasterError> {
        use tiff::decoder::{ChunkType, Decoder};
        use tiff::tags::Tag;
        let err = |e: String| RasterError::ReadImage {
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
    pub(super) fn to_rgb8(&self, options: &LoadOptions) -> Result<RgbImage, String> {
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
/// As [`load_rgb_with`], plus [`RasterError::Bands`] for a window outside the image.
pub fn load_rgb_window(
    path: &Path,
    window: Roi,
    options: &LoadOptions,
) -> Result<(RgbImage, Roi), RasterError> {
    if !(is_tiff_path(path) || is_tiff_content(path)) {
        let full = load_rgb_with(path, options)?;
        let win = clamp_window(window, full.width(), full.height(), path)?;
        let crop = image::imageops::crop_imm(&full, win.x, win.y, win.width, win.height).to_image();
        return Ok((crop, win));
    }
    let (raster, win) = Raster::read_tiff_window(path, Some(window))?;
    let rgb = raster
        .to_rgb8(options)
        .map_err(|reason| RasterError::Bands {
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
pub fn scene_stretch(path: &Path, options: &LoadOptions) -> Result<Stretch, RasterError> {
    scene_stretch_in_strips(path, options, None)
}

/// [`scene_stretch`] reading a TIFF in strips of `rows` rows (default: ~16 MiB of `f32` per band).
pub(super) fn scene_stretch_in_strips(
    path: &Path,
    options: &LoadOptions,
    rows: Option<u32>,
) -> Result<Stretch, RasterError> {
    if matches!(options.stretch, Stretch::Fixed { .. }) {
        return Ok(options.stretch);
    }
    let bands_err = |reason: String| RasterError::Bands {
        path: path.to_path_buf(),
        reason,
    };
    if !(is_tiff_path(path) || is_tiff_content(path)) {
        return scene_stretch_of(&Raster::from_image(decode(path)?), options).map_err(bands_err);
    }
    let (width, height) = {
        let file = std::fs::File::open(path).map_err(|e| RasterError::ReadImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(e),
        })?;
        tiff::decoder::Decoder::new(std::io::BufReader::new(file))
            .and_then(|mut d| d.dimensions())
            .map_err(|e| RasterError::ReadImage {
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
/// [`RasterError::Bands`] when nothing of the window lies inside the image.
fn clamp_window(window: Roi, width: u32, height: u32, path: &Path) -> Result<Roi, RasterError> {
    let (x0, y0) = (window.x.min(width), window.y.min(height));
    let x1 = window.x.saturating_add(window.width).min(width);
    let y1 = window.y.saturating_add(window.height).min(height);
    if x1 <= x0 || y1 <= y0 {
        return Err(RasterError::Bands {
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
