//! The pipeline end to end on the committed random-weight fixtures: sentence → LQVG box → CFPG → SAM → MBO.

use burn_ndarray::NdArray;
use pslg::grounding::{Grounder, Lqvg, TextConfig, toy_tokenizer};
use pslg::sam::Sam;
use pslg::{Pipeline, PslgError, SamSegmenterParams, pixel_box};
use std::path::Path;

type B = NdArray<f32>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn grounder() -> Grounder<B> {
    let fx = root().join("crates/grounding/tests/fixtures/lqvg-tiny");
    let text = TextConfig::from_hf_json(fx.join("text_config.json")).unwrap();
    let model =
        Lqvg::<B>::load(fx.join("checkpoint.pth"), text, None, &Default::default()).unwrap();
    // The tiny fixture's vocabulary (99 ids) has no tokenizer; a word-level one whose ids fit serves here.
    Grounder::new(model, Some(toy_tokenizer().unwrap()), Default::default()).with_input_size(128)
}

/// The committed random-weight SAM (2 decoder heads).
fn tiny_sam() -> Sam<B> {
    Sam::<B>::load(
        root().join("crates/sam/tests/fixtures/tiny/sam.pth"),
        Some(2),
        &Default::default(),
    )
    .unwrap()
}

fn scene() -> image::RgbImage {
    image::RgbImage::from_fn(96, 72, |x, y| {
        let d = (x as f64 - 40.0).powi(2) + (y as f64 - 30.0).powi(2);
        let n = ((x * 5 + y * 3) % 7) as u8;
        if d < 150.0 {
            image::Rgb([210, 200 + n, 70])
        } else {
            image::Rgb([50 + n, 90, 60])
        }
    })
}

#[test]
fn sentence_to_mask_with_every_intermediate() {
    let device = Default::default();
    let sam = tiny_sam();
    let image = scene();
    let reference = grounder().predict(&image, "the red square").unwrap();
    let mut p = Pipeline::<B>::builder(device)
        .grounding(grounder())
        .sam(sam, SamSegmenterParams::default())
        .build()
        .unwrap();
    assert!(matches!(
        p.segment_text(&image, "the red square"),
        Err(PslgError::Sam(pslg::sam::SamError::NoImage))
    ));
    p.set_image(&image).unwrap();
    // Another image than the encoded one is refused as what it is, not as "no image".
    let other = image::RgbImage::new(50, 40);
    let err = p.segment_text(&other, "the red square").unwrap_err();
    assert!(
        matches!(
            err,
            PslgError::Sam(pslg::sam::SamError::ImageMismatch {
                encoded: (96, 72),
                given: (50, 40)
            })
        ),
        "{err}"
    );
    assert!(matches!(
        p.segment_box(&other, pixel_box([1.0, 1.0, 20.0, 20.0], 50, 40)),
        Err(PslgError::Sam(pslg::sam::SamError::ImageMismatch { .. }))
    ));
    // One encoding serves several expressions.
    for text in ["the red square", "the blue circle"] {
        let out = p.segment_text(&image, text).unwrap();
        if text == "the red square" {
            // Same model and input; burn-ndarray may sum in another order (~1e-5 relative).
            assert_eq!(out.grounding.query, reference.query);
            for (a, b) in out.grounding.box_xyxy.iter().zip(reference.box_xyxy) {
                assert!((a - b).abs() < 1e-2, "{a} vs {b}");
            }
        }
        assert_eq!(out.bbox, pixel_box(out.grounding.box_xyxy, 96, 72));
        let b = out.bbox;
        assert!(b.x1 >= 0 && b.y1 >= 0 && b.x2 <= 96 && b.y2 <= 72 && b.x2 > b.x1 && b.y2 > b.y1);
        let sam = out.mask.sam.as_ref().expect("SAM ran");
        assert_eq!(sam.iou.len(), 1);
        assert_eq!(out.mask.mask.dimensions(), (96, 72));
        for (x, y, v) in out.mask.mask.enumerate_pixels() {
            if v[0] != 0 {
                let (x, y) = (i64::from(x), i64::from(y));
                assert!(
                    x >= b.x1 && x < b.x2 && y >= b.y1 && y < b.y2,
                    "mask outside the box"
                );
            }
        }
    }
    assert!(matches!(
        p.segment_text(&image, "   "),
        Err(PslgError::Grounding(_))
    ));
}

#[test]
fn box_path_without_models_and_errors_without_grounding() {
    let mut p = Pipeline::<B>::builder(Default::default()).build().unwrap();
    let image = scene();
    p.set_image(&image).unwrap();
    let m = p
        .segment_box(&image, pslg::cfpg::PixelBox::new(26, 16, 55, 45))
        .unwrap();
    assert!(m.sam.is_none());
    assert!(m.mask.pixels().any(|v| v[0] != 0));
    assert!(matches!(
        p.segment_text(&image, "the disc"),
        Err(PslgError::NoGrounding)
    ));
    assert_eq!(
        pixel_box([10.2, 5.7, 30.1, 20.0], 96, 72),
        pslg::cfpg::PixelBox::new(10, 5, 31, 20)
    );
    assert_eq!(
        pixel_box([-5.0, -3.0, 500.0, 80.0], 96, 72),
        pslg::cfpg::PixelBox::new(0, 0, 96, 72)
    );
    assert_eq!(
        pixel_box([f32::NAN, 0.0, 1.0, 1.0], 96, 72),
        pslg::cfpg::PixelBox::new(0, 0, 0, 0)
    );
}

/// `max_mbo_box_pixels` applies to the SAM path as to the box path: MBO runs on the same downscaled crop.
#[test]
fn sam_path_refines_large_boxes_downscaled_like_the_box_path() {
    use pslg::cfpg::PixelBox;
    use pslg::{BoxSegmenter, BoxSegmenterParams, SamSegmenter};
    let device = Default::default();
    let sam = tiny_sam();
    let stages = BoxSegmenter::new(BoxSegmenterParams {
        max_mbo_box_pixels: 200,
        ..Default::default()
    })
    .unwrap();
    let image = scene();
    let b = PixelBox::new(20, 10, 60, 50);
    let box_path = stages.segment(&image, b).unwrap();
    let mut s = SamSegmenter::new(sam, device, stages, SamSegmenterParams::default());
    s.set_image(&image).unwrap();
    let out = s.segment(&image, b).unwrap();
    let (want, got) = (
        box_path.refinement.unwrap().mask.dimensions(),
        out.refinement.unwrap().mask.dimensions(),
    );
    assert!(want.0 < 40, "the box path downscales: {want:?}");
    assert_eq!(
        got, want,
        "the SAM path refines on the same downscaled crop"
    );
    assert_eq!(out.mask.dimensions(), image.dimensions());
}

/// The ablation grid decodes each distinct SAM prompt once (two: the box alone, the box and the CFPG point;
/// one when CFPG falls back), runs CFPG once, and gives each cell what segmenting it alone gives.
#[test]
fn ablation_cells_share_the_cfpg_point_and_the_sam_decodes() {
    use pslg::cfpg::PixelBox;
    use pslg::{BoxSegmenter, BoxSegmenterParams, SamSegmenter};
    let device = Default::default();
    let base = BoxSegmenterParams::default();
    let cells: Vec<BoxSegmenter> = [(false, false), (true, false), (false, true), (true, true)]
        .iter()
        .map(|&(cfpg, mbo)| {
            BoxSegmenter::new(BoxSegmenterParams {
                cfpg: base.cfpg.clone().filter(|_| cfpg),
                mbo: base.mbo.clone().filter(|_| mbo),
                ..base.clone()
            })
            .unwrap()
        })
        .collect();
    let image = scene();
    let b = PixelBox::new(20, 10, 60, 50);
    let mut s = SamSegmenter::new(
        tiny_sam(),
        device,
        BoxSegmenter::new(base).unwrap(),
        SamSegmenterParams::default(),
    );
    s.set_image(&image).unwrap();
    let grid = s.segment_cells(&image, b, &cells);
    let shared = s.decodes();
    let alone: Vec<_> = cells
        .iter()
        .map(|c| s.segment_with(&image, b, c).unwrap())
        .collect();
    assert_eq!(s.decodes() - shared, 4, "one decode per cell alone");
    let fallback = alone[1].point.as_ref().is_some_and(|p| p.is_fallback());
    assert_eq!(
        shared,
        if fallback { 1 } else { 2 },
        "distinct prompts only"
    );
    assert_eq!(grid.len(), 4);
    for (g, a) in grid.into_iter().zip(&alone) {
        let g = g.unwrap();
        assert_eq!(g.mask, a.mask);
        assert_eq!(g.point, a.point);
        assert_eq!(g.collapsed, a.collapsed);
        assert_eq!(
            g.sam.map(|p| p.masks),
            a.sam.as_ref().map(|p| p.masks.clone())
        );
    }
    assert!(alone[0].point.is_none() && alone[1].point.is_some());

    // The weight-free path: the same masks as each cell alone.
    let grid = BoxSegmenter::segment_cells(&image, b, &cells);
    for (g, c) in grid.into_iter().zip(&cells) {
        let (g, a) = (g.unwrap(), c.segment(&image, b).unwrap());
        assert_eq!((g.mask, g.point), (a.mask, a.point));
    }
    // A bad box is an error in every cell, not a panic.
    let bad = s.segment_cells(&image, PixelBox::new(5, 5, 5, 9), &cells);
    assert!(bad.iter().all(|r| r.is_err()));
}
