//! Image and mask files: decoding PNG / JPEG / TIFF into 8-bit RGB, writing 0/255 masks.

use crate::PslgError;
use image::{DynamicImage, GrayImage, ImageReader, Rgb, RgbImage};
use std::path::Path;

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
    let rgb = to_rgb8(decode(path)?);
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(PslgError::EmptyImage {
            path: path.to_path_buf(),
        });
    }
    Ok(rgb)
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
