//! Experiment harness for tuning the weight-free box path (not a user command): for each case of a box → mask
//! set, the raw MBO masks of several parameter sets (no tightness test, no retry) and the box, with their IoU
//! against the ground truth (also after hole filling), the time, and the unsupervised features a chooser can
//! use (row / column coverage of the box, kept fraction, colour separability, boundary contrast, boundary
//! length), one JSON line per case. `docs/quality.md` says how its output was cross-validated.
//!
//! ```sh
//! cargo run --release -p pslg --example boxmask_candidates -- ../shared/data/boxmask-dev/cases.jsonl > cand.jsonl
//! ```

use anyhow::Context;
use image::{GrayImage, RgbImage};
use pslg::io::{load_mask, load_rgb};
use pslg::mbo::{Gmm, MboParams, contrast_beta};
use pslg::{BoxSegmenter, BoxSegmenterParams};
use pslg_datasets::cases::read_cases;
use serde_json::json;

fn iou(a: &GrayImage, b: &GrayImage) -> (u64, u64) {
    let (mut i, mut u) = (0, 0);
    for (p, q) in a.pixels().zip(b.pixels()) {
        i += u64::from(p[0] != 0 && q[0] != 0);
        u += u64::from(p[0] != 0 || q[0] != 0);
    }
    (i, u)
}

fn features(
    img: &RgbImage,
    m: &GrayImage,
    roi: pslg::cfpg::Roi,
    ctx: pslg::cfpg::Roi,
) -> serde_json::Value {
    let (bx, by, bw, bh) = (roi.x, roi.y, roi.width, roi.height);
    let mut rows = 0;
    let mut cols = vec![false; bw as usize];
    let mut kept = 0u64;
    for y in by..by + bh {
        let mut any = false;
        for x in bx..bx + bw {
            if m.get_pixel(x, y)[0] != 0 {
                any = true;
                cols[(x - bx) as usize] = true;
                kept += 1;
            }
        }
        rows += u32::from(any);
    }
    let colcov = cols.iter().filter(|&&c| c).count() as f64 / f64::from(bw);
    let rowcov = f64::from(rows) / f64::from(bh);
    // Colour separability in the context crop: mixtures fitted to the labelling, mean −ln P_label.
    let (mut f, mut b) = (Vec::new(), Vec::new());
    let mut cols3 = Vec::new();
    let mut lab = Vec::new();
    for y in ctx.y..ctx.y + ctx.height {
        for x in ctx.x..ctx.x + ctx.width {
            let p = img.get_pixel(x, y);
            let c = [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])];
            let fg = m.get_pixel(x, y)[0] != 0;
            if fg {
                f.push(c)
            } else {
                b.push(c)
            }
            cols3.push(c);
            lab.push(fg);
        }
    }
    let sub = |v: &Vec<[f32; 3]>| -> Vec<[f32; 3]> {
        let s = v.len().div_ceil(2048).max(1);
        v.iter().step_by(s).copied().collect()
    };
    let (w, h) = (ctx.width as usize, ctx.height as usize);
    let beta = contrast_beta(&cols3, w, h);
    let (mut data, mut data_in) = (f64::NAN, f64::NAN);
    if let (Some(fg), Some(bg)) = (Gmm::fit(&sub(&f), 5, 0), Gmm::fit(&sub(&b), 5, 0)) {
        let (mut s, mut si, mut ni) = (0.0, 0.0, 0u64);
        for (k, (c, &l)) in cols3.iter().zip(&lab).enumerate() {
            let (x, y) = ((k % w) as u32 + ctx.x, (k / w) as u32 + ctx.y);
            let d = if l {
                fg.neg_log_likelihood(c) - bg.neg_log_likelihood(c)
            } else {
                bg.neg_log_likelihood(c) - fg.neg_log_likelihood(c)
            };
            s += d.clamp(-20.0, 20.0);
            if x >= bx && x < bx + bw && y >= by && y < by + bh {
                si += d.clamp(-20.0, 20.0);
                ni += 1;
            }
        }
        data = s / cols3.len() as f64;
        data_in = si / ni.max(1) as f64;
    }
    // Boundary: mean contrast weight exp(−β‖Δc‖²) over 4-neighbour label changes, and their count.
    let (mut edges, mut wsum) = (0u64, 0.0);
    for y in 0..h {
        for x in 0..w {
            let k = y * w + x;
            for (nx, ny) in [(x + 1, y), (x, y + 1)] {
                if nx < w && ny < h {
                    let q = ny * w + nx;
                    if lab[k] != lab[q] {
                        let d: f32 = (0..3).map(|i| (cols3[k][i] - cols3[q][i]).powi(2)).sum();
                        wsum += (-beta * f64::from(d)).exp();
                        edges += 1;
                    }
                }
            }
        }
    }
    json!({"keep": kept as f64 / roi.area() as f64, "rowcov": rowcov, "colcov": colcov,
           "sep": data, "sep_in": data_in, "bnd": wsum / edges.max(1) as f64,
           "perim": edges as f64 / (2.0 * f64::from(bw + bh))})
}

/// Background components inside the box that do not reach the box's border, filled.
fn fill_holes(m: &GrayImage, roi: pslg::cfpg::Roi) -> GrayImage {
    let (w, h) = (roi.width as usize, roi.height as usize);
    let mut outside = vec![false; w * h];
    let mut stack = Vec::new();
    let bg = |x: usize, y: usize| m.get_pixel(roi.x + x as u32, roi.y + y as u32)[0] == 0;
    for y in 0..h {
        for x in 0..w {
            if (x == 0 || y == 0 || x + 1 == w || y + 1 == h) && bg(x, y) {
                outside[y * w + x] = true;
                stack.push((x, y));
            }
        }
    }
    while let Some((x, y)) = stack.pop() {
        let n = [
            (x.wrapping_sub(1), y),
            (x + 1, y),
            (x, y.wrapping_sub(1)),
            (x, y + 1),
        ];
        for (nx, ny) in n {
            if nx < w && ny < h && !outside[ny * w + nx] && bg(nx, ny) {
                outside[ny * w + nx] = true;
                stack.push((nx, ny));
            }
        }
    }
    let mut out = m.clone();
    for y in 0..h {
        for x in 0..w {
            if !outside[y * w + x] {
                out.put_pixel(roi.x + x as u32, roi.y + y as u32, image::Luma([255]));
            }
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("CASES.jsonl")?;
    let cases = read_cases(path.as_ref())?;
    let base = BoxSegmenterParams {
        min_span: 0.0,
        retry_gamma: None,
        abandon_below: 0.0,
        ..Default::default()
    };
    let mbo = |f: &dyn Fn(&mut MboParams)| {
        let mut m = BoxSegmenterParams::default().mbo.unwrap_or_default();
        f(&mut m);
        Some(m)
    };
    // The default box path's two MBO attempts, and the 8-connected pair they replaced (docs/quality.md). Edit
    // this list to compare other settings; every entry runs without the tightness test.
    let eight = |m: &mut MboParams, gamma: f64| {
        m.gamma = gamma;
        m.eight_connected = true;
    };
    let configs: Vec<(&str, BoxSegmenterParams)> = vec![
        ("first", base.clone()),
        (
            "retry",
            BoxSegmenterParams {
                mbo: mbo(&|m| m.gamma = 6.0),
                ..base.clone()
            },
        ),
        (
            "first8",
            BoxSegmenterParams {
                mbo: mbo(&|m| eight(m, 15.0)),
                ..base.clone()
            },
        ),
        (
            "retry8",
            BoxSegmenterParams {
                mbo: mbo(&|m| eight(m, 6.0)),
                ..base.clone()
            },
        ),
    ];
    let segs: Vec<(&str, BoxSegmenter)> = configs
        .into_iter()
        .map(|(n, p)| Ok((n, BoxSegmenter::new(p)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut last: Option<(std::path::PathBuf, RgbImage)> = None;
    for c in &cases {
        if last.as_ref().is_none_or(|(p, _)| p != &c.image) {
            last = Some((c.image.clone(), load_rgb(&c.image)?));
        }
        let Some((_, img)) = &last else {
            unreachable!()
        };
        let gt = load_mask(c.mask.as_ref().context("mask")?)?;
        let bbox = c.bbox.context("box")?;
        let mut out = serde_json::Map::new();
        let mut roi0 = None;
        for (name, seg) in &segs {
            let t = std::time::Instant::now();
            let r = seg.segment(img, bbox)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let roi = r.roi;
            let margin = seg.context_margin(roi.width.max(roi.height));
            let ctx = {
                let (x0, y0) = (roi.x.saturating_sub(margin), roi.y.saturating_sub(margin));
                let x1 = (roi.x + roi.width + margin).min(img.width());
                let y1 = (roi.y + roi.height + margin).min(img.height());
                pslg::cfpg::Roi {
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                }
            };
            if roi0.is_none() {
                let mut bm = GrayImage::new(img.width(), img.height());
                for y in roi.y..roi.y + roi.height {
                    for x in roi.x..roi.x + roi.width {
                        bm.put_pixel(x, y, image::Luma([255]));
                    }
                }
                let (i, u) = iou(&bm, &gt);
                let mut fe = features(img, &bm, roi, ctx);
                fe["i"] = json!(i);
                fe["u"] = json!(u);
                out.insert("box".into(), fe);
                roi0 = Some(roi);
            }
            let (i, u) = iou(&r.mask, &gt);
            let mut fe = features(img, &r.mask, roi, ctx);
            fe["i"] = json!(i);
            fe["u"] = json!(u);
            fe["ms"] = json!(ms);
            let filled = fill_holes(&r.mask, roi);
            let (fi, fu) = iou(&filled, &gt);
            fe["fi"] = json!(fi);
            fe["fu"] = json!(fu);
            fe["iters"] = json!(r.refinement.as_ref().map(|x| x.iterations));
            out.insert((*name).into(), fe);
        }
        let roi = roi0.context("roi")?;
        println!(
            "{}",
            json!({"id": c.id, "image": c.image.file_name().map(|s| s.to_string_lossy().to_string()),
                   "category": c.category, "area": roi.area(), "w": roi.width, "h": roi.height, "c": out})
        );
    }
    Ok(())
}
