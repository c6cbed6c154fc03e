//! Checkpoint loading (official `build_sam.py` / `load_state_dict`): the key table of this port, and the
//! loaders over the shared checkpoint layer (`pslg-checkpoint`: shapes, checks, burn-store).

use crate::{Sam, SamConfig, SamError};
use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use pslg_checkpoint::{KeyMap, check_shapes, load_into, read_shapes};
use std::collections::BTreeMap;
use std::path::Path;

/// The only places where this port's module paths differ from the official state-dict keys: the official
/// code's `nn.Sequential` children are numbered, this port names them. (official prefix, port prefix)
pub(crate) const KEYS: KeyMap = KeyMap(&[
    // MobileSAM's TinyViT patch embedding (`seq.1` is the GELU).
    (
        "image_encoder.patch_embed.seq.0.",
        "image_encoder.patch_embed.conv1.",
    ),
    (
        "image_encoder.patch_embed.seq.2.",
        "image_encoder.patch_embed.conv2.",
    ),
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
]);

/// Prefix of the mask decoder's keys in an official state dict.
const DECODER_PREFIX: &str = "mask_decoder.";

/// Tensors of an official MobileSAM state dict that its forward pass never reads: BatchNorm's
/// `num_batches_tracked` counters and TinyViT's ImageNet classifier (`norm_head`, `head`), kept by the
/// official `load_state_dict` but unused by `forward_features`. They are checked for presence by nothing
/// and skipped on load.
fn unused_tiny_vit_key(key: &str) -> bool {
    key.ends_with(".num_batches_tracked")
        || key.starts_with("image_encoder.norm_head.")
        || key.starts_with("image_encoder.head.")
}

impl SamConfig {
    /// The architecture of a checkpoint file: [`SamConfig::infer`] on its tensor shapes (no tensor data is
    /// read). Adjust what the weights cannot tell (a TinyViT's input size) and load with
    /// [`Sam::load_with_config`].
    ///
    /// # Errors
    /// As [`Sam::load`].
    pub fn from_checkpoint(
        path: impl AsRef<Path>,
        decoder_heads: Option<usize>,
    ) -> Result<Self, SamError> {
        let shapes = read_shapes(path.as_ref())?;
        Self::infer(&shapes.tensors, decoder_heads.unwrap_or(8))
    }
}

impl<B: Backend> Sam<B> {
    /// Loads an official checkpoint (`sam_vit_{b,l,h}_*.pth`, MobileSAM's `mobile_sam.pt`, or a
    /// `.safetensors` export of the same state dict) unmodified, the architecture (ViT or TinyViT, and its
    /// sizes) inferred from its shapes ([`SamConfig::infer`]); `decoder_heads` (not visible in shapes)
    /// defaults to the official 8.
    ///
    /// # Errors
    /// [`SamError::Checkpoint`] for an unreadable or truncated file and for a missing, unexpected or
    /// mis-shaped tensor (naming the key); [`SamError::Config`] when the shapes are not SAM's.
    pub fn load(
        path: impl AsRef<Path>,
        decoder_heads: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, SamError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        let config = SamConfig::infer(&shapes.tensors, decoder_heads.unwrap_or(8))?;
        Self::load_checked(path, config, &shapes, device)
    }

    /// Loads a checkpoint into the given architecture (e.g. a named variant), checking every tensor.
    ///
    /// # Errors
    /// As [`Sam::load`].
    pub fn load_with_config(
        path: impl AsRef<Path>,
        config: SamConfig,
        device: &B::Device,
    ) -> Result<Self, SamError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        Self::load_checked(path, config, &shapes, device)
    }

    /// Official key → shape of every tensor this architecture needs.
    pub fn expected_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        pslg_checkpoint::expected_shapes::<B, _>(self, &KEYS)
    }

    /// Writes the mask decoder alone as a safetensors file with the official key names
    /// (`mask_decoder.…`): what `pslg finetune-decoder` produces and [`Sam::load_decoder`] reads.
    ///
    /// # Errors
    /// [`SamError::WriteCheckpoint`] (naming the file) when it cannot be written.
    pub fn save_decoder(&self, path: impl AsRef<Path>) -> Result<(), SamError> {
        let path = path.as_ref();
        let mut store = SafetensorsStore::from_file(path)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .overwrite(true)
            .with_key_remapping("^", DECODER_PREFIX);
        for (official, port) in KEYS.0 {
            if official.starts_with(DECODER_PREFIX) {
                store = store.with_key_remapping(format!("^{}", regex_escape(port)), *official);
            }
        }
        self.mask_decoder
            .save_into(&mut store)
            .map_err(|e| SamError::WriteCheckpoint {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Replaces the mask decoder's weights with those of `path`: a file [`Sam::save_decoder`] wrote (a
    /// fine-tuned decoder), or any SAM checkpoint of the same architecture (only its `mask_decoder.*`
    /// tensors are read). The image and prompt encoders are untouched.
    ///
    /// # Errors
    /// [`SamError::Checkpoint`] for an unreadable file, or naming the decoder key that is missing, unexpected
    /// or mis-shaped (e.g. a decoder fine-tuned from another SAM variant).
    pub fn load_decoder(mut self, path: impl AsRef<Path>) -> Result<Self, SamError> {
        let path = path.as_ref();
        let shapes = read_shapes(path)?;
        let expected: BTreeMap<String, Vec<usize>> = self
            .expected_shapes()
            .into_iter()
            .filter(|(k, _)| k.starts_with(DECODER_PREFIX))
            .collect();
        check_shapes(
            path,
            &expected,
            &shapes.tensors,
            |k, _| k.starts_with(DECODER_PREFIX),
            || format!("the mask decoder of {:?}", self.config()),
        )?;
        // Official decoder keys → the decoder's own paths: the Sequential renames, then the prefix dropped.
        let patterns: Vec<(String, String)> = KEYS
            .0
            .iter()
            .filter(|(official, _)| official.starts_with(DECODER_PREFIX))
            .map(|(official, port)| (format!("^{}", regex_escape(official)), port.to_string()))
            .chain([(format!("^{}", regex_escape(DECODER_PREFIX)), String::new())])
            .collect();
        self.mask_decoder = load_into(self.mask_decoder, path, &shapes, &patterns, true)?;
        Ok(self)
    }

    fn load_checked(
        path: &Path,
        config: SamConfig,
        shapes: &pslg_checkpoint::Shapes,
        device: &B::Device,
    ) -> Result<Self, SamError> {
        let model = Self::new(config, device)?;
        let expected = model.expected_shapes();
        let tiny = model.config().encoder.tiny_vit().is_some();
        check_shapes(
            path,
            &expected,
            &shapes.tensors,
            |key, _| !(tiny && unused_tiny_vit_key(key)),
            || format!("{:?}", model.config()),
        )?;
        let patterns: Vec<(String, String)> = KEYS
            .remap_patterns()
            .into_iter()
            .map(|(from, to)| (format!("^{from}"), to))
            .collect();
        Ok(load_into(model, path, shapes, &patterns, tiny)?)
    }
}

/// `.` escaped for a regex (the table's keys have no other special character).
fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}
