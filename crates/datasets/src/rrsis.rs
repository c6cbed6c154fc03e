//! Referring remote-sensing segmentation datasets: the RefCOCO layout of RRSIS-D and RRSIS-M
//! (`refs(unc).p`, `instances.json` with COCO polygon or RLE masks, `JPEGImages/`) and RefSegRS
//! (`images/*.tif`, `masks/*.tif`, `output_phrase_{split}.txt`). Every sentence of a reference is one sample;
//! masks are decoded on demand, so memory does not grow with the dataset.

use crate::DatasetError;
use image::{GrayImage, Luma};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A COCO segmentation: polygons (`[x0, y0, x1, y1, …]` each, united) or run-length encoding (column-major
/// runs alternating background / foreground, starting with background).
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// One or more polygons in pixel coordinates.
    Polygons(Vec<Vec<f64>>),
    /// Run lengths over the column-major pixels of an `height × width` image.
    Rle {
        /// Runs.
        counts: Vec<u32>,
        /// Rows.
        height: u32,
        /// Columns.
        width: u32,
    },
}

/// Why a COCO run-length encoding cannot be decoded or painted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RleError {
    /// The compressed string stops in the middle of a count.
    #[error("the RLE string ends inside a count: the annotation is truncated")]
    Truncated,
    /// A character outside pycocotools' alphabet (ASCII 48–111).
    #[error("character {0:?} is not in the RLE alphabet (ASCII '0' to 'o')")]
    Character(char),
    /// A count longer than 12 characters (60 bits).
    #[error("an RLE count is too long (over 12 characters)")]
    CountTooLong,
    /// A count that decodes below zero.
    #[error("negative RLE count {0}")]
    NegativeCount(i64),
    /// The RLE is for another image size.
    #[error("RLE of size {}x{} for an image of {}x{}", .rle.0, .rle.1, .image.0, .image.1)]
    Size {
        /// (width, height) the RLE declares.
        rle: (u32, u32),
        /// (width, height) of the image.
        image: (u32, u32),
    },
    /// The runs do not cover the image exactly.
    #[error("RLE runs cover {covered} pixels, the image has {pixels}")]
    Coverage {
        /// Pixels the runs add up to.
        covered: u64,
        /// Pixels of the image.
        pixels: u64,
    },
}

/// Decodes a compressed COCO RLE string (pycocotools' `rleFrString`: 6 bits per character from ASCII 48,
/// counts after the second stored as differences to the count two before).
///
/// # Errors
/// [`RleError`] for characters outside the alphabet, a string ending inside a number, or a count that is
/// too long or negative.
pub fn rle_from_string(s: &str) -> Result<Vec<u32>, RleError> {
    let bytes = s.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let Some(&byte) = bytes.get(p) else {
                return Err(RleError::Truncated);
            };
            if !(48..=111).contains(&byte) {
                return Err(RleError::Character(byte as char));
            }
            let c = i64::from(byte - 48);
            if k >= 12 {
                return Err(RleError::CountTooLong);
            }
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && (c & 0x10) != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        if counts.len() > 2 {
            x += i64::from(counts[counts.len() - 2]);
        }
        counts.push(u32::try_from(x).map_err(|_| RleError::NegativeCount(x))?);
    }
    Ok(counts)
}

/// pycocotools' `rleFrPoly`: a polygon rasterised exactly as the COCO API does (boundary traced at 5×,
/// crossings of pixel-centre columns kept, runs from the sorted crossings).
pub fn rle_from_polygon(xy: &[f64], height: u32, width: u32) -> Vec<u32> {
    let (h, w) = (i64::from(height), i64::from(width));
    let k = xy.len() / 2;
    if k == 0 {
        return vec![(h * w) as u32];
    }
    let scale = 5.0;
    let mut x: Vec<i64> = (0..k).map(|j| (scale * xy[2 * j] + 0.5) as i64).collect();
    let mut y: Vec<i64> = (0..k)
        .map(|j| (scale * xy[2 * j + 1] + 0.5) as i64)
        .collect();
    x.push(x[0]);
    y.push(y[0]);
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        let s = if dx >= dy {
            if dx == 0 {
                0.0
            } else {
                (ye - ys) as f64 / dx as f64
            }
        } else {
            (xe - xs) as f64 / dy as f64
        };
        if dx >= dy {
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i64);
            }
        } else {
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i64);
            }
        }
    }
    let mut a: Vec<i64> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
        let xd = (xd + 0.5) / scale - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
            continue;
        }
        let yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
        let yd = ((yd + 0.5) / scale - 0.5).clamp(0.0, h as f64).ceil();
        a.push(xd as i64 * h + yd as i64);
    }
    a.push(h * w);
    a.sort_unstable();
    let mut prev = 0;
    for e in a.iter_mut() {
        let t = *e;
        *e -= prev;
        prev = t;
    }
    let mut b: Vec<i64> = Vec::with_capacity(a.len());
    let mut j = 0;
    b.push(a[j]);
    j += 1;
    while j < a.len() {
        if a[j] > 0 {
            b.push(a[j]);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                if let Some(last) = b.last_mut() {
                    *last += a[j];
                }
                j += 1;
            }
        }
    }
    b.into_iter().map(|c| c as u32).collect()
}

/// Paints the foreground runs of `counts` (column-major) into `mask` (union).
fn paint_rle(counts: &[u32], mask: &mut GrayImage) {
    let h = mask.height() as usize;
    let total = h * mask.width() as usize;
    let mut pos = 0usize;
    for (i, &c) in counts.iter().enumerate() {
        let end = (pos + c as usize).min(total);
        if i % 2 == 1 {
            for p in pos..end {
                mask.put_pixel((p / h) as u32, (p % h) as u32, Luma([255]));
            }
        }
        pos = end;
    }
}

impl Segmentation {
    /// The mask (0/255) at `width × height` (polygons united, as pycocotools' `merge`).
    ///
    /// # Errors
    /// [`RleError::Size`] when an RLE's size differs from the image's, [`RleError::Coverage`] when its runs
    /// do not cover the image exactly.
    pub fn to_mask(&self, width: u32, height: u32) -> Result<GrayImage, RleError> {
        let mut mask = GrayImage::new(width, height);
        match self {
            Segmentation::Polygons(polys) => {
                for p in polys {
                    paint_rle(&rle_from_polygon(p, height, width), &mut mask);
                }
            }
            Segmentation::Rle {
                counts,
                height: h,
                width: w,
            } => {
                if (*w, *h) != (width, height) {
                    return Err(RleError::Size {
                        rle: (*w, *h),
                        image: (width, height),
                    });
                }
                let sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
                if sum != u64::from(width) * u64::from(height) {
                    return Err(RleError::Coverage {
                        covered: sum,
                        pixels: u64::from(width) * u64::from(height),
                    });
                }
                paint_rle(counts, &mut mask);
            }
        }
        Ok(mask)
    }

    fn parse(v: &serde_json::Value) -> Result<Self, String> {
        if let Some(list) = v.as_array() {
            let polys = list
                .iter()
                .map(|p| {
                    p.as_array()
                        .ok_or("a polygon is not a list of numbers")?
                        .iter()
                        .map(|c| c.as_f64().ok_or("a polygon coordinate is not a number"))
                        .collect::<Result<Vec<f64>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Segmentation::Polygons(polys));
        }
        let size = v["size"]
            .as_array()
            .filter(|s| s.len() == 2)
            .ok_or("RLE without size [height, width]")?;
        let height = size[0].as_u64().ok_or("RLE height is not a number")? as u32;
        let width = size[1].as_u64().ok_or("RLE width is not a number")? as u32;
        let counts = match &v["counts"] {
            serde_json::Value::String(s) => rle_from_string(s).map_err(|e| e.to_string())?,
            serde_json::Value::Array(a) => a
                .iter()
                .map(|c| {
                    c.as_u64()
                        .map(|c| c as u32)
                        .ok_or("an RLE count is not a number")
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("segmentation is neither polygons nor RLE".into()),
        };
        Ok(Segmentation::Rle {
            counts,
            height,
            width,
        })
    }
}

/// One referring expression of a segmentation dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct RefSample {
    /// Unique id: `ref_id:sent_id` (RefCOCO layout) or the phrase file's id (RefSegRS).
    pub id: String,
    /// The image file.
    pub image: PathBuf,
    /// The expression.
    pub text: String,
    /// Category name, when the dataset has one.
    pub category: Option<String>,
    /// Where the ground-truth mask comes from.
    pub target: MaskSource,
}

/// Where a sample's ground-truth mask comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskSource {
    /// A COCO segmentation at the image's size.
    Coco {
        /// The segmentation.
        segmentation: Segmentation,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// A mask image file (255 = foreground).
    File(PathBuf),
}

impl RefSample {
    /// The ground-truth mask (0/255).
    ///
    /// # Errors
    /// [`DatasetError::Dataset`] for an undecodable segmentation or mask file.
    pub fn mask(&self) -> Result<GrayImage, DatasetError> {
        match &self.target {
            MaskSource::Coco {
                segmentation,
                width,
                height,
            } => segmentation
                .to_mask(*width, *height)
                .map_err(|e| DatasetError::Dataset {
                    path: self.image.clone(),
                    record: self.id.clone(),
                    reason: e.to_string(),
                }),
            MaskSource::File(p) => {
                let m = image::open(p).map_err(|e| DatasetError::Dataset {
                    path: p.clone(),
                    record: self.id.clone(),
                    reason: e.to_string(),
                })?;
                let mut m = m.to_luma8();
                for v in m.pixels_mut() {
                    v.0[0] = if v.0[0] >= 128 { 255 } else { 0 };
                }
                Ok(m)
            }
        }
    }
}

#[derive(Deserialize)]
struct RefEntry {
    ref_id: i64,
    ann_id: i64,
    image_id: i64,
    split: String,
    sentences: Vec<Sentence>,
    #[serde(default)]
    category_id: Option<i64>,
}

#[derive(Deserialize)]
struct Sentence {
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    sent: Option<String>,
    #[serde(default)]
    sent_id: Option<i64>,
}

fn dataset_err(path: &Path, record: impl Into<String>, reason: impl Into<String>) -> DatasetError {
    DatasetError::Dataset {
        path: path.to_path_buf(),
        record: record.into(),
        reason: reason.into(),
    }
}

/// The on-disk layout of a referring segmentation dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// RRSIS-D, RRSIS-M: `refs(unc).p`, `instances.json`, `JPEGImages/` ([`read_refcoco`]).
    #[default]
    RefCoco,
    /// RefSegRS: `images/`, `masks/`, `output_phrase_{split}.txt` ([`read_refsegrs`]).
    RefSegRs,
    /// `ROOT/{split}.jsonl` of image–mask pairs with a sentence each ([`read_pairs`]).
    Pairs,
}

impl Layout {
    /// Every layout, in the order of [`Layout::name`]s a user may give.
    pub const ALL: [Layout; 3] = [Layout::RefCoco, Layout::RefSegRs, Layout::Pairs];

    /// The layout's name: `refcoco`, `refsegrs` or `pairs`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::RefCoco => "refcoco",
            Layout::RefSegRs => "refsegrs",
            Layout::Pairs => "pairs",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A layout name that is none of [`Layout::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset layout {0:?}: give refcoco, refsegrs or pairs")]
pub struct UnknownLayout(pub String);

impl std::str::FromStr for Layout {
    type Err = UnknownLayout;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|l| l.name() == text)
            .ok_or_else(|| UnknownLayout(text.into()))
    }
}

/// The samples of `split` of the dataset at `root` in `layout` (`refs_file` is the references pickle of
/// the RefCOCO layout, relative to `root`; the other layouts ignore it).
///
/// # Errors
/// As [`read_refcoco`], [`read_refsegrs`] or [`read_pairs`].
pub fn read_split(
    layout: Layout,
    root: &Path,
    refs_file: &str,
    split: &str,
) -> Result<Vec<RefSample>, DatasetError> {
    match layout {
        Layout::RefCoco => read_refcoco(root, refs_file, split),
        Layout::RefSegRs => read_refsegrs(root, split),
        Layout::Pairs => read_pairs(root, split),
    }
}

/// Reads a RefCOCO-layout dataset (RRSIS-D, RRSIS-M): `root/refs_file` (a Python pickle, e.g.
/// `refs(unc).p`), `root/instances.json`, images under `root/JPEGImages/`; the samples of `split` (every
/// sentence of every reference of that split), in the pickle's order.
///
/// # Errors
/// [`DatasetError::Dataset`] naming the file and record (reference id, annotation id) of anything malformed:
/// an unreadable pickle, a reference whose annotation or image is not in `instances.json`, a bad
/// segmentation.
pub fn read_refcoco(
    root: &Path,
    refs_file: &str,
    split: &str,
) -> Result<Vec<RefSample>, DatasetError> {
    let refs_path = root.join(refs_file);
    let file = std::fs::File::open(&refs_path)
        .map_err(|e| dataset_err(&refs_path, "-", format!("cannot open: {e}")))?;
    let refs: Vec<RefEntry> = serde_pickle::from_reader(
        std::io::BufReader::new(file),
        serde_pickle::DeOptions::new().replace_unresolved_globals(),
    )
    .map_err(|e| {
        dataset_err(
            &refs_path,
            "-",
            format!("not a list of RefCOCO references: {e}"),
        )
    })?;
    let inst_path = root.join("instances.json");
    let text = std::fs::read_to_string(&inst_path)
        .map_err(|e| dataset_err(&inst_path, "-", format!("cannot read: {e}")))?;
    let inst: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| dataset_err(&inst_path, "-", format!("not JSON: {e}")))?;
    let mut images: HashMap<i64, (String, u32, u32)> = HashMap::new();
    for im in inst["images"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = im["id"]
            .as_i64()
            .ok_or_else(|| dataset_err(&inst_path, "images", "an image without id"))?;
        let rec = format!("image {id}");
        let name = im["file_name"]
            .as_str()
            .ok_or_else(|| dataset_err(&inst_path, &rec, "no file_name"))?;
        let w = im["width"]
            .as_u64()
            .ok_or_else(|| dataset_err(&inst_path, &rec, "no width"))? as u32;
        let h = im["height"]
            .as_u64()
            .ok_or_else(|| dataset_err(&inst_path, &rec, "no height"))? as u32;
        images.insert(id, (name.to_string(), w, h));
    }
    let mut anns: HashMap<i64, &serde_json::Value> = HashMap::new();
    for a in inst["annotations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if let Some(id) = a["id"].as_i64() {
            anns.insert(id, a);
        }
    }
    let mut cats: HashMap<i64, String> = HashMap::new();
    for c in inst["categories"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if let (Some(id), Some(name)) = (c["id"].as_i64(), c["name"].as_str()) {
            cats.insert(id, name.to_string());
        }
    }
    let mut out = Vec::new();
    for r in refs.iter().filter(|r| r.split == split) {
        let rec = format!("ref {} (ann {})", r.ref_id, r.ann_id);
        let ann = anns.get(&r.ann_id).ok_or_else(|| {
            dataset_err(&inst_path, &rec, "its annotation is not in instances.json")
        })?;
        let (name, w, h) = images
            .get(&r.image_id)
            .ok_or_else(|| dataset_err(&inst_path, &rec, "its image is not in instances.json"))?;
        let segmentation = Segmentation::parse(&ann["segmentation"])
            .map_err(|reason| dataset_err(&inst_path, &rec, reason))?;
        let category = r
            .category_id
            .or_else(|| ann["category_id"].as_i64())
            .and_then(|c| cats.get(&c).cloned());
        for (k, s) in r.sentences.iter().enumerate() {
            let text = s.raw.clone().or_else(|| s.sent.clone()).ok_or_else(|| {
                dataset_err(
                    &refs_path,
                    &rec,
                    format!("sentence {k} has neither raw nor sent"),
                )
            })?;
            out.push(RefSample {
                id: format!("{}:{}", r.ref_id, s.sent_id.unwrap_or(k as i64)),
                image: root.join("JPEGImages").join(name),
                text,
                category: category.clone(),
                target: MaskSource::Coco {
                    segmentation: segmentation.clone(),
                    width: *w,
                    height: *h,
                },
            });
        }
    }
    Ok(out)
}

/// Reads RefSegRS: `root/output_phrase_{split}.txt` lines `<id> <expression>`, images `root/images/<id>.tif`,
/// masks `root/masks/<id>.tif` (255 = foreground).
///
/// # Errors
/// [`DatasetError::Dataset`] naming the file and line of a line without an id and an expression.
pub fn read_refsegrs(root: &Path, split: &str) -> Result<Vec<RefSample>, DatasetError> {
    let path = root.join(format!("output_phrase_{split}.txt"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| dataset_err(&path, "-", format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (id, expr) = line
            .split_once(char::is_whitespace)
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| {
                dataset_err(
                    &path,
                    format!("line {}", i + 1),
                    "expected `<id> <expression>`",
                )
            })?;
        out.push(RefSample {
            id: id.to_string(),
            image: root.join("images").join(format!("{id}.tif")),
            text: expr.to_string(),
            category: None,
            target: MaskSource::File(root.join("masks").join(format!("{id}.tif"))),
        });
    }
    Ok(out)
}

/// Reads image–mask pairs with their sentences (how RRSIS-M-style data, or any custom set, is given):
/// `root/{split}.jsonl`, one case per line in the [`crate::cases`] format with a `"mask"` and a `"text"`:
/// `{"id", "image", "mask", "text", "category"?}` (paths relative to the file).
///
/// # Errors
/// [`DatasetError::ReadCases`] / [`DatasetError::BadCase`] for an unreadable or malformed file;
/// [`DatasetError::Dataset`] naming the case that lacks its mask or its sentence.
pub fn read_pairs(root: &Path, split: &str) -> Result<Vec<RefSample>, DatasetError> {
    let path = root.join(format!("{split}.jsonl"));
    let cases = crate::cases::read_cases(&path)?;
    cases
        .into_iter()
        .map(|c| {
            let mask = c
                .mask
                .ok_or_else(|| dataset_err(&path, c.id.clone(), "the case has no \"mask\""))?;
            let text = c
                .text
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| dataset_err(&path, c.id.clone(), "the case has no \"text\""))?;
            Ok(RefSample {
                id: c.id,
                image: c.image,
                text,
                category: c.category,
                target: MaskSource::File(mask),
            })
        })
        .collect()
}
