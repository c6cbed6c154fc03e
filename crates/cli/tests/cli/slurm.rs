//! The scale-out contract on a real single-node Slurm cluster (`scripts/slurm_array_test.sh`): an array over
//! the real dev set killed with SIGKILL part-way, resubmitted, and byte-identical to one process.
//!
//! Needs root and Debian's slurmctld, slurmd, slurm-client and munge; without them it skips with a message,
//! unless `PSLG_REQUIRE_SLURM=1` (set in CI), where it fails. The dev set is `../shared/data/boxmask-dev`.

use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_killed_slurm_array_resumes_to_the_single_process_result() {
    let required = std::env::var("PSLG_REQUIRE_SLURM").is_ok_and(|v| v == "1");
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let cases = root.join("../shared/data/boxmask-dev/cases.jsonl");
    let missing: Vec<&str> = [
        "munged",
        "slurmctld",
        "slurmd",
        "sbatch",
        "squeue",
        "scancel",
        "sinfo",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let why = if !missing.is_empty() {
        Some(format!(
            "missing {} (apt-get install slurmctld slurmd slurm-client munge)",
            missing.join(", ")
        ))
    } else if !is_root {
        Some("the single-node cluster runs its daemons as root".to_string())
    } else if !cases.is_file() {
        Some(format!("the dev set {} is missing", cases.display()))
    } else {
        None
    };
    if let Some(why) = why {
        assert!(!required, "PSLG_REQUIRE_SLURM=1 but {why}");
        eprintln!("skipping the Slurm test: {why}");
        return;
    }
    let work = std::env::temp_dir().join(format!("pslg-slurm-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(root.join("scripts/slurm_array_test.sh"))
        .arg(env!("CARGO_BIN_EXE_pslg"))
        .arg(&cases)
        .arg(&work)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{log}");
    assert!(out.status.success(), "{log}");
    assert!(log.contains("byte-identical"), "{log}");
    let _ = std::fs::remove_dir_all(&work);
}
