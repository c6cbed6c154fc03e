//! End-to-end tests of the `pslg` binary on files the tests make (and the SpaceNet sample the repo ships).

use std::path::{Path, PathBuf};
use std::process::Command;

fn pslg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pslg"))
}

/// Runs `pslg` with `args`, asserts success, and parses its stdout as one JSON value.
fn run_json(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = pslg().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn disc_image(path: &Path) {
    image::RgbImage::from_fn(60, 50, |x, y| {
        let d = (x as f64 - 30.0).powi(2) + (y as f64 - 25.0).powi(2);
        let n = ((x * 3 + y * 7) % 9) as u8;
        if d < 100.0 {
            image::Rgb([220, 200 + n, 60])
        } else {
            image::Rgb([40 + n, 80, 50])
        }
    })
    .save(path)
    .unwrap();
}

#[test]
fn segment_writes_a_mask_of_the_image_size_and_an_overlay() {
    let d = tmp("segment");
    disc_image(&d.join("img.png"));
    let out = pslg()
        .args(["segment", "--image"])
        .arg(d.join("img.png"))
        .args(["--box", "19,14,41,36", "--out"])
        .arg(d.join("mask.png"))
        .arg("--overlay")
        .arg(d.join("overlay.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mask written to"), "{stdout}");
    // The choice is explained: which MBO attempt (or the box) and the coverage it reached.
    assert!(
        stdout.contains("mask: MBO attempt 1 (γ 30 spans"),
        "{stdout}"
    );
    let m = image::open(d.join("mask.png")).unwrap().to_luma8();
    assert_eq!(m.dimensions(), (60, 50));
    assert!(m.pixels().all(|p| p[0] == 0 || p[0] == 255));
    assert_eq!(m.get_pixel(30, 25)[0], 255);
    assert_eq!(m.get_pixel(20, 15)[0], 0);
    assert!(d.join("overlay.png").exists());
}

#[test]
fn out_of_range_chooser_flags_are_errors() {
    let d = tmp("badflags");
    disc_image(&d.join("img.png"));
    for (flag, value, needle) in [
        ("--min-span", "1.5", "min_span"),
        ("--retry-gamma", "-3", "retry_gamma"),
        ("--gamma", "NaN", "gamma"),
    ] {
        let out = pslg()
            .args(["segment", "--image"])
            .arg(d.join("img.png"))
            .args(["--box", "19,14,41,36", "--out"])
            .arg(d.join("mask.png"))
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(stderr.contains(needle), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_input_is_an_error_message_not_a_panic() {
    let d = tmp("bad");
    disc_image(&d.join("img.png"));
    std::fs::write(d.join("junk.png"), b"junk").unwrap();
    for (image, bbox, needle) in [
        ("img.png", "5,5,5,9", "empty or inverted"),
        ("img.png", "100,100,200,200", "outside"),
        ("img.png", "1,2,3", "x1,y1,x2,y2"),
        ("junk.png", "1,2,3,4", "cannot read image"),
        ("missing.png", "1,2,3,4", "cannot read image"),
    ] {
        let out = pslg()
            .args(["segment", "--image"])
            .arg(d.join(image))
            .args(["--box", bbox, "--out"])
            .arg(d.join("m.png"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(needle), "{image} {bbox}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    for (tile, needle) in [
        (
            ["--tile", "64", "--overlap", "64"],
            "must be smaller than the tile size 64",
        ),
        (["--tile", "0", "--overlap", "0"], "tile size"),
    ] {
        let out = pslg()
            .args(["segment", "--image"])
            .arg(d.join("img.png"))
            .args(["--box", "10,10,30,30", "--out"])
            .arg(d.join("m.png"))
            .args(tile)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(needle), "{tile:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn batch_then_eval_round_trip() {
    let d = tmp("batch");
    std::fs::create_dir_all(d.join("images")).unwrap();
    std::fs::create_dir_all(d.join("masks")).unwrap();
    disc_image(&d.join("images/a.png"));
    let gt = image::GrayImage::from_fn(60, 50, |x, y| {
        image::Luma([
            if (x as f64 - 30.0).powi(2) + (y as f64 - 25.0).powi(2) < 100.0 {
                255
            } else {
                0
            },
        ])
    });
    gt.save(d.join("masks/a.png")).unwrap();
    std::fs::write(
        d.join("cases.jsonl"),
        "{\"id\": \"one\", \"image\": \"images/a.png\", \"box\": [20, 15, 40, 35], \"mask\": \"masks/a.png\", \"category\": \"disc\"}\n\
         {\"id\": \"two\", \"image\": \"images/a.png\", \"box\": [20, 15, 40, 35], \"mask\": \"masks/a.png\", \"category\": \"disc\"}\n",
    )
    .unwrap();
    let cases = d.join("cases.jsonl");
    let run = |args: &[&str], cases_flag: &str, dir: &str| {
        let mut v: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        v.push(cases_flag.into());
        v.push(cases.clone().into());
        v.push(
            if args[0] == "batch" {
                "--out-dir"
            } else {
                "--pred-dir"
            }
            .into(),
        );
        v.push(d.join(dir).into());
        run_json(&v.iter().map(|s| s.as_os_str()).collect::<Vec<_>>())
    };
    let summary = run(&["batch", "--threads", "2"], "--cases", "pred");
    assert_eq!(summary["written"], 2);
    assert_eq!(summary["images"], 1);
    let m = run(&["eval"], "--cases", "pred");
    assert_eq!(m["n"], 2);
    assert!(m["mIoU"].as_f64().unwrap() > 90.0, "{m}");
    assert_eq!(m["per_category"]["disc"]["n"], 2);
    // The box itself scores lower than the refined masks.
    let summary = run(&["batch", "--no-mbo"], "--cases", "box");
    assert_eq!(summary["written"], 2);
    let b = run(&["eval"], "--cases", "box");
    assert!(b["mIoU"].as_f64().unwrap() < m["mIoU"].as_f64().unwrap());
}

#[test]
fn segments_the_shipped_spacenet_geotiff() {
    let d = tmp("geotiff");
    let img = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("examples/data/sample_geotiff.tif");
    let out = pslg()
        .args(["segment", "--image"])
        .arg(&img)
        .args(["--box", "477,358,528,397", "--out"])
        .arg(d.join("m.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = image::open(d.join("m.png")).unwrap().to_luma8();
    assert_eq!(m.dimensions(), (900, 900));
    assert!(m.pixels().any(|p| p[0] == 255));
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    // `pslg segment … | head -0`: the reader is gone before pslg prints; the mask must still be written.
    let d = tmp("pipe");
    let mut child = pslg()
        .args(["segment", "--image"])
        .arg(concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/examples/data/sample_geotiff.tif"
        ))
        .args(["--box", "477,358,528,397", "--out"])
        .arg(d.join("mask.png"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join("mask.png").exists());
}

/// `pslg sam` on the committed tiny SAM fixture: the .npy outputs have the documented shapes and equal the
/// official code's (point + box case), and a saved low-res mask feeds back as `--mask-input`.
#[test]
fn sam_subcommand_writes_the_official_outputs() {
    use pslg::sam::npy;
    let fx = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/sam/tests/fixtures/tiny");
    let out = tmp("sam");
    let run = |extra: &[&str], dir: &Path| {
        let o = pslg()
            .args(["sam", "--checkpoint"])
            .arg(fx.join("sam.pth"))
            .arg("--image")
            .arg(fx.join("image.png"))
            .args(["--decoder-heads", "2", "--out-dir"])
            .arg(dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["--box", "35,11.25,85,48.75", "--point", "60,30,1"], &out);
    let (emb, shape) = npy::read_f32(&out.join("image_embedding.npy")).unwrap();
    assert_eq!(shape, vec![1, 32, 8, 8]);
    let (want, _) = npy::read_f32(&fx.join("image_embedding.npy")).unwrap();
    let rel = |a: &[f32], b: &[f32]| {
        let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |d, (x, y)| d.max((x - y).abs())) / m
    };
    assert!(rel(&emb, &want) < 1e-4);
    let (low, shape) = npy::read_f32(&out.join("low_res_masks.npy")).unwrap();
    assert_eq!(shape, vec![1, 1, 32, 32]);
    let (want, _) = npy::read_f32(&fx.join("point_box_low_res.npy")).unwrap();
    assert!(rel(&low, &want) < 1e-4);
    let (iou, shape) = npy::read_f32(&out.join("iou_predictions.npy")).unwrap();
    assert_eq!((shape, iou.len()), (vec![1, 1], 1));
    let mask = image::open(out.join("mask.png")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (100, 75));
    // Feed the low-res mask back, with the three multimask outputs.
    let out2 = tmp("sam2");
    let mi = out.join("low_res_masks.npy");
    run(
        &[
            "--mask-input",
            mi.to_str().unwrap(),
            "--point",
            "60,30,1",
            "--multimask",
        ],
        &out2,
    );
    let (_, shape) = npy::read_f32(&out2.join("low_res_masks.npy")).unwrap();
    assert_eq!(shape, vec![1, 3, 32, 32]);
    // Bad prompts and checkpoints are messages, not panics.
    for (args, needle) in [
        (vec!["--point", "1,2"], "3 comma-separated numbers"),
        (vec!["--point", "1,2,5"], "label must be 1"),
        (vec![], "give a prompt"),
    ] {
        let o = pslg()
            .args(["sam", "--checkpoint"])
            .arg(fx.join("sam.pth"))
            .arg("--image")
            .arg(fx.join("image.png"))
            .arg("--out-dir")
            .arg(&out2)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `segment --sam` and `batch --sam` with the committed tiny SAM checkpoint (random weights: the masks mean
/// nothing, the plumbing is what is tested): the mask stays inside the box, a box across tiles works, and
/// batch encodes each image once.
#[test]
fn segment_and_batch_with_sam() {
    let fx = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/sam/tests/fixtures/tiny/sam.pth");
    let d = tmp("with-sam");
    disc_image(&d.join("img.png"));
    for extra in [
        &[][..],
        &["--tile", "32", "--overlap", "8"][..],
        &["--sam-box-only"][..],
    ] {
        let out = pslg()
            .args(["segment", "--image"])
            .arg(d.join("img.png"))
            .args(["--box", "18,14,43,37", "--out"])
            .arg(d.join("m.png"))
            .arg("--sam")
            .arg(&fx)
            .args(["--sam-decoder-heads", "2"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("SAM loaded"), "{stdout}");
        let m = image::open(d.join("m.png")).unwrap().to_luma8();
        assert_eq!(m.dimensions(), (60, 50));
        for (x, y, p) in m.enumerate_pixels() {
            if p[0] != 0 {
                assert!((18..43).contains(&x) && (14..37).contains(&y), "{extra:?}");
            }
        }
    }
    std::fs::write(
        d.join("cases.jsonl"),
        "{\"id\":\"a\",\"image\":\"img.png\",\"box\":[18,14,43,37]}\n{\"id\":\"b\",\"image\":\"img.png\",\"box\":[5,5,20,20]}\n",
    )
    .unwrap();
    let out = pslg()
        .args(["batch", "--cases"])
        .arg(d.join("cases.jsonl"))
        .arg("--out-dir")
        .arg(d.join("pred"))
        .arg("--sam")
        .arg(&fx)
        .args(["--sam-decoder-heads", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap();
    let j: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (j["written"].as_u64(), j["images"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(d.join("pred/a.png").is_file() && d.join("pred/b.png").is_file());
}

#[test]
fn ground_prints_the_official_box_as_json() {
    let fx = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/grounding/tests/fixtures/lqvg-tiny");
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("case_0.json")).unwrap()).unwrap();
    let ids: Vec<String> = case["ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let ckpt = fx.join("checkpoint.pth");
    let image = fx.join("image.png");
    let config = fx.join("text_config.json");
    let ids = ids.join(",");
    let v = run_json(&[
        "ground".as_ref(),
        "--checkpoint".as_ref(),
        ckpt.as_os_str(),
        "--image".as_ref(),
        image.as_os_str(),
        "--token-ids".as_ref(),
        ids.as_ref(),
        "--text-config".as_ref(),
        config.as_os_str(),
        "--input-size".as_ref(),
        "128".as_ref(),
    ]);
    assert_eq!(v["query"], case["query"]);
    for k in 0..4 {
        let got = v["box"][k].as_f64().unwrap();
        let want = case["box_xyxy"][k].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-2,
            "box[{k}] {got} vs official {want}"
        );
    }
    assert_eq!(v["queries"].as_array().unwrap().len(), 3);

    // Bad input: an id outside the vocabulary, a non-checkpoint file, no text at all.
    for args in [
        vec!["--token-ids", "0,17,999,2"],
        vec!["--token-ids", "0,x,2"],
    ] {
        let out = pslg()
            .arg("ground")
            .arg("--checkpoint")
            .arg(&ckpt)
            .arg("--image")
            .arg(&image)
            .arg("--text-config")
            .arg(&config)
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = pslg()
        .args(["ground", "--token-ids", "0,5,2", "--checkpoint"])
        .arg(&image)
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read checkpoint"));
    let out = pslg()
        .args(["ground", "--checkpoint"])
        .arg(&ckpt)
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    assert!(!out.status.success(), "no text and no ids must be refused");
}

#[test]
fn train_grounding_trains_resumes_and_its_model_grounds() {
    use pslg::grounding::{toy_config, toy_samples, toy_tokenizer};
    let root = tmp("dior-toy");
    std::fs::create_dir_all(root.join("Annotations")).unwrap();
    std::fs::create_dir_all(root.join("JPEGImages")).unwrap();
    let samples = toy_samples(6, 64, 5);
    for (i, s) in samples.iter().enumerate() {
        let name = format!("{i:05}.jpg");
        image::DynamicImage::ImageRgb8(s.image.clone())
            .save(root.join("JPEGImages").join(&name))
            .unwrap();
        let b = s.box_xyxy;
        std::fs::write(
            root.join("Annotations").join(format!("{i:05}.xml")),
            format!(
                "<annotation><filename>{name}</filename><object><name>thing</name><bndbox><xmin>{}</xmin>\
                 <ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox><description>{}</description>\
                 </object></annotation>",
                b[0], b[1], b[2], b[3], s.text
            ),
        )
        .unwrap();
    }
    std::fs::write(root.join("train.txt"), "0\n1\n2\n3\n").unwrap();
    std::fs::write(root.join("val.txt"), "4\n5\n").unwrap();
    toy_tokenizer()
        .unwrap()
        .save(root.join("tokenizer.json"))
        .unwrap();
    std::fs::write(
        root.join("model.json"),
        serde_json::to_string(&toy_config()).unwrap(),
    )
    .unwrap();
    let out = root.join("run");
    let run = |extra: &[&str], epochs: &str| {
        let o = pslg()
            .arg("train-grounding")
            .arg("--root")
            .arg(&root)
            .arg("--tokenizer")
            .arg(root.join("tokenizer.json"))
            .arg("--out")
            .arg(&out)
            .args([
                "--epochs",
                epochs,
                "--batch-size",
                "2",
                "--input-size",
                "64",
                "--lr",
                "1e-3",
            ])
            .args(["--heads", "4", "--train-backbone-stem"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let mc = root.join("model.json");
    let first = run(&["--model-config", mc.to_str().unwrap()], "1");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["epoch"], 1);
    assert_eq!(first[0]["step"], 2);
    assert_eq!(first[0]["val"]["n"], 2);
    assert!(out.join("last/state.json").is_file() && out.join("best/model.safetensors").is_file());
    let last = out.join("last");
    let second = run(&["--resume", last.to_str().unwrap()], "2");
    assert_eq!(second.len(), 1, "resuming at epoch 1 of 2 runs one epoch");
    assert_eq!(second[0]["epoch"], 2);
    assert_eq!(second[0]["step"], 4);
    // The trained model grounds with `pslg ground`.
    let text_config = root.join("text.json");
    std::fs::write(&text_config, "{\"model_type\":\"bert\",\"vocab_size\":16,\"hidden_size\":32,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":64,\"max_position_embeddings\":16,\"type_vocab_size\":1,\"layer_norm_eps\":1e-12,\"pad_token_id\":0}").unwrap();
    let img = root.join("JPEGImages/00004.jpg");
    let v = run_json(&[
        "ground".as_ref(),
        "--checkpoint".as_ref(),
        out.join("last/model.safetensors").as_os_str(),
        "--image".as_ref(),
        img.as_os_str(),
        "--tokenizer".as_ref(),
        root.join("tokenizer.json").as_os_str(),
        "--text-config".as_ref(),
        text_config.as_os_str(),
        "--text".as_ref(),
        samples[4].text.as_ref(),
        "--heads".as_ref(),
        "4".as_ref(),
        "--input-size".as_ref(),
        "64".as_ref(),
    ]);
    assert_eq!(v["box"].as_array().unwrap().len(), 4);
    // Bad input: a split index beyond the annotations.
    std::fs::write(root.join("bad.txt"), "0\n77\n").unwrap();
    let o = pslg()
        .arg("train-grounding")
        .arg("--root")
        .arg(&root)
        .args(["--split", "bad.txt"])
        .arg("--tokenizer")
        .arg(root.join("tokenizer.json"))
        .arg("--out")
        .arg(&out)
        .arg("--model-config")
        .arg(&mc)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.txt:2"), "{err}");
}

#[test]
fn segment_with_text_grounds_then_segments() {
    use pslg::grounding::toy_tokenizer;
    let d = tmp("segment-text");
    disc_image(&d.join("img.png"));
    toy_tokenizer()
        .unwrap()
        .save(d.join("tokenizer.json"))
        .unwrap();
    let fx = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/grounding/tests/fixtures/lqvg-tiny");
    let sam = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/sam/tests/fixtures/tiny/sam.pth");
    let out = pslg()
        .args(["segment", "--image"])
        .arg(d.join("img.png"))
        .args(["--text", "the yellow circle", "--grounding"])
        .arg(fx.join("checkpoint.pth"))
        .arg("--tokenizer")
        .arg(d.join("tokenizer.json"))
        .arg("--text-config")
        .arg(fx.join("text_config.json"))
        .args(["--grounding-input-size", "128", "--sam"])
        .arg(&sam)
        .args(["--sam-decoder-heads", "2", "--out"])
        .arg(d.join("m.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("grounded \"the yellow circle\""),
        "{stdout}"
    );
    assert_eq!(
        image::open(d.join("m.png"))
            .unwrap()
            .to_luma8()
            .dimensions(),
        (60, 50)
    );
    // --text without a grounding model is refused by the argument parser.
    let out = pslg()
        .args(["segment", "--image"])
        .arg(d.join("img.png"))
        .args(["--text", "the disc", "--out"])
        .arg(d.join("m.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn batch_grounds_text_cases() {
    use pslg::grounding::toy_tokenizer;
    let d = tmp("batch-text");
    disc_image(&d.join("img.png"));
    toy_tokenizer()
        .unwrap()
        .save(d.join("tokenizer.json"))
        .unwrap();
    std::fs::write(
        d.join("cases.jsonl"),
        "{\"id\": \"a\", \"image\": \"img.png\", \"text\": \"the yellow circle\"}\n\
         {\"id\": \"b\", \"image\": \"img.png\", \"text\": \"the red square\"}\n\
         {\"id\": \"c\", \"image\": \"img.png\", \"box\": [18, 13, 42, 37]}\n",
    )
    .unwrap();
    let fx = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/grounding/tests/fixtures/lqvg-tiny");
    // Sentences without a grounding model: a message naming the case and the flags.
    let out = pslg()
        .args(["batch", "--cases"])
        .arg(d.join("cases.jsonl"))
        .arg("--out-dir")
        .arg(d.join("pred"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("--grounding") && msg.contains("(the first: a)"),
        "{msg}"
    );
    let summary = run_json(&[
        "batch".as_ref(),
        "--cases".as_ref(),
        d.join("cases.jsonl").as_os_str(),
        "--out-dir".as_ref(),
        d.join("pred").as_os_str(),
        "--grounding".as_ref(),
        fx.join("checkpoint.pth").as_os_str(),
        "--tokenizer".as_ref(),
        d.join("tokenizer.json").as_os_str(),
        "--text-config".as_ref(),
        fx.join("text_config.json").as_os_str(),
        "--grounding-input-size".as_ref(),
        "128".as_ref(),
    ]);
    assert_eq!(summary["written"], 3, "{summary}");
    let groundings = std::fs::read_to_string(d.join("pred/groundings.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = groundings
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["box"].as_array().unwrap().len(), 4);
        assert!(l["score"].is_number());
    }
    for id in ["a", "b", "c"] {
        assert!(d.join(format!("pred/{id}.png")).is_file());
    }
}
