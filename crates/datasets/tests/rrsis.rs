//! RRSIS readers on datasets the tests write, and COCO mask decoding against pycocotools
//! (`scripts/coco_masks_reference.py` wrote `tests/fixtures/coco_masks.json`).

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::{Ref, sent};
use pslg_datasets::DatasetError;
use pslg_datasets::rrsis::{
    MaskSource, RleError, Segmentation, read_refcoco, read_refsegrs, rle_from_string,
};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-rrsis-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn coco_masks_match_pycocotools() {
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/coco_masks.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (i, c) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (
            c["height"].as_u64().unwrap() as u32,
            c["width"].as_u64().unwrap() as u32,
        );
        let polys: Vec<Vec<f64>> = c["polygons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let want: Vec<Vec<bool>> = c["mask_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().chars().map(|ch| ch == '1').collect())
            .collect();
        let check = |m: &image::GrayImage, what: &str| {
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(
                        m.get_pixel(x, y)[0] == 255,
                        want[y as usize][x as usize],
                        "case {i} {what}: pixel ({x},{y})"
                    );
                }
            }
        };
        check(
            &Segmentation::Polygons(polys).to_mask(w, h).unwrap(),
            "polygons",
        );
        let counts = rle_from_string(c["rle_string"].as_str().unwrap()).unwrap();
        let rle = Segmentation::Rle {
            counts: counts.clone(),
            height: h,
            width: w,
        };
        check(&rle.to_mask(w, h).unwrap(), "compressed RLE");
        assert_eq!(
            rle.to_mask(w + 1, h),
            Err(RleError::Size {
                rle: (w, h),
                image: (w + 1, h)
            })
        );
    }
    assert_eq!(
        rle_from_string("\u{7f}"),
        Err(RleError::Character('\u{7f}'))
    );
    assert_eq!(rle_from_string("0P"), Err(RleError::Truncated));
}

fn write_refcoco(root: &Path, refs: &[Ref]) {
    let mut f = std::fs::File::create(root.join("refs(unc).p")).unwrap();
    serde_pickle::to_writer(&mut f, &refs, serde_pickle::SerOptions::new()).unwrap();
    let inst = serde_json::json!({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 6, "height": 4}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "segmentation": [[1.0, 1.0, 4.0, 1.0, 4.0, 3.0, 1.0, 3.0]]},
            {"id": 11, "image_id": 1, "category_id": 3, "segmentation": {"size": [4, 6], "counts": [5, 3, 16]}}
        ],
        "categories": [{"id": 3, "name": "vehicle"}]
    });
    std::fs::write(root.join("instances.json"), inst.to_string()).unwrap();
}

#[test]
fn refcoco_layout_every_sentence_is_a_sample() {
    let root = tmp("refcoco");
    let refs = vec![
        Ref {
            sent_ids: vec![100, 101],
            file_name: "a_10.jpg".into(),
            ann_id: 10,
            ref_id: 0,
            image_id: 1,
            split: "test".into(),
            sentences: vec![sent(100, "The car, on the left"), sent(101, "left vehicle")],
            category_id: 3,
        },
        Ref {
            sent_ids: vec![102],
            file_name: "a_11.jpg".into(),
            ann_id: 11,
            ref_id: 1,
            image_id: 1,
            split: "train".into(),
            sentences: vec![sent(102, "the other one")],
            category_id: 3,
        },
    ];
    write_refcoco(&root, &refs);
    let test = read_refcoco(&root, "refs(unc).p", "test").unwrap();
    assert_eq!(test.len(), 2);
    assert_eq!(test[0].id, "0:100");
    assert_eq!(test[0].text, "The car, on the left");
    assert_eq!(test[0].image, root.join("JPEGImages/a.jpg"));
    assert_eq!(test[0].category.as_deref(), Some("vehicle"));
    let m = test[0].mask().unwrap();
    assert_eq!(m.dimensions(), (6, 4));
    assert!(m.pixels().any(|p| p[0] == 255));
    let train = read_refcoco(&root, "refs(unc).p", "train").unwrap();
    assert_eq!(train.len(), 1);
    // Uncompressed RLE [5 bg, 3 fg, 16 bg] column-major (4 rows): pixels 5..8 = column 1, rows 1..3.
    let m = train[0].mask().unwrap();
    let fg: Vec<(u32, u32)> = m
        .enumerate_pixels()
        .filter(|p| p.2[0] == 255)
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(fg, vec![(1, 1), (1, 2), (1, 3)]);
    assert!(matches!(train[0].target, MaskSource::Coco { .. }));

    // A reference whose annotation is missing names the reference.
    let mut bad = refs;
    bad[0].ann_id = 99;
    write_refcoco(&root, &bad);
    match read_refcoco(&root, "refs(unc).p", "test") {
        Err(DatasetError::Dataset { record, .. }) => assert!(record.contains("ref 0"), "{record}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(root.join("refs(unc).p"), b"not a pickle").unwrap();
    assert!(matches!(
        read_refcoco(&root, "refs(unc).p", "test"),
        Err(DatasetError::Dataset { .. })
    ));
    assert!(matches!(
        read_refcoco(&root, "absent.p", "test"),
        Err(DatasetError::Dataset { .. })
    ));
}

#[test]
fn refsegrs_reads_phrases_and_mask_files() {
    let root = tmp("refsegrs");
    std::fs::create_dir_all(root.join("masks")).unwrap();
    std::fs::write(
        root.join("output_phrase_test.txt"),
        "7 the road next to the building\n\n8 a car\n",
    )
    .unwrap();
    let mut m = image::GrayImage::new(5, 4);
    m.put_pixel(2, 1, image::Luma([255]));
    m.save(root.join("masks/7.tif")).unwrap();
    let s = read_refsegrs(&root, "test").unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].text, "the road next to the building");
    assert_eq!(s[0].image, root.join("images/7.tif"));
    let mask = s[0].mask().unwrap();
    assert_eq!(mask.get_pixel(2, 1)[0], 255);
    assert_eq!(mask.pixels().filter(|p| p[0] == 255).count(), 1);
    assert!(matches!(s[1].mask(), Err(DatasetError::Dataset { .. })));
    std::fs::write(root.join("output_phrase_val.txt"), "9\n").unwrap();
    match read_refsegrs(&root, "val") {
        Err(DatasetError::Dataset { record, .. }) => assert_eq!(record, "line 1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn image_mask_pairs_with_sentences() {
    use pslg_datasets::rrsis::read_pairs;
    let root = tmp("pairs");
    std::fs::write(
        root.join("test.jsonl"),
        "{\"id\": \"p1\", \"image\": \"images/a.png\", \"mask\": \"masks/p1.png\", \"text\": \"the tank\", \"category\": \"storage tank\"}\n",
    )
    .unwrap();
    let s = read_pairs(&root, "test").unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].text, "the tank");
    assert_eq!(s[0].image, root.join("images/a.png"));
    assert_eq!(s[0].target, MaskSource::File(root.join("masks/p1.png")));
    std::fs::write(
        root.join("val.jsonl"),
        "{\"id\": \"p2\", \"image\": \"a.png\", \"text\": \"the tank\"}\n",
    )
    .unwrap();
    let err = read_pairs(&root, "val").unwrap_err().to_string();
    assert!(err.contains("p2") && err.contains("mask"), "{err}");
    assert!(matches!(
        read_pairs(&root, "train"),
        Err(DatasetError::ReadCases { .. })
    ));
}

#[test]
fn layouts_parse_by_name_and_refuse_others() {
    use pslg_datasets::rrsis::{Layout, UnknownLayout};
    for l in Layout::ALL {
        assert_eq!(l.name().parse::<Layout>(), Ok(l));
    }
    assert_eq!("coco".parse::<Layout>(), Err(UnknownLayout("coco".into())));
}
