//! Checkpoint loading shared by the text encoder and LQVG: the key table of this port, the buffers and
//! aliases of the official state dicts, over the shared checkpoint layer (`pslg-checkpoint`).

use crate::GroundingError;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::ModuleSnapshot;
use pslg_checkpoint::{KeyMap, Shapes, check_shapes, expected_shapes, load_into};
use std::path::Path;

pub(crate) use pslg_checkpoint::read_shapes;

/// The only places where this port's module paths differ from the official keys (`#` stands for an index).
/// HuggingFace names a module `LayerNorm` and another `self`, torchvision and DETR number `nn.Sequential`
/// children, DETR's `Joiner` nests the ResNet as `backbone.0.body`; this port names them.
/// (official fragment, port fragment)
pub(crate) const KEYS: KeyMap = KeyMap(&[
    ("embeddings.LayerNorm.", "embeddings.layer_norm."),
    (".output.LayerNorm.", ".output.layer_norm."),
    (".attention.self.", ".attention.self_attn."),
    ("backbone.0.body.", "backbone."),
    (".downsample.0.", ".downsample.conv."),
    (".downsample.1.", ".downsample.bn."),
    ("input_proj.#.0.", "input_proj.#.conv."),
    ("input_proj.#.1.", "input_proj.#.norm."),
]);

/// Official keys that are buffers of the official code with no counterpart here (recomputed).
pub(crate) fn is_ignored_buffer(key: &str) -> bool {
    key.ends_with("embeddings.position_ids")
        || key.ends_with("embeddings.token_type_ids")
        || key.ends_with("num_batches_tracked")
}

/// The official LQVG state dict holds its box heads twice (box refinement shares them with the decoder):
/// `transformer.decoder.bbox_embed.*` is an alias of `bbox_embed.*`.
pub(crate) fn lqvg_alias(key: &str) -> Option<String> {
    key.strip_prefix("transformer.decoder.bbox_embed.")
        .map(|rest| format!("bbox_embed.{rest}"))
}

/// Checks `shapes` against what `module` needs (missing, mis-shaped, unexpected tensors → typed errors
/// naming the key), then loads the file into it through `burn-store` with the key table. `is_alias` says
/// which extra keys are duplicates of needed ones (official checkpoints store shared modules twice).
pub(crate) fn check_and_load<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: M,
    path: &Path,
    shapes: &Shapes,
    what: &str,
    is_alias: &dyn Fn(&str) -> Option<String>,
) -> Result<M, GroundingError> {
    let expected = expected_shapes::<B, M>(&module, &KEYS);
    check_shapes(
        path,
        &expected,
        &shapes.tensors,
        |key, shape| {
            let aliased =
                is_alias(key).is_some_and(|k| expected.get(&k).map(Vec::as_slice) == Some(shape));
            !is_ignored_buffer(key) && !aliased
        },
        || what.to_string(),
    )?;
    Ok(load_into(
        module,
        path,
        shapes,
        &KEYS.remap_patterns(),
        true,
    )?)
}
