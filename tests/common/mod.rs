//! A small RefCOCO-layout dataset the tests write: `refs(unc).p` (a Python pickle), `instances.json`
//! (COCO, RLE and polygon masks), `JPEGImages/*.png`; images of coloured discs and rectangles on a noisy
//! field, one reference per object, one or two sentences per reference.

#![allow(dead_code)]

use serde::Serialize;
use std::path::{Path, PathBuf};

/// A sentence of a reference, as `refs(unc).p` stores it.
#[derive(Serialize)]
pub struct Sent {
    pub raw: String,
    pub sent: String,
    pub sent_id: i64,
    pub tokens: Vec<String>,
}

/// A reference of `refs(unc).p`.
#[derive(Serialize)]
pub struct Ref {
    pub sent_ids: Vec<i64>,
    pub file_name: String,
    pub ann_id: i64,
    pub ref_id: i64,
    pub image_id: i64,
    pub split: String,
    pub sentences: Vec<Sent>,
    pub category_id: i64,
}

/// A sentence with its raw text, lower-cased `sent` and whitespace tokens.
pub fn sent(id: i64, text: &str) -> Sent {
    Sent {
        raw: text.into(),
        sent: text.to_lowercase(),
        sent_id: id,
        tokens: text.split(' ').map(String::from).collect(),
    }
}

/// A fresh temporary folder.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-ds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A deterministic pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// Column-major run lengths (background first) of a mask, as COCO stores uncompressed RLE.
fn rle(mask: &[bool], w: usize, h: usize) -> Vec<u32> {
    let mut counts = Vec::new();
    let (mut cur, mut run) = (false, 0u32);
    for x in 0..w {
        for y in 0..h {
            let v = mask[y * w + x];
            if v != cur {
                counts.push(run);
                run = 0;
                cur = v;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// Number of sentences written per split.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Training sentences.
    pub train: usize,
    /// Validation sentences.
    pub val: usize,
    /// Test sentences.
    pub test: usize,
}

/// Writes `n_images` images (split train / val / test in turn, 3:1:1) of `w × h` into `root`.
pub fn write_dataset(root: &Path, n_images: usize, w: u32, h: u32, seed: u64) -> Counts {
    let colours: [(&str, [u8; 3]); 3] = [
        ("red", [210, 40, 40]),
        ("blue", [40, 60, 210]),
        ("yellow", [220, 210, 50]),
    ];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    std::fs::create_dir_all(root.join("JPEGImages")).unwrap();
    let (mut images, mut anns, mut refs) = (Vec::new(), Vec::new(), Vec::new());
    let mut counts = Counts::default();
    let (mut ann_id, mut sent_id) = (100i64, 1000i64);
    for i in 0..n_images {
        let split = match i % 5 {
            3 => "val",
            4 => "test",
            _ => "train",
        };
        let file = format!("img_{i:03}.png");
        let mut img = image::RgbImage::from_fn(w, h, |x, y| {
            let n = ((x * 7 + y * 13 + i as u32 * 5) % 11) as u8;
            image::Rgb([50 + n, 90 + n / 2, 55])
        });
        let n_obj = 1 + i % 2;
        for k in 0..n_obj {
            let (cname, col) = colours[(i + k) % 3];
            let disc = (i + k) % 2 == 0;
            let half = f64::from(w.min(h)) / 4.0;
            let (rx, ry) = (rng.range(0.5, 1.0) * half, rng.range(0.5, 1.0) * half);
            let cx = if k == 0 {
                rng.range(rx + 1.0, f64::from(w) / 2.0)
            } else {
                rng.range(f64::from(w) / 2.0 + rx, f64::from(w) - rx - 1.0)
            };
            let cy = rng.range(ry + 1.0, f64::from(h) - ry - 1.0);
            let inside = |x: f64, y: f64| {
                let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
                if disc {
                    dx * dx + dy * dy <= 1.0
                } else {
                    dx.abs() <= 1.0 && dy.abs() <= 1.0
                }
            };
            let mut mask = vec![false; (w * h) as usize];
            for y in 0..h {
                for x in 0..w {
                    if inside(f64::from(x) + 0.5, f64::from(y) + 0.5) {
                        mask[(y * w + x) as usize] = true;
                        let n = ((x * 3 + y * 5) % 7) as u8;
                        img.put_pixel(x, y, image::Rgb([col[0], col[1].saturating_add(n), col[2]]));
                    }
                }
            }
            let shape = if disc { "circle" } else { "square" };
            let category = if disc { 1 } else { 2 };
            let segmentation = if disc {
                serde_json::json!({"size": [h, w], "counts": rle(&mask, w as usize, h as usize)})
            } else {
                // Rectangles as polygons (pixel-edge corners).
                let (x1, y1) = ((cx - rx).ceil() - 0.5, (cy - ry).ceil() - 0.5);
                let (x2, y2) = ((cx + rx).floor() + 0.5, (cy + ry).floor() + 0.5);
                serde_json::json!([[x1, y1, x2, y1, x2, y2, x1, y2]])
            };
            anns.push(serde_json::json!({
                "id": ann_id, "image_id": i, "category_id": category, "segmentation": segmentation,
                "bbox": [cx - rx, cy - ry, 2.0 * rx, 2.0 * ry], "iscrowd": 0, "area": 0
            }));
            let mut texts = vec![format!("the {cname} {shape}")];
            if k == 0 {
                texts.push(format!("{cname} {shape}"));
            }
            let sentences: Vec<Sent> = texts
                .iter()
                .map(|t| {
                    sent_id += 1;
                    sent(sent_id, t)
                })
                .collect();
            match split {
                "train" => counts.train += sentences.len(),
                "val" => counts.val += sentences.len(),
                _ => counts.test += sentences.len(),
            }
            refs.push(Ref {
                sent_ids: sentences.iter().map(|s| s.sent_id).collect(),
                file_name: file.clone(),
                ann_id,
                ref_id: ann_id,
                image_id: i as i64,
                split: split.into(),
                sentences,
                category_id: category,
            });
            ann_id += 1;
        }
        img.save(root.join("JPEGImages").join(&file)).unwrap();
        images.push(serde_json::json!({"id": i, "file_name": file, "width": w, "height": h}));
    }
    let inst = serde_json::json!({
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "storage tank"}, {"id": 2, "name": "vehicle"}]
    });
    std::fs::write(root.join("instances.json"), inst.to_string()).unwrap();
    let mut f = std::fs::File::create(root.join("refs(unc).p")).unwrap();
    serde_pickle::to_writer(&mut f, &refs, serde_pickle::SerOptions::new()).unwrap();
    counts
}
