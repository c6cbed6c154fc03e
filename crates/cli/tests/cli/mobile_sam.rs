//! `--sam` with a MobileSAM checkpoint (the committed tiny TinyViT fixture, random weights): every command
//! that takes SAM tells the family from the keys; a broken MobileSAM file is a message, not a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pslg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pslg"))
}

fn fixture() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/sam/tests/fixtures/mobile_tiny")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-cli-mobile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `pslg segment` of the fixture's image with box 35,11,85,49 through SAM checkpoint `ckpt` into `out`.
fn segment(ckpt: &Path, out: &Path) -> Command {
    let mut c = pslg();
    c.args(["segment", "--image"])
        .arg(fixture().join("image.png"))
        .args(["--box", "35,11,85,49", "--out"])
        .arg(out)
        .arg("--sam")
        .arg(ckpt);
    c
}

#[test]
fn sam_segment_and_batch_take_a_mobile_sam_checkpoint() {
    let fx = fixture();
    let ckpt = fx.join("sam.pth");
    let d = tmp("run");
    // `pslg sam`: TinyViT at the official 1024-px input (the weights do not fix it), a 64 × 64 embedding.
    let o = pslg()
        .args(["sam", "--checkpoint"])
        .arg(&ckpt)
        .arg("--image")
        .arg(fx.join("image.png"))
        .args(["--decoder-heads", "2", "--box", "35,11,85,49", "--out-dir"])
        .arg(d.join("sam"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("TinyViT (MobileSAM)"), "{stdout}");
    let (_, shape) = pslg::sam::npy::read_f32(&d.join("sam/image_embedding.npy")).unwrap();
    assert_eq!(shape, vec![1, 32, 64, 64]);
    // `segment --sam` and `batch --sam`.
    let o = segment(&ckpt, &d.join("m.png"))
        .args(["--sam-decoder-heads", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("TinyViT"));
    let m = image::open(d.join("m.png")).unwrap().to_luma8();
    assert_eq!(m.dimensions(), (100, 75));
    for (x, y, p) in m.enumerate_pixels() {
        if p[0] != 0 {
            assert!((35..85).contains(&x) && (11..49).contains(&y));
        }
    }
    std::fs::copy(fx.join("image.png"), d.join("img.png")).unwrap();
    std::fs::write(
        d.join("cases.jsonl"),
        "{\"id\":\"a\",\"image\":\"img.png\",\"box\":[35,11,85,49]}\n{\"id\":\"b\",\"image\":\"img.png\",\"box\":[5,5,30,30]}\n",
    )
    .unwrap();
    let o = pslg()
        .args(["batch", "--cases"])
        .arg(d.join("cases.jsonl"))
        .arg("--out-dir")
        .arg(d.join("pred"))
        .arg("--sam")
        .arg(&ckpt)
        .args(["--sam-decoder-heads", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(d.join("pred/a.png").is_file() && d.join("pred/b.png").is_file());
}

#[test]
fn a_truncated_mobile_sam_checkpoint_is_a_message() {
    let fx = fixture();
    let d = tmp("bad");
    let bytes = std::fs::read(fx.join("sam.pth")).unwrap();
    let bad = d.join("mobile_sam.pt");
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let o = segment(&bad, &d.join("m.png")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("mobile_sam.pt") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!d.join("m.png").exists(), "no output on failure");
}
