//! Scale-out contract of `pslg batch` and `pslg eval-rrsis` (docs/scale-out.md): shards by image whose union
//! is the whole run, resume, per-case errors, `--shard auto` from a job array's variables, and the merge of
//! a sharded evaluation into exactly what one whole run prints.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pslg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pslg"));
    // A test run inside a real job array must not pick up its variables.
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "PSLG_SHARD_COUNT",
    ] {
        c.env_remove(v);
    }
    c
}

fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout} / {}", String::from_utf8_lossy(&out.stderr)))
}

fn ok(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

/// Six images of a disc on a textured field (disc centre and radius vary), with 1, 2 or 3 box cases each:
/// 12 cases. Returns the case file.
fn write_cases(d: &Path) -> PathBuf {
    std::fs::create_dir_all(d.join("images")).unwrap();
    let mut lines = String::new();
    for i in 0..6u32 {
        let (cx, cy, r) = (30.0 + 4.0 * i as f64, 28.0 + 2.0 * i as f64, 9.0 + i as f64);
        image::RgbImage::from_fn(80, 70, |x, y| {
            let d = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
            let n = ((x * 3 + y * 7 + i) % 11) as u8;
            if d < r * r {
                image::Rgb([210 + n, 190, 60 + n])
            } else {
                image::Rgb([40 + n, 90, 50 + n])
            }
        })
        .save(d.join(format!("images/{i}.png")))
        .unwrap();
        for j in 0..=(i % 3) {
            let m = (r as i64) + 2 + j as i64;
            lines += &format!(
                "{{\"id\": \"c{i}_{j}\", \"image\": \"images/{i}.png\", \"box\": [{}, {}, {}, {}]}}\n",
                cx as i64 - m,
                cy as i64 - m,
                cx as i64 + m,
                cy as i64 + m
            );
        }
    }
    let p = d.join("cases.jsonl");
    std::fs::write(&p, lines).unwrap();
    p
}

/// Every file of `dir`, name → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn batch(cases: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = pslg();
    c.args(["batch", "--cases"])
        .arg(cases)
        .arg("--out-dir")
        .arg(out)
        .args(extra);
    c
}

#[test]
fn batch_shards_are_whole_images_and_add_up_to_the_whole_run() {
    let d = common::tmp("shard-batch");
    let cases = write_cases(&d);
    let whole = ok(batch(&cases, &d.join("whole"), &[]).output().unwrap());
    assert_eq!(
        (whole["cases"].as_u64(), whole["written"].as_u64()),
        (Some(12), Some(12))
    );
    assert_eq!(whole["skipped"], 0);
    let parts = d.join("parts");
    let mut counts = Vec::new();
    let mut images = Vec::new();
    for k in 0..3 {
        let s = ok(batch(&cases, &parts, &["--shard", &format!("{k}/3")])
            .output()
            .unwrap());
        assert_eq!(s["shard"], format!("{k}/3"));
        assert_eq!(s["cases"], s["written"]);
        counts.push(s["cases"].as_u64().unwrap());
        images.push(s["images"].as_u64().unwrap());
    }
    // 6 images with 1, 2, 3, 1, 2, 3 cases: balanced 4/4/4, two images each, nothing split.
    assert_eq!(counts, [4, 4, 4]);
    assert_eq!(images, [2, 2, 2]);
    assert_eq!(files(&parts), files(&d.join("whole")));

    // `auto` reads a Slurm array task's index and count; it resumes by default.
    let s = ok(batch(&cases, &parts, &["--shard", "auto"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap());
    assert_eq!(
        (
            s["shard"].as_str(),
            s["written"].as_u64(),
            s["skipped"].as_u64()
        ),
        (Some("1/3"), Some(0), Some(4))
    );
    // A Kubernetes Indexed Job's.
    let s = ok(batch(&cases, &parts, &["--shard", "auto"])
        .env("JOB_COMPLETION_INDEX", "2")
        .env("PSLG_SHARD_COUNT", "3")
        .output()
        .unwrap());
    assert_eq!(s["shard"], "2/3");
    // Outside an array, `auto` says what it looked for.
    let out = batch(&cases, &parts, &["--shard", "auto"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("SLURM_ARRAY_TASK_ID") && msg.contains("--shard K/N"),
        "{msg}"
    );
    let out = batch(&cases, &parts, &["--shard", "3/3"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn batch_resumes_and_clears_what_a_killed_run_left() {
    let d = common::tmp("shard-resume");
    let cases = write_cases(&d);
    let out = d.join("out");
    ok(batch(&cases, &out, &[]).output().unwrap());
    let reference = files(&out);
    // A killed run: two masks missing, one temporary file of a write in progress.
    std::fs::remove_file(out.join("c2_0.png")).unwrap();
    std::fs::remove_file(out.join("c5_2.png")).unwrap();
    std::fs::write(out.join(".c2_0.png.partial-AbC123"), b"\x89PNG half").unwrap();
    let s = ok(batch(&cases, &out, &["--resume"]).output().unwrap());
    assert_eq!(
        (
            s["cases"].as_u64(),
            s["written"].as_u64(),
            s["skipped"].as_u64()
        ),
        (Some(12), Some(2), Some(10))
    );
    assert_eq!(files(&out), reference);
    // Without --resume everything is redone, to the same bytes.
    let s = ok(batch(&cases, &out, &[]).output().unwrap());
    assert_eq!(s["written"], 12);
    assert_eq!(files(&out), reference);
}

#[test]
fn bad_case_lines_fail_alone_and_strict_fails_first() {
    let d = common::tmp("shard-bad");
    let cases = write_cases(&d);
    let mut text = std::fs::read_to_string(&cases).unwrap();
    text += "{\"id\": \"broken\", \"image\": \"images/0.png\", \"box\": [1, 2, 3]}\n"; // line 13
    text += "{\"id\": \"gone\", \"image\": \"images/missing.png\", \"box\": [1, 2, 30, 30]}\n"; // 14
    text += "{\"id\": \"far\", \"image\": \"images/1.png\", \"box\": [500, 500, 600, 600]}\n"; // 15
    text += "{\"id\": \"c0_0\", \"image\": \"images/1.png\", \"box\": [1, 2, 30, 30]}\n"; // 16: duplicate
    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, text).unwrap();
    let out = batch(&bad, &d.join("out"), &[]).output().unwrap();
    assert!(
        !out.status.success(),
        "failures must show in the exit status"
    );
    let s = summary(&out);
    assert_eq!(
        (
            s["cases"].as_u64(),
            s["written"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(16), Some(12), Some(4))
    );
    let lines: Vec<u64> = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [13, 14, 15, 16]);
    let f = &s["failures"][1];
    assert_eq!(f["id"], "gone");
    assert!(f["error"].as_str().unwrap().contains("missing.png"), "{f}");
    assert!(
        s["failures"][3]["error"]
            .as_str()
            .unwrap()
            .contains("duplicate")
    );
    // The rest was written.
    assert_eq!(files(&d.join("out")).len(), 12);
    // Under shards, the malformed lines are reported once (by shard 0); the image failures by their shard.
    let failed: u64 = (0..2)
        .map(|k| {
            let out = batch(&bad, &d.join("sharded"), &["--shard", &format!("{k}/2")])
                .output()
                .unwrap();
            summary(&out)["failed"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(failed, 4);
    // --strict refuses the file before any work.
    let out = batch(&bad, &d.join("strict"), &["--strict"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 13"));
    assert!(!d.join("strict").join("c0_0.png").exists());
}

fn eval_shards_and_merge(d: &Path, extra: &[&str]) {
    let run = |more: &[&str]| {
        pslg()
            .args(["eval-rrsis", "--root"])
            .arg(d)
            .args(["--split", "test", "--gt-box"])
            .args(extra)
            .args(more)
            .output()
            .unwrap()
    };
    let text = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let results = d.join("results.jsonl");
    let whole = text(run(&["--out", d.join("whole.jsonl").to_str().unwrap()]));
    let whole_table = text(run(&["--table"]));
    for k in 0..3 {
        text(run(&[
            "--shard",
            &format!("{k}/3"),
            "--out",
            results.to_str().unwrap(),
        ]));
    }
    let shard_files: Vec<PathBuf> = (0..3)
        .map(|k| d.join(format!("results.{k}-of-3.jsonl")))
        .collect();
    let merge = |files: &[PathBuf], more: &[&str]| {
        pslg()
            .args(["eval-rrsis", "--merge"])
            .args(files)
            .args(more)
            .output()
            .unwrap()
    };
    // Any order of the files; the same lines and table as the whole run.
    let rev: Vec<PathBuf> = shard_files.iter().rev().cloned().collect();
    assert_eq!(text(merge(&rev, &[])), whole);
    assert_eq!(text(merge(&shard_files, &["--table"])), whole_table);
    // A missing shard, a shard twice, an unfinished shard, a file of another run: clear errors.
    let fails = |files: &[PathBuf], needle: &str| {
        let out = merge(files, &[]);
        assert!(!out.status.success());
        let msg = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    };
    fails(&shard_files[..2], "missing");
    fails(&[&shard_files[..], &shard_files[..1]].concat(), "twice");
    fails(&[d.join("whole.jsonl")], "--shard");
    let unfinished = d.join("results.unfinished.jsonl");
    let body = std::fs::read_to_string(&shard_files[1]).unwrap();
    let cut: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with("{\"summary\""))
        .collect();
    std::fs::write(&unfinished, cut.join("\n") + "\n").unwrap();
    fails(
        &[shard_files[0].clone(), unfinished, shard_files[2].clone()],
        "not finished",
    );
    // Two shards claiming the same sample.
    let dup = d.join("results.dup.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&shard_files[2])
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let stolen = std::fs::read_to_string(&shard_files[0])
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    lines.insert(1, stolen);
    std::fs::write(&dup, lines.join("\n") + "\n").unwrap();
    fails(
        &[shard_files[0].clone(), shard_files[1].clone(), dup],
        "scored by shard 0",
    );
}

#[test]
fn eval_rrsis_over_three_shards_merges_into_the_whole_run() {
    let d = common::tmp("shard-eval");
    common::write_dataset(&d, 15, 96, 72, 3);
    eval_shards_and_merge(&d, &[]);
    let d = common::tmp("shard-eval-grid");
    common::write_dataset(&d, 15, 96, 72, 4);
    eval_shards_and_merge(&d, &["--ablation"]);
}
