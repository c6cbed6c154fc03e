//! Quality bar on the real box → mask development set (`../shared/data/boxmask-dev`, not shipped with the
//! repository). Skips with a message when the data is absent, and fails instead when `PSLG_REQUIRE_DEVSET=1`
//! (CI sets it).
//!
//! The bar: the weight-free path beats both the box itself (mIoU 56.39, oIoU 57.64, Pr@0.5 57.18,
//! Pr@0.9 3.72) and OpenCV's grabCut (mIoU 41.73, oIoU 62.04, Pr@0.5 46.81, Pr@0.9 12.77), keeps the level
//! of the cross-validated defaults on the whole set and on both halves, beats grabCut on the largest
//! objects, and keeps every category near the box (docs/quality.md).

use pslg::io::{load_mask, load_rgb};
use pslg::metrics::{Accumulator, MaskStats, mask_stats, mask_stats_by};
use pslg::{BoxSegmenter, BoxSegmenterParams};
use pslg_datasets::cases::read_cases;
use std::path::PathBuf;

fn dev_set() -> Option<PathBuf> {
    let p = std::env::var_os("PSLG_BOXMASK_DEV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/boxmask-dev")
        });
    p.join("cases.jsonl").exists().then_some(p)
}

/// Per-case result: the image, the category, the box's area and the stats of pslg and of the box itself.
struct Scored {
    image: PathBuf,
    category: String,
    area: usize,
    pslg: MaskStats,
    boxed: MaskStats,
}

/// mIoU and oIoU (percent) of `pick` over `cases`.
fn miou_oiou(cases: &[&Scored], pick: impl Fn(&Scored) -> MaskStats) -> (f64, f64) {
    let mut acc = Accumulator::new();
    for c in cases {
        acc.add(pick(c), None);
    }
    let s = acc.summary();
    (100.0 * s.miou, 100.0 * s.oiou)
}

#[test]
fn weight_free_path_beats_box_and_opencv_on_the_dev_set() {
    let Some(root) = dev_set() else {
        assert!(
            std::env::var("PSLG_REQUIRE_DEVSET").as_deref() != Ok("1"),
            "PSLG_REQUIRE_DEVSET=1 but ../shared/data/boxmask-dev/cases.jsonl is absent (set PSLG_BOXMASK_DEV)"
        );
        eprintln!(
            "SKIPPED: ../shared/data/boxmask-dev not found (set PSLG_BOXMASK_DEV to its folder)"
        );
        return;
    };
    let cases = read_cases(&root.join("cases.jsonl")).unwrap();
    let seg = BoxSegmenter::new(BoxSegmenterParams::default()).unwrap();
    let mut acc = Accumulator::new();
    let mut scored = Vec::new();
    let mut last: Option<(PathBuf, image::RgbImage)> = None;
    for c in &cases {
        if last.as_ref().is_none_or(|(p, _)| p != &c.image) {
            last = Some((c.image.clone(), load_rgb(&c.image).unwrap()));
        }
        let Some((_, image)) = &last else {
            unreachable!()
        };
        let out = seg
            .segment(image, c.bbox.expect("dev cases have boxes"))
            .unwrap();
        let gt = load_mask(c.mask.as_ref().unwrap()).unwrap();
        let stats =
            mask_stats_by(out.mask.as_raw(), gt.as_raw(), |&v| v != 0, |&v| v != 0).unwrap();
        let r = out.roi;
        let in_box = |i: usize| {
            let (x, y) = (
                (i % gt.width() as usize) as u32,
                (i / gt.width() as usize) as u32,
            );
            r.contains(x, y)
        };
        let boxed = mask_stats(
            &(0..gt.as_raw().len()).map(in_box).collect::<Vec<_>>(),
            &gt.as_raw().iter().map(|&v| v != 0).collect::<Vec<_>>(),
        )
        .unwrap();
        acc.add(stats, c.category.as_deref());
        scored.push(Scored {
            image: c.image.clone(),
            category: c.category.clone().unwrap_or_default(),
            area: r.area(),
            pslg: stats,
            boxed,
        });
    }
    let s = acc.summary();
    let (miou, oiou) = (100.0 * s.miou, 100.0 * s.oiou);
    let (p5, p9) = (
        100.0 * s.precision_at(0.5).unwrap(),
        100.0 * s.precision_at(0.9).unwrap(),
    );
    eprintln!(
        "dev set: n {} mIoU {miou:.2} oIoU {oiou:.2} Pr@0.5 {p5:.2} Pr@0.9 {p9:.2}",
        s.n
    );
    assert_eq!(s.n, 376);
    // The reference rows: the box (56.39 / 57.64 / 57.18 / 3.72) and OpenCV's grabCut
    // (41.73 / 62.04 / 46.81 / 12.77), beaten on all four.
    assert!(p5 > 57.18, "Pr@0.5 {p5:.2} does not beat the box (57.18)");
    assert!(p9 > 12.77, "Pr@0.9 {p9:.2} does not beat OpenCV (12.77)");
    // The level reached by the cross-validated defaults (docs/quality.md: 71.80 / 75.52).
    assert!(miou >= 71.5, "mIoU {miou:.2} fell below 71.5");
    assert!(oiou >= 75.2, "oIoU {oiou:.2} fell below 75.2");

    // Both halves of the image split used for cross-validation (sorted image names, alternately).
    let mut images: Vec<&PathBuf> = scored.iter().map(|c| &c.image).collect();
    images.sort();
    images.dedup();
    for half in 0..2 {
        let part: Vec<&Scored> = scored
            .iter()
            .filter(|c| images.binary_search(&&c.image).unwrap_or(0) % 2 == half)
            .collect();
        let (m, o) = miou_oiou(&part, |c| c.pslg);
        eprintln!("half {half}: n {} mIoU {m:.2} oIoU {o:.2}", part.len());
        // docs/quality.md: 71.10 / 75.25 and 72.99 / 75.81; issue 19's goals are 70 / 72.
        assert!(
            m >= 70.8 && o >= 75.0,
            "half {half}: mIoU {m:.2} / oIoU {o:.2}"
        );
    }

    // Large objects: the largest box-area quartile beats grabCut's oIoU there (71.28).
    let mut areas: Vec<usize> = scored.iter().map(|c| c.area).collect();
    areas.sort_unstable();
    let q3 = areas[areas.len() * 3 / 4];
    let large: Vec<&Scored> = scored.iter().filter(|c| c.area >= q3).collect();
    let (_, large_oiou) = miou_oiou(&large, |c| c.pslg);
    eprintln!("largest quartile: n {} oIoU {large_oiou:.2}", large.len());
    assert!(large_oiou > 71.28, "largest-quartile oIoU {large_oiou:.2}");

    // No category more than 2 mIoU points below the box (docs/quality.md: the closest on the whole set,
    // bridges, 53.96 against 54.08).
    let mut categories: Vec<&str> = scored.iter().map(|c| c.category.as_str()).collect();
    categories.sort_unstable();
    categories.dedup();
    for cat in categories {
        let part: Vec<&Scored> = scored.iter().filter(|c| c.category == cat).collect();
        let (m, _) = miou_oiou(&part, |c| c.pslg);
        let (b, _) = miou_oiou(&part, |c| c.boxed);
        eprintln!("{cat}: mIoU {m:.2}, box {b:.2}");
        assert!(m >= b - 2.0, "{cat}: mIoU {m:.2} vs the box {b:.2}");
    }
}
