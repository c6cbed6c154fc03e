//! The checkpoint layer of **pslg**, shared by SAM and LQVG: an official state dict (PyTorch `.pth` or
//! `.safetensors`) read through `burn-store`, its keys mapped to this port's module paths by ONE table per
//! model ([`KeyMap`]), every tensor's shape checked before loading ([`check_shapes`]), and one typed error
//! ([`CheckpointError`]) that each model crate wraps.
//!
//! | step | item |
//! |---|---|
//! | official key ↔ port path | [`KeyMap`] (`#` stands for an index) |
//! | key → shape of every tensor in a file (malformed files are errors, never panics) | [`read_shapes`] |
//! | key → shape of every tensor a module needs | [`expected_shapes`] |
//! | missing / mis-shaped / unexpected tensors, naming the key | [`check_shapes`] |
//! | the file into the module | [`load_into`] |
//!
//! PyTorch zip checkpoints (what `torch.save` writes) are read by this crate's own reader (`pth`): one
//! pickle parse, and each tensor read straight into the buffer the Burn tensor keeps (Linear weights read
//! transposed in the same pass). Loading a 666 MB LQVG checkpoint takes about as long as `torch.load` of it
//! (`docs/performance.md`). Safetensors files and other PyTorch layouts go through burn-store's readers.
#![warn(missing_docs)]

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, BoolStore, DType, Element, Int, Shape, Tensor, TensorData};
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, TensorSnapshot, TensorSnapshotError,
};
use std::rc::Rc;

mod pth;
use regex::Regex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a checkpoint cannot be loaded into a model. Each names the file and, for a tensor, its official key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read as a PyTorch or safetensors state dict, or its tensors not applied.
    #[error(
        "cannot read checkpoint {path}: {reason} (a PyTorch .pth or a safetensors state dict is expected; \
         a truncated download gives this error, download it again)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// The checkpoint lacks a tensor the architecture needs.
    #[error(
        "checkpoint {path} has no tensor `{key}` (shape {expected:?} expected); is it a checkpoint of this model?"
    )]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
    /// The checkpoint has a tensor the architecture does not use.
    #[error(
        "checkpoint {path} has an unexpected tensor `{key}` of shape {shape:?} (not part of {what})"
    )]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The architecture it was compared with.
        what: String,
    },
    /// A tensor's shape does not fit the architecture.
    #[error(
        "checkpoint {path}: tensor `{key}` has shape {found:?} but the architecture needs {expected:?}; \
         the checkpoint does not match the configuration"
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
}

/// The places where a port's module paths differ from the official state-dict keys, as
/// `(official fragment, port fragment)` pairs; `#` in a fragment stands for a decimal index (numbered
/// `nn.Sequential` children, which a port names). Every other key is the same on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMap(pub &'static [(&'static str, &'static str)]);

fn fragment_regex(fragment: &str) -> String {
    fragment
        .split('#')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"(\d+)")
}

fn fragment_template(fragment: &str) -> String {
    fragment.replace('#', "${1}")
}

impl KeyMap {
    /// Regex pairs official → port, for `burn-store`'s key remapping.
    pub fn remap_patterns(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(official, port)| (fragment_regex(official), fragment_template(port)))
            .collect()
    }

    /// Regex pairs port → official, for writing a module under the official key names.
    pub fn to_official_patterns(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(official, port)| (fragment_regex(port), fragment_template(official)))
            .collect()
    }

    /// A port path → the official key.
    ///
    /// ```
    /// use pslg_checkpoint::KeyMap;
    /// let keys = KeyMap(&[("neck.0.", "neck.conv1."), ("input_proj.#.0.", "input_proj.#.conv.")]);
    /// assert_eq!(keys.to_official("enc.neck.conv1.weight"), "enc.neck.0.weight");
    /// assert_eq!(keys.to_official("input_proj.2.conv.bias"), "input_proj.2.0.bias");
    /// assert_eq!(keys.to_official("other.weight"), "other.weight");
    /// ```
    pub fn to_official(&self, path: &str) -> String {
        apply(&self.port_rules(), path)
    }

    /// The port → official rules, compiled once for a whole module's paths. The fragments are fixed
    /// strings apart from `#`, so every regex compiles.
    fn port_rules(&self) -> Vec<(Regex, String)> {
        self.0
            .iter()
            .filter_map(|(official, port)| {
                Some((
                    Regex::new(&fragment_regex(port)).ok()?,
                    fragment_template(official),
                ))
            })
            .collect()
    }
}

/// `path` with every rule applied in order.
fn apply(rules: &[(Regex, String)], path: &str) -> String {
    let mut out = path.to_string();
    for (re, template) in rules {
        out = re.replace_all(&out, template.as_str()).into_owned();
    }
    out
}

/// Whether a path names a safetensors file (else it is read as a PyTorch `.pth`).
pub fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// The tensors of a checkpoint: official key → shape, and the top-level key they sit under in a training
/// checkpoint (`{"model": state_dict, "optimizer": …}`), if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shapes {
    /// Key → shape (the top-level key stripped).
    pub tensors: BTreeMap<String, Vec<usize>>,
    /// `Some("model")` for a training checkpoint that nests the state dict.
    pub top_level: Option<String>,
}

/// Reads every tensor's shape (no tensor data is loaded).
///
/// # Errors
/// [`CheckpointError::Read`] for a missing, unreadable, malformed or empty file; the third-party readers'
/// panics on malformed data are caught and reported so too.
pub fn read_shapes(path: &Path) -> Result<Shapes, CheckpointError> {
    let read_err = |reason: String| CheckpointError::Read {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(read_err("no such file".into()));
    }
    // PyTorch zip checkpoints: one pickle parse, no tensor closures (`pth`); other files through burn-store.
    if !is_safetensors(path)
        && let Some(shapes) = pth::shapes(path)
    {
        return Ok(shapes);
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
    let tensors = match result {
        Ok(Ok(map)) if map.is_empty() => return Err(read_err("it holds no tensors".into())),
        Ok(Ok(map)) => map,
        Ok(Err(e)) => return Err(read_err(e)),
        Err(_) => return Err(read_err("the reader failed on malformed data".into())),
    };
    // A training checkpoint nests the state dict under "model" beside the optimizer state.
    if !is_safetensors(path) && tensors.keys().any(|k| k.starts_with("model.")) {
        let inner = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("model.").map(|k| (k.to_string(), v.clone())))
            .collect();
        return Ok(Shapes {
            tensors: inner,
            top_level: Some("model".into()),
        });
    }
    Ok(Shapes {
        tensors,
        top_level: None,
    })
}

/// Official key → shape of every tensor `module` needs (`keys` maps its paths to official keys; the
/// adapter names LayerNorm `gamma`/`beta` back to `weight`/`bias` and gives Linear weights PyTorch's
/// `[out, in]`). Enum modules (one of several architectures in one field) add no path segment, as in PyTorch
/// state dicts; [`load_into`] matches so.
///
/// It reads each parameter's shape without initialising it: a model built to receive a checkpoint keeps
/// its lazy parameters unallocated until [`load_into`] fills them (burn-store's own collector would draw
/// every random initial value first, half the load time of a 666 MB checkpoint).
pub fn expected_shapes<B: Backend, M: Module<B>>(
    module: &M,
    keys: &KeyMap,
) -> BTreeMap<String, Vec<usize>> {
    let rules = keys.port_rules();
    let mut shapes = LazyShapes::default();
    module.visit(&mut shapes);
    shapes
        .found
        .iter()
        .map(|s| {
            let s = BurnToPyTorchAdapter.adapt(s);
            (apply(&rules, &s.full_path()), s.shape.to_vec())
        })
        .collect()
}

/// A module visitor that records every parameter's path, container types and shape as a data-less
/// snapshot (the form burn-store's adapters rename and transpose), reading shapes through
/// `Param::lazy_shape` so no lazy parameter is initialised. Paths are built as burn-store's collector
/// builds them with enum variants skipped.
#[derive(Default)]
struct LazyShapes {
    path: Vec<String>,
    containers: Vec<String>,
    found: Vec<TensorSnapshot>,
}

impl LazyShapes {
    fn record(&mut self, shape: Shape, dtype: DType, id: ParamId) {
        let no_data: Rc<dyn Fn() -> Result<TensorData, TensorSnapshotError>> = Rc::new(|| {
            Err(TensorSnapshotError::DataError(
                "a shape-only snapshot has no data".into(),
            ))
        });
        self.found.push(TensorSnapshot::from_closure(
            no_data,
            dtype,
            shape,
            self.path.clone(),
            self.containers.clone(),
            id,
        ));
    }
}

impl<B: Backend> ModuleVisitor<B> for LazyShapes {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.containers.pop();
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.record(param.lazy_shape(), B::FloatElem::dtype(), param.id);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.record(param.lazy_shape(), B::IntElem::dtype(), param.id);
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.record(param.lazy_shape(), DType::Bool(BoolStore::Native), param.id);
    }
}

/// Checks a checkpoint's tensor shapes against an architecture's: every `expected` key present in `found`
/// with its shape, and no key of `found` left over for which `unexpected(key, shape)` says it matters (a key
/// outside the part being loaded, an ignored buffer or an alias of a needed tensor returns `false`). `what`
/// describes the architecture for the message.
///
/// # Errors
/// [`CheckpointError::MissingTensor`], [`CheckpointError::ShapeMismatch`] or
/// [`CheckpointError::UnexpectedTensor`] naming the first such key.
pub fn check_shapes(
    path: &Path,
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, Vec<usize>>,
    unexpected: impl Fn(&str, &[usize]) -> bool,
    what: impl FnOnce() -> String,
) -> Result<(), CheckpointError> {
    for (key, want) in expected {
        match found.get(key) {
            None => {
                return Err(CheckpointError::MissingTensor {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    expected: want.clone(),
                });
            }
            Some(got) if got != want => {
                return Err(CheckpointError::ShapeMismatch {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    found: got.clone(),
                    expected: want.clone(),
                });
            }
            Some(_) => {}
        }
    }
    if let Some((key, shape)) = found
        .iter()
        .find(|(k, s)| !expected.contains_key(*k) && unexpected(k, s))
    {
        return Err(CheckpointError::UnexpectedTensor {
            path: path.to_path_buf(),
            key: key.clone(),
            shape: shape.clone(),
            what: what(),
        });
    }
    Ok(())
}

/// Loads the file at `path` (whose [`read_shapes`] are `shapes`) into `module` through `burn-store`, keys
/// renamed by `patterns` (regex → replacement, official → the module's paths, applied in order). With
/// `partial`, tensors of the file the module has no place for are skipped (check them first with
/// [`check_shapes`]); every tensor of the module must still be applied.
///
/// # Errors
/// [`CheckpointError::Read`] when the file cannot be read or a tensor cannot be applied.
pub fn load_into<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    mut module: M,
    path: &Path,
    shapes: &Shapes,
    patterns: &[(String, String)],
    partial: bool,
) -> Result<M, CheckpointError> {
    let read_err = |reason: String| CheckpointError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let result = if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .skip_enum_variants(true)
            .allow_partial(partial);
        for (from, to) in patterns {
            store = store.with_key_remapping(from, to);
        }
        module
            .load_from(&mut store)
            .map_err(|e| read_err(e.to_string()))?
    } else if let Some((snapshots, adapter)) = pth::snapshots(path, shapes.top_level.as_deref())? {
        // The fast reader of PyTorch zip checkpoints (`pth`), with the store's renaming.
        let remapper =
            KeyRemapper::from_patterns(patterns.to_vec()).map_err(|e| read_err(e.to_string()))?;
        let (snapshots, _) = remapper.remap(snapshots);
        module.apply(snapshots, None, Some(Box::new(adapter)), true)
    } else {
        let mut store = PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .skip_enum_variants(true)
            .allow_partial(partial);
        if let Some(top) = &shapes.top_level {
            store = store.with_top_level_key(top);
        }
        for (from, to) in patterns {
            store = store.with_key_remapping(from, to);
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
