//! Writing a small state dict as safetensors, for the checkpoint tests of SAM and LQVG (included by both
//! with `#[path]`).

use std::collections::BTreeMap;
use std::path::Path;

/// Writes `sd` (key → shape, f32 values) as a safetensors file.
pub fn write_safetensors(path: &Path, sd: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: BTreeMap<&String, Vec<u8>> = sd
        .iter()
        .map(|(k, (_, v))| (k, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = sd
        .iter()
        .map(|(k, (shape, _))| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                &bytes[k],
            )
            .expect("view");
            (k.clone(), view)
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, None, path).expect("write safetensors");
}
