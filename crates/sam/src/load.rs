//! Checkpoint reading: official state-dict keys ↔ this port's module paths (ONE table), shapes for
//! architecture inference and for typed mismatch errors.

use crate::SamError;
use burn_store::{ModuleStore, PytorchStore, SafetensorsStore};
use std::collections::BTreeMap;
use std::path::Path;

/// The only places where this port's module paths differ from the official state-dict keys: the official
/// code's `nn.Sequential` children are numbered, this port names them. (official prefix, port prefix)
pub(crate) const KEY_MAP: &[(&str, &str)] = &[
    ("image_encoder.neck.0.", "image_encoder.neck.conv1."),
    ("image_encoder.neck.1.", "image_encoder.neck.ln1."),
    ("image_encoder.neck.2.", "image_encoder.neck.conv2."),
    ("image_encoder.neck.3.", "image_encoder.neck.ln2."),
    (
        "prompt_encoder.mask_downscaling.0.",
        "prompt_encoder.mask_downscaling.conv1.",
    ),
    (
        "prompt_encoder.mask_downscaling.1.",
        "prompt_encoder.mask_downscaling.ln1.",
    ),
    (
        "prompt_encoder.mask_downscaling.3.",
        "prompt_encoder.mask_downscaling.conv2.",
    ),
    (
        "prompt_encoder.mask_downscaling.4.",
        "prompt_encoder.mask_downscaling.ln2.",
    ),
    (
        "prompt_encoder.mask_downscaling.6.",
        "prompt_encoder.mask_downscaling.conv3.",
    ),
    (
        "mask_decoder.output_upscaling.0.",
        "mask_decoder.output_upscaling.deconv1.",
    ),
    (
        "mask_decoder.output_upscaling.1.",
        "mask_decoder.output_upscaling.ln.",
    ),
    (
        "mask_decoder.output_upscaling.3.",
        "mask_decoder.output_upscaling.deconv2.",
    ),
];

/// A port path → the official key.
pub(crate) fn to_official(path: &str) -> String {
    for (official, port) in KEY_MAP {
        if let Some(rest) = path.strip_prefix(port) {
            return format!("{official}{rest}");
        }
    }
    path.to_string()
}

/// Regex pairs for `burn-store`'s key remapping: official → port.
pub(crate) fn remap_patterns() -> Vec<(String, String)> {
    KEY_MAP
        .iter()
        .map(|(official, port)| {
            (
                format!("^{}", official.replace('.', r"\.")),
                port.to_string(),
            )
        })
        .collect()
}

/// Whether a path names a safetensors file (else it is read as a PyTorch `.pth`).
pub(crate) fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Key → shape of every tensor in a checkpoint, official names.
pub(crate) fn read_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, SamError> {
    let read_err = |reason: String| SamError::ReadCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(read_err("no such file".into()));
    }
    let collect = |snaps: &BTreeMap<String, burn_store::TensorSnapshot>| {
        snaps
            .iter()
            .map(|(k, s)| (k.clone(), s.shape.to_vec()))
            .collect::<BTreeMap<_, _>>()
    };
    // Both readers may panic on malformed input deep inside third-party parsers; keep that a typed error.
    let result = std::panic::catch_unwind(|| {
        if is_safetensors(path) {
            let mut store = SafetensorsStore::from_file(path);
            store
                .get_all_snapshots()
                .map(collect)
                .map_err(|e| e.to_string())
        } else {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            store
                .get_all_snapshots()
                .map(collect)
                .map_err(|e| e.to_string())
        }
    });
    match result {
        Ok(Ok(map)) if map.is_empty() => Err(read_err("it holds no tensors".into())),
        Ok(Ok(map)) => Ok(map),
        Ok(Err(e)) => Err(read_err(e)),
        Err(_) => Err(read_err("the reader failed on malformed data".into())),
    }
}
