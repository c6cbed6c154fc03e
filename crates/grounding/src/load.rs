//! Checkpoint reading shared by the text encoder and LQVG: official state-dict keys ↔ this port's module
//! paths (ONE table), shapes for architecture inference and for typed mismatch errors.

use crate::GroundingError;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::{
    BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;

/// The only places where this port's module paths differ from the official keys (`#` stands for an index).
/// HuggingFace names a module `LayerNorm` and another `self`, torchvision and DETR number `nn.Sequential`
/// children, DETR's `Joiner` nests the ResNet as `backbone.0.body`; this port names them.
/// (official fragment, port fragment)
pub(crate) const KEY_MAP: &[(&str, &str)] = &[
    ("embeddings.LayerNorm.", "embeddings.layer_norm."),
    (".output.LayerNorm.", ".output.layer_norm."),
    (".attention.self.", ".attention.self_attn."),
    ("backbone.0.body.", "backbone."),
    (".downsample.0.", ".downsample.conv."),
    (".downsample.1.", ".downsample.bn."),
    ("input_proj.#.0.", "input_proj.#.conv."),
    ("input_proj.#.1.", "input_proj.#.norm."),
];

/// Official keys that are buffers of the official code with no counterpart here (recomputed).
pub(crate) fn is_ignored_buffer(key: &str) -> bool {
    key.ends_with("embeddings.position_ids")
        || key.ends_with("embeddings.token_type_ids")
        || key.ends_with("num_batches_tracked")
}

pub(crate) fn fragment_regex(fragment: &str) -> String {
    fragment
        .split('#')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"(\d+)")
}

pub(crate) fn fragment_template(fragment: &str) -> String {
    fragment.replace('#', "${1}")
}

/// Regex pairs official → port (for `burn-store`'s key remapping), each table entry prefixed by `prefix`
/// on the official side when given (e.g. `text_encoder.` when loading a bare BERT into LQVG is not needed:
/// the table is prefix-free).
pub(crate) fn remap_patterns() -> Vec<(String, String)> {
    KEY_MAP
        .iter()
        .map(|(official, port)| (fragment_regex(official), fragment_template(port)))
        .collect()
}

/// A port path → the official key.
pub(crate) fn to_official(path: &str) -> String {
    let mut out = path.to_string();
    for (official, port) in KEY_MAP {
        // The table's fragments are fixed strings apart from `#`; a failed regex would be a bug in the table.
        if let Ok(re) = Regex::new(&fragment_regex(port)) {
            out = re
                .replace_all(&out, fragment_template(official).as_str())
                .into_owned();
        }
    }
    out
}

/// Whether a path names a safetensors file (else it is read as a PyTorch `.pth`).
pub(crate) fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// The tensors of a checkpoint: key → shape (official names), and the top-level key they sit under in a
/// training checkpoint (`{"model": state_dict, "optimizer": …}`), if any.
pub(crate) struct Shapes {
    pub map: BTreeMap<String, Vec<usize>>,
    pub top_level: Option<String>,
}

/// Reads every tensor's shape.
pub(crate) fn read_shapes(path: &Path) -> Result<Shapes, GroundingError> {
    let read_err = |reason: String| GroundingError::ReadCheckpoint {
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
    let map = match result {
        Ok(Ok(map)) if map.is_empty() => return Err(read_err("it holds no tensors".into())),
        Ok(Ok(map)) => map,
        Ok(Err(e)) => return Err(read_err(e)),
        Err(_) => return Err(read_err("the reader failed on malformed data".into())),
    };
    // A training checkpoint nests the state dict under "model" beside the optimizer state.
    if !is_safetensors(path) && map.keys().any(|k| k.starts_with("model.")) {
        let inner: BTreeMap<String, Vec<usize>> = map
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("model.").map(|k| (k.to_string(), v.clone())))
            .collect();
        return Ok(Shapes {
            map: inner,
            top_level: Some("model".into()),
        });
    }
    Ok(Shapes {
        map,
        top_level: None,
    })
}

/// Official key → shape of every tensor `module` needs, its paths prefixed by `prefix`.
pub(crate) fn expected_shapes<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &M,
) -> BTreeMap<String, Vec<usize>> {
    module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .map(|s| (to_official(&s.full_path()), s.shape.to_vec()))
        .collect()
}

/// Checks `shapes` against what `module` needs (missing, mis-shaped, unexpected tensors → typed errors
/// naming the key), then loads the file into it through `burn-store` with the key table. `aliases` says
/// which extra keys are duplicates of needed ones (official checkpoints store shared modules twice).
pub(crate) fn check_and_load<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    mut module: M,
    path: &Path,
    shapes: &Shapes,
    what: &str,
    is_alias: &dyn Fn(&str) -> Option<String>,
) -> Result<M, GroundingError> {
    let expected = expected_shapes::<B, M>(&module);
    for (key, want) in &expected {
        match shapes.map.get(key) {
            None => {
                return Err(GroundingError::MissingTensor {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    expected: want.clone(),
                });
            }
            Some(found) if found != want => {
                return Err(GroundingError::ShapeMismatch {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    found: found.clone(),
                    expected: want.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for (key, shape) in &shapes.map {
        if expected.contains_key(key) || is_ignored_buffer(key) {
            continue;
        }
        let aliased = is_alias(key).is_some_and(|k| expected.get(&k) == Some(shape));
        if !aliased {
            return Err(GroundingError::UnexpectedTensor {
                path: path.to_path_buf(),
                key: key.clone(),
                shape: shape.clone(),
                what: what.to_string(),
            });
        }
    }
    let read_err = |reason: String| GroundingError::ReadCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let result = if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true);
        for (from, to) in remap_patterns() {
            store = store.with_key_remapping(&from, &to);
        }
        module
            .load_from(&mut store)
            .map_err(|e| read_err(e.to_string()))?
    } else {
        let mut store = PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .allow_partial(true);
        if let Some(top) = &shapes.top_level {
            store = store.with_top_level_key(top);
        }
        for (from, to) in remap_patterns() {
            store = store.with_key_remapping(&from, &to);
        }
        module
            .load_from(&mut store)
            .map_err(|e| read_err(e.to_string()))?
    };
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(read_err(format!(
            "{} tensor(s) could not be applied: {:?} {:?}",
            result.errors.len() + result.missing.len(),
            result.errors.first(),
            result.missing.first()
        )));
    }
    Ok(module)
}
