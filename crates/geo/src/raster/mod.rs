//! Raster I/O: decoding PNG / JPEG / TIFF (8/16/32-bit, 1–4 or more bands, windowed) into the 8-bit RGB the
//! models see, with band selection and stretch; writing 0/255 masks as PNG or (Geo)TIFF.

use crate::GeoError;
use image::{DynamicImage, GrayImage, ImageReader, Rgb, RgbImage};
use std::path::{Path, PathBuf};

mod window;

use window::{Raster, is_tiff_content};
pub use window::{load_rgb_window, scene_stretch};

/// Errors of the raster I/O: a file that cannot be read or written, a band selection or window that does not
/// fit the image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RasterError {
    /// An image could not be opened or decoded.
    #[error(
        "cannot read image {path}: {source} (PNG, JPEG and TIFF with 8/16/32-bit samples are supported)"
    )]
    ReadImage {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// An image has no pixels.
    #[error("image {path} has no pixels; check the file")]
    EmptyImage {
        /// The file.
        path: PathBuf,
    },
    /// An image could not be written.
    #[error("cannot write {path}: {source}")]
    WriteImage {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A band selection, stretch or window cannot be applied to an image.
    #[error("{path}: {reason}")]
    Bands {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GeoTIFF mask could not be written.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

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

/// A band list or stretch given as text (a command-line flag, a config value) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {given:?} is not {expected}")]
pub struct ParseOptionError {
    /// What was being parsed, e.g. `--bands`.
    pub what: &'static str,
    /// The text as given.
    pub given: String,
    /// What a valid text looks like.
    pub expected: &'static str,
}

/// Parses a 1-based band list such as `3,2,1` (R, G, B) or `1` (gray).
///
/// Only the syntax is checked here; [`load_rgb_with`] checks the count and the numbers against the image.
///
/// # Errors
/// [`ParseOptionError`] when an entry is not a whole number.
///
/// # Examples
/// ```
/// assert_eq!(pslg_geo::raster::parse_bands("3, 2,1").unwrap(), vec![3, 2, 1]);
/// assert!(pslg_geo::raster::parse_bands("red").is_err());
/// ```
pub fn parse_bands(text: &str) -> Result<Vec<usize>, ParseOptionError> {
    text.split(',')
        .map(|b| b.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ParseOptionError {
            what: "--bands",
            given: text.into(),
            expected: "a list of band numbers like 3,2,1",
        })
}

impl std::str::FromStr for Stretch {
    type Err = ParseOptionError;

    /// `minmax` (any case) or `LOW,HIGH` percentiles such as `2,98`. The range itself is checked by
    /// [`load_rgb_with`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("minmax") {
            return Ok(Self::MinMax);
        }
        let v: Option<Vec<f64>> = text
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .ok()
            .filter(|v: &Vec<f64>| v.len() == 2);
        match v {
            Some(v) => Ok(Self::Percentile {
                low: v[0],
                high: v[1],
            }),
            None => Err(ParseOptionError {
                what: "--stretch",
                given: text.into(),
                expected: "`minmax` or LOW,HIGH percentiles like 2,98",
            }),
        }
    }
}

impl LoadOptions {
    /// The options of a band list text ([`parse_bands`], `None` for the default bands) and a stretch text
    /// ([`Stretch`]'s `FromStr`).
    ///
    /// # Errors
    /// [`ParseOptionError`] naming the text that does not parse.
    ///
    /// # Examples
    /// ```
    /// use pslg_geo::raster::{LoadOptions, Stretch};
    /// let o = LoadOptions::parse(Some("4,3,2"), "2,98").unwrap();
    /// assert_eq!(o.bands, Some(vec![4, 3, 2]));
    /// assert_eq!(o.stretch, Stretch::Percentile { low: 2.0, high: 98.0 });
    /// ```
    pub fn parse(bands: Option<&str>, stretch: &str) -> Result<Self, ParseOptionError> {
        Ok(Self {
            bands: bands.map(parse_bands).transpose()?,
            stretch: stretch.parse()?,
        })
    }
}

/// Width and height of an image file without decoding its pixels (TIFFs of any band count through the
/// `tiff` crate's header, other formats through `image`).
///
/// # Errors
/// [`RasterError::ReadImage`] when the file cannot be opened or its header read.
pub fn image_dimensions(path: &Path) -> Result<(u32, u32), RasterError> {
    let read_err = |e: image::ImageError| RasterError::ReadImage {
        path: path.to_path_buf(),
        source: e,
    };
    if is_tiff_path(path) {
        let tiff_err =
            |e: tiff::TiffError| read_err(image::ImageError::IoError(std::io::Error::other(e)));
        let file =
            std::fs::File::open(path).map_err(|e| read_err(image::ImageError::IoError(e)))?;
        let mut dec =
            tiff::decoder::Decoder::new(std::io::BufReader::new(file)).map_err(tiff_err)?;
        return dec.dimensions().map_err(tiff_err);
    }
    image::image_dimensions(path).map_err(read_err)
}

/// Decodes an image file into 8-bit RGB for the models.
///
/// Accepts PNG, JPEG and TIFF (8- and 16-bit, 1–4 channels; the format is read from the file's content, not its
/// extension). Gray is replicated to RGB, alpha is dropped. 16-bit and float images are scaled to 0–255 by
/// the image's **own** minimum and maximum over its colour channels (a flat image becomes 0), which suits
/// satellite rasters whose values use a small part of the 16-bit range.
///
/// # Errors
/// [`RasterError::ReadImage`] when the file cannot be opened or decoded, [`RasterError::EmptyImage`] for a 0-pixel
/// image.
pub fn load_rgb(path: &Path) -> Result<RgbImage, RasterError> {
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
/// As [`load_rgb`], plus [`RasterError::Bands`] for a band number the image does not have, a band list that is
/// not one or three long, or a percentile range outside 0 ≤ low < high ≤ 100.
pub fn load_rgb_with(path: &Path, options: &LoadOptions) -> Result<RgbImage, RasterError> {
    let bands_err = |reason: String| RasterError::Bands {
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
        let raster = if is_tiff_path(path) || is_tiff_content(path) {
            Raster::read_tiff(path)?
        } else {
            Raster::from_image(decode(path)?)
        };
        raster.to_rgb8(options).map_err(bands_err)?
    };
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(RasterError::EmptyImage {
            path: path.to_path_buf(),
        });
    }
    Ok(rgb)
}

/// Opens and decodes an image file, the format guessed from its content.
fn decode(path: &Path) -> Result<DynamicImage, RasterError> {
    let read_err = |source: image::ImageError| RasterError::ReadImage {
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
/// [`RasterError::ReadImage`] when the file cannot be decoded.
pub fn load_mask(path: &Path) -> Result<GrayImage, RasterError> {
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

/// Writes a 0/255 mask as PNG (creating parent folders), crash-safely: the file appears complete or not at
/// all ([`pslg_core::atomic`]).
///
/// # Errors
/// [`RasterError::WriteImage`] when the file cannot be written.
pub fn save_mask(mask: &GrayImage, path: &Path) -> Result<(), RasterError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| RasterError::WriteImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(e),
        })?;
    }
    let mut failure = None;
    pslg_core::atomic::write_atomic(path, |w| {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(w)
            .write_image(
                mask.as_raw(),
                mask.width(),
                mask.height(),
                image::ExtendedColorType::L8,
            )
            .map_err(|e| {
                failure = Some(e);
                std::io::Error::other("PNG encoding failed")
            })
    })
    .map_err(|e| RasterError::WriteImage {
        path: path.to_path_buf(),
        source: failure.take().unwrap_or(image::ImageError::IoError(e)),
    })
}

/// Writes an RGB image (an overlay) in the format its extension names, crash-safely
/// ([`pslg_core::atomic`]), creating parent folders.
///
/// # Errors
/// [`RasterError::WriteImage`] when the extension names no format `image` writes, or the file cannot be
/// written.
pub fn save_rgb(image: &image::RgbImage, path: &Path) -> Result<(), RasterError> {
    let fail = |source| RasterError::WriteImage {
        path: path.to_path_buf(),
        source,
    };
    let format = image::ImageFormat::from_path(path).map_err(fail)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(image::ImageError::IoError(e)))?;
    }
    let mut failure = None;
    pslg_core::atomic::write_atomic(path, |w| {
        image.write_to(w, format).map_err(|e| {
            failure = Some(e);
            std::io::Error::other("image encoding failed")
        })
    })
    .map_err(|e| fail(failure.take().unwrap_or(image::ImageError::IoError(e))))
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
/// [`RasterError::WriteImage`] or [`RasterError::Geo`] when the file cannot be written.
pub fn save_mask_for(
    mask: &GrayImage,
    path: &Path,
    georef: Option<&crate::GeoReference>,
) -> Result<(), RasterError> {
    if !is_tiff_path(path) {
        return save_mask(mask, path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| RasterError::WriteImage {
            path: path.to_path_buf(),
            source: image::ImageError::IoError(e),
        })?;
    }
    match georef {
        Some(g) => g.write_mask(path, mask)?,
        None => crate::write_plain_mask(path, mask)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgba};
    use pslg_core::Roi;

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
                Err(RasterError::Bands { .. })
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
            Err(RasterError::Bands { .. })
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
            let fixed = window::scene_stretch_in_strips(&p, &options, Some(7)).unwrap();
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
        assert!(matches!(load_rgb(&p), Err(RasterError::ReadImage { .. })));
        let p = tmp("truncated.png");
        let good = tmp("good.png");
        RgbImage::from_pixel(30, 30, Rgb([1, 2, 3]))
            .save(&good)
            .unwrap();
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(load_rgb(&p), Err(RasterError::ReadImage { .. })));
        assert!(matches!(
            load_rgb(&tmp("missing.png")),
            Err(RasterError::ReadImage { .. })
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
