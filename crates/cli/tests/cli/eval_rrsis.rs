//! `pslg eval-rrsis` end to end on a generated RefCOCO-layout dataset (random-weight grounding and SAM
//! fixtures), and on a RefCOCO-layout copy of the real box → mask dev set against `pslg batch` + `pslg eval`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pslg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pslg"))
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn grounding_args(d: &Path) -> Vec<std::ffi::OsString> {
    pslg::grounding::toy_tokenizer()
        .unwrap()
        .save(d.join("tokenizer.json"))
        .unwrap();
    let fx = root().join("crates/grounding/tests/fixtures/lqvg-tiny");
    vec![
        "--grounding".into(),
        fx.join("checkpoint.pth").into(),
        "--tokenizer".into(),
        d.join("tokenizer.json").into(),
        "--text-config".into(),
        fx.join("text_config.json").into(),
        "--grounding-input-size".into(),
        "128".into(),
    ]
}

fn sam_args() -> Vec<std::ffi::OsString> {
    vec![
        "--sam".into(),
        root().join("crates/sam/tests/fixtures/tiny/sam.pth").into(),
        "--sam-decoder-heads".into(),
        "2".into(),
    ]
}

#[test]
fn gt_box_ablation_and_protocols_on_a_generated_dataset() {
    let d = common::tmp("eval-gt");
    let counts = common::write_dataset(&d, 10, 96, 72, 1);
    let base = || {
        let mut c = pslg();
        c.args(["eval-rrsis", "--root"])
            .arg(&d)
            .args(["--split", "test", "--gt-box"]);
        c
    };
    let full = json_lines(&ok(base().output().unwrap()));
    assert_eq!(full.len(), 1);
    let full = &full[0];
    assert_eq!(full["n"], counts.test as u64);
    for k in [
        "mIoU", "oIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9",
    ] {
        assert!(full[k].is_number(), "{k} missing in {full}");
    }
    let cats = full["per_category"].as_object().unwrap();
    assert!(
        cats.contains_key("storage tank") && cats.contains_key("vehicle"),
        "{full}"
    );
    // Clean synthetic shapes from their own boxes: the weight-free path is nearly exact.
    assert!(full["mIoU"].as_f64().unwrap() > 80.0, "{full}");

    let grid = json_lines(&ok(base().arg("--ablation").output().unwrap()));
    assert_eq!(grid.len(), 4);
    let cell = |cfpg: bool, mbo: bool| {
        grid.iter()
            .find(|j| j["cfpg"] == cfpg && j["mbo"] == mbo)
            .unwrap()
            .clone()
    };
    // The full cell of the grid is the plain run; without MBO and CFPG the mask is the box.
    let mut full_cell = cell(true, true);
    full_cell.as_object_mut().unwrap().remove("cfpg");
    full_cell.as_object_mut().unwrap().remove("mbo");
    assert_eq!(&full_cell, full);
    let boxes = cell(false, false);
    assert!(
        boxes["mIoU"].as_f64() < full["mIoU"].as_f64(),
        "{boxes} vs {full}"
    );
    // Rectangles fill their box: the box alone scores 100 on them.
    assert!(boxes["per_category"]["vehicle"]["mIoU"].as_f64().unwrap() > 99.0);

    // RMSIN's protocol resizes to 480x480 first: same samples, other numbers.
    let r480 = json_lines(&ok(base().args(["--protocol", "480"]).output().unwrap()));
    assert_eq!(r480[0]["n"], full["n"]);
    assert!((r480[0]["mIoU"].as_f64().unwrap() - full["mIoU"].as_f64().unwrap()).abs() < 5.0);
    let bad = base().args(["--protocol", "big"]).output().unwrap();
    assert!(!bad.status.success());

    let table = ok(base().args(["--ablation", "--table"]).output().unwrap());
    assert!(
        table.contains("cfpg+mbo") && table.contains("Pr@0.9"),
        "{table}"
    );
}

#[test]
fn sentences_through_grounding_and_sam_resume_from_the_results_file() {
    let d = common::tmp("eval-text");
    let counts = common::write_dataset(&d, 10, 96, 72, 2);
    let out_file = d.join("results.jsonl");
    let run = |extra: &[&str]| {
        pslg()
            .args(["eval-rrsis", "--root"])
            .arg(&d)
            .args(["--split", "test"])
            .args(grounding_args(&d))
            .args(sam_args())
            .arg("--out")
            .arg(&out_file)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = json_lines(&ok(run(&["--ablation"])));
    assert_eq!(first.len(), 4);
    for j in &first {
        assert_eq!(j["n"], counts.test as u64);
        assert!(j["box_Pr@0.5"].is_number(), "{j}");
    }
    // The file: settings header, one record per sample with the box and four [I, U] pairs, a summary.
    let text = std::fs::read_to_string(&out_file).unwrap();
    let lines: Vec<serde_json::Value> = json_lines(&text);
    assert!(lines[0]["settings"].is_object());
    let records: Vec<_> = lines.iter().filter(|l| l.get("id").is_some()).collect();
    assert_eq!(records.len(), counts.test);
    for r in &records {
        assert_eq!(r["stats"].as_array().unwrap().len(), 4);
        assert!(r["bbox"].is_array() && r["score"].is_number());
    }
    assert!(lines.last().unwrap()["summary"].is_object());

    // Interrupted run: drop the summary and the last two records, truncate the last one mid-line.
    let keep: Vec<&str> = text.lines().take(lines.len() - 3).collect();
    let mut cut = keep.join("\n");
    cut.push_str("\n{\"id\": \"tru");
    std::fs::write(&out_file, cut).unwrap();
    let out = run(&["--ablation"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let resumed = json_lines(&ok(out));
    assert!(stderr.contains("resuming"), "{stderr}");
    // Same model, same data: the resumed totals equal the first run's (the grounding forward may differ in
    // the last float bits between runs; the boxes are whole pixels).
    assert_eq!(resumed, first);
    let lines = json_lines(&std::fs::read_to_string(&out_file).unwrap());
    assert_eq!(
        lines.iter().filter(|l| l.get("id").is_some()).count(),
        counts.test
    );

    // Other settings on the same file are refused, naming what to do.
    let out = run(&[]);
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("other settings"), "{msg}");

    // Without --gt-box a grounding model is required.
    let out = pslg()
        .args(["eval-rrsis", "--root"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn bad_datasets_are_error_messages() {
    let d = common::tmp("eval-bad");
    // eval-rrsis --gt-box on `d` fails; its message.
    let failure = |d: &std::path::Path| {
        let out = pslg()
            .args(["eval-rrsis", "--gt-box", "--root"])
            .arg(d)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let msg = failure(&d);
    assert!(msg.contains("refs(unc).p"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    // A mask of another size than its image names the record.
    common::write_dataset(&d, 5, 96, 72, 3);
    image::RgbImage::new(40, 30)
        .save(d.join("JPEGImages/img_004.png"))
        .unwrap();
    let msg = failure(&d);
    assert!(
        msg.contains("img_004.png") && msg.contains("the mask is"),
        "{msg}"
    );
}

/// The real dev set as a RefCOCO-layout dataset (masks as RLE, one sentence = the category per case):
/// `eval-rrsis --gt-box` must give exactly what `batch` + `eval` give on the same (tight) boxes.
#[test]
fn gt_box_matches_batch_and_eval_on_real_images() {
    let dev = root().join("../shared/data/boxmask-dev");
    if !dev.join("cases.jsonl").is_file() {
        assert!(
            std::env::var("PSLG_REQUIRE_DEVSET").as_deref() != Ok("1"),
            "PSLG_REQUIRE_DEVSET=1 but {} is absent",
            dev.display()
        );
        eprintln!("skipping: {} is absent", dev.display());
        return;
    }
    let d = common::tmp("eval-real");
    let cases = pslg_datasets::cases::read_cases(&dev.join("cases.jsonl")).unwrap();
    std::fs::create_dir_all(d.join("JPEGImages")).unwrap();
    let mut images: Vec<PathBuf> = cases.iter().map(|c| c.image.clone()).collect();
    images.sort();
    images.dedup();
    let mut image_json = Vec::new();
    for (i, p) in images.iter().enumerate() {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        std::fs::copy(p, d.join("JPEGImages").join(&name)).unwrap();
        let (w, h) = image::image_dimensions(p).unwrap();
        image_json.push(serde_json::json!({"id": i, "file_name": name, "width": w, "height": h}));
    }
    let mut cats: Vec<String> = cases.iter().filter_map(|c| c.category.clone()).collect();
    cats.sort();
    cats.dedup();
    let (mut anns, mut refs) = (Vec::new(), Vec::new());
    for (k, c) in cases.iter().enumerate() {
        let m = image::open(c.mask.as_ref().unwrap()).unwrap().to_luma8();
        let (w, h) = m.dimensions();
        let mut counts = Vec::new();
        let (mut cur, mut run) = (false, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = m.get_pixel(x, y)[0] != 0;
                if v != cur {
                    counts.push(run);
                    (run, cur) = (0, v);
                }
                run += 1;
            }
        }
        counts.push(run);
        let image_id = images.iter().position(|p| p == &c.image).unwrap();
        let cat = c.category.clone().unwrap();
        let cat_id = cats.iter().position(|x| x == &cat).unwrap() as i64 + 1;
        anns.push(
            serde_json::json!({"id": k, "image_id": image_id, "category_id": cat_id,
            "segmentation": {"size": [h, w], "counts": counts}}),
        );
        refs.push(serde_json::json!({"ref_id": k, "ann_id": k, "image_id": image_id, "split": "test",
            "category_id": cat_id, "sent_ids": [k], "file_name": "",
            "sentences": [{"raw": format!("the {cat}"), "sent": format!("the {cat}"), "sent_id": k}]}));
    }
    let categories: Vec<_> = cats
        .iter()
        .enumerate()
        .map(|(i, n)| serde_json::json!({"id": i + 1, "name": n}))
        .collect();
    std::fs::write(
        d.join("instances.json"),
        serde_json::json!({"images": image_json, "annotations": anns, "categories": categories})
            .to_string(),
    )
    .unwrap();
    let mut f = std::fs::File::create(d.join("refs(unc).p")).unwrap();
    serde_pickle::to_writer(&mut f, &refs, serde_pickle::SerOptions::new()).unwrap();
    drop(f);

    let rrsis = json_lines(&ok(pslg()
        .args(["eval-rrsis", "--gt-box", "--root"])
        .arg(&d)
        .output()
        .unwrap()));
    ok(pslg()
        .args(["batch", "--cases"])
        .arg(dev.join("cases.jsonl"))
        .arg("--out-dir")
        .arg(d.join("pred"))
        .output()
        .unwrap());
    let eval = json_lines(&ok(pslg()
        .args(["eval", "--cases"])
        .arg(dev.join("cases.jsonl"))
        .arg("--pred-dir")
        .arg(d.join("pred"))
        .output()
        .unwrap()));
    assert_eq!(rrsis[0]["n"], cases.len() as u64);
    assert_eq!(rrsis, eval);
}
