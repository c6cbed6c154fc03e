//! The SAM architecture: named variants, small test configurations, inference from checkpoint shapes.

use crate::SamError;
use std::collections::BTreeMap;

/// SAM's architecture. The official variants are [`SamConfig::vit_b`], [`SamConfig::vit_l`] and
/// [`SamConfig::vit_h`]; any other combination (e.g. the tiny configurations of the parity tests) is valid as
/// long as [`SamConfig::validate`] accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamConfig {
    /// Side of the square encoder input in pixels (1024 for the official models).
    pub image_size: usize,
    /// Patch side in pixels (16).
    pub patch_size: usize,
    /// ViT width.
    pub embed_dim: usize,
    /// Number of ViT blocks.
    pub depth: usize,
    /// Attention heads of the ViT.
    pub num_heads: usize,
    /// ViT MLP hidden width (4 × `embed_dim`).
    pub mlp_dim: usize,
    /// Window side of the windowed-attention blocks, in patches (14).
    pub window_size: usize,
    /// Indices of the blocks with global attention.
    pub global_attn_indexes: Vec<usize>,
    /// Width of the image embedding, the prompt embeddings and the decoder (256).
    pub prompt_dim: usize,
    /// Channels of the mask-input downscaling (16).
    pub mask_in_chans: usize,
    /// Two-way transformer depth (2).
    pub decoder_depth: usize,
    /// Two-way transformer heads (8). Not visible in the weights' shapes.
    pub decoder_heads: usize,
    /// Two-way transformer MLP width (2048).
    pub decoder_mlp_dim: usize,
    /// IoU head hidden width (256).
    pub iou_head_hidden_dim: usize,
    /// IoU head depth (3).
    pub iou_head_depth: usize,
    /// Mask outputs besides the single-mask one (3).
    pub num_multimask_outputs: usize,
}

impl SamConfig {
    fn official(embed_dim: usize, depth: usize, num_heads: usize, global: [usize; 4]) -> Self {
        Self {
            image_size: 1024,
            patch_size: 16,
            embed_dim,
            depth,
            num_heads,
            mlp_dim: 4 * embed_dim,
            window_size: 14,
            global_attn_indexes: global.to_vec(),
            prompt_dim: 256,
            mask_in_chans: 16,
            decoder_depth: 2,
            decoder_heads: 8,
            decoder_mlp_dim: 2048,
            iou_head_hidden_dim: 256,
            iou_head_depth: 3,
            num_multimask_outputs: 3,
        }
    }

    /// ViT-B (`sam_vit_b_01ec64.pth`): 768 wide, 12 blocks, 12 heads, global blocks 2, 5, 8, 11.
    pub fn vit_b() -> Self {
        Self::official(768, 12, 12, [2, 5, 8, 11])
    }

    /// ViT-L (`sam_vit_l_0b3195.pth`): 1024 wide, 24 blocks, 16 heads, global blocks 5, 11, 17, 23.
    pub fn vit_l() -> Self {
        Self::official(1024, 24, 16, [5, 11, 17, 23])
    }

    /// ViT-H (`sam_vit_h_4b8939.pth`): 1280 wide, 32 blocks, 16 heads, global blocks 7, 15, 23, 31.
    pub fn vit_h() -> Self {
        Self::official(1280, 32, 16, [7, 15, 23, 31])
    }

    /// A named variant: `vit_b`, `vit_l` or `vit_h`.
    ///
    /// # Errors
    /// [`SamError::Config`] for another name.
    pub fn variant(name: &str) -> Result<Self, SamError> {
        match name {
            "vit_b" => Ok(Self::vit_b()),
            "vit_l" => Ok(Self::vit_l()),
            "vit_h" => Ok(Self::vit_h()),
            other => Err(SamError::Config(format!(
                "unknown variant {other:?}: use vit_b, vit_l or vit_h"
            ))),
        }
    }

    /// Side of the image embedding grid in patches (`image_size / patch_size`, 64).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Checks that the sizes fit together.
    ///
    /// # Errors
    /// [`SamError::Config`] naming the first inconsistency.
    pub fn validate(&self) -> Result<(), SamError> {
        let bad = |m: String| Err(SamError::Config(m));
        let positive = [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("mlp_dim", self.mlp_dim),
            ("prompt_dim", self.prompt_dim),
            ("mask_in_chans", self.mask_in_chans),
            ("decoder_depth", self.decoder_depth),
            ("decoder_heads", self.decoder_heads),
            ("decoder_mlp_dim", self.decoder_mlp_dim),
            ("iou_head_hidden_dim", self.iou_head_hidden_dim),
            ("iou_head_depth", self.iou_head_depth),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{name} must be positive"));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return bad(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if !self.prompt_dim.is_multiple_of(8) {
            return bad(format!(
                "prompt_dim {} must be a multiple of 8",
                self.prompt_dim
            ));
        }
        if !(self.prompt_dim / 2).is_multiple_of(self.decoder_heads) {
            return bad(format!(
                "prompt_dim / 2 = {} is not divisible by decoder_heads {}",
                self.prompt_dim / 2,
                self.decoder_heads
            ));
        }
        if !self.mask_in_chans.is_multiple_of(4) {
            return bad(format!(
                "mask_in_chans {} must be a multiple of 4",
                self.mask_in_chans
            ));
        }
        if let Some(i) = self.global_attn_indexes.iter().find(|&&i| i >= self.depth) {
            return bad(format!("global block {i} ≥ depth {}", self.depth));
        }
        let windowed = (0..self.depth).any(|i| !self.global_attn_indexes.contains(&i));
        if windowed && self.window_size == 0 {
            return bad("window_size must be positive when some block is windowed".into());
        }
        Ok(())
    }

    /// The architecture of a state dict from its tensor shapes (key → shape, official key names).
    ///
    /// Inferred: image and patch size, widths, depths, ViT heads (from the relative-position tables' head
    /// dimension), window size and global blocks (from the tables' lengths), prompt dim, mask-input channels,
    /// decoder depth and MLP width, IoU head, number of mask outputs. Not visible in shapes: the decoder's
    /// head count, taken from `decoder_heads` (8 in all official variants).
    ///
    /// # Errors
    /// [`SamError::Config`] when a tensor needed for the inference is absent or shapes contradict each other.
    pub fn infer(
        shapes: &BTreeMap<String, Vec<usize>>,
        decoder_heads: usize,
    ) -> Result<Self, SamError> {
        let get = |key: &str, rank: usize| -> Result<&[usize], SamError> {
            match shapes.get(key) {
                Some(s) if s.len() == rank => Ok(s),
                Some(s) => Err(SamError::Config(format!(
                    "`{key}` has shape {s:?}, expected rank {rank}; not a SAM checkpoint?"
                ))),
                None => Err(SamError::Config(format!(
                    "no tensor `{key}`; not a SAM checkpoint (or its keys carry a prefix)?"
                ))),
            }
        };
        let count = |prefix: &str, suffix: &str| {
            (0..)
                .take_while(|i| shapes.contains_key(&format!("{prefix}{i}{suffix}")))
                .count()
        };
        let patch = get("image_encoder.patch_embed.proj.weight", 4)?;
        let (embed_dim, patch_size) = (patch[0], patch[2]);
        let pos = get("image_encoder.pos_embed", 4)?;
        let grid = pos[1];
        let depth = count("image_encoder.blocks.", ".norm1.weight");
        if depth == 0 {
            return Err(SamError::Config("no image_encoder.blocks.*".into()));
        }
        let mut window_size = 0;
        let mut global = Vec::new();
        let mut head_dim = 0;
        for i in 0..depth {
            let rel = get(&format!("image_encoder.blocks.{i}.attn.rel_pos_h"), 2)?;
            head_dim = rel[1];
            let side = rel[0].div_ceil(2);
            if side == grid {
                global.push(i);
            } else if window_size == 0 || window_size == side {
                window_size = side;
            } else {
                return Err(SamError::Config(format!(
                    "block {i} has window {side} but an earlier block {window_size}"
                )));
            }
        }
        if head_dim == 0 || embed_dim % head_dim != 0 {
            return Err(SamError::Config(format!(
                "head dimension {head_dim} does not divide embed_dim {embed_dim}"
            )));
        }
        let mlp_dim = get("image_encoder.blocks.0.mlp.lin1.weight", 2)?[0];
        let prompt_dim = get("image_encoder.neck.0.weight", 4)?[0];
        let mask_in_chans = get("prompt_encoder.mask_downscaling.3.weight", 4)?[0];
        let decoder_depth = count("mask_decoder.transformer.layers.", ".norm1.weight");
        let decoder_mlp_dim = get("mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)?[0];
        let iou_head_hidden_dim = get("mask_decoder.iou_prediction_head.layers.0.weight", 2)?[0];
        let iou_head_depth = count("mask_decoder.iou_prediction_head.layers.", ".weight");
        let mask_tokens = get("mask_decoder.mask_tokens.weight", 2)?[0];
        let config = Self {
            image_size: grid * patch_size,
            patch_size,
            embed_dim,
            depth,
            num_heads: embed_dim / head_dim,
            mlp_dim,
            window_size,
            global_attn_indexes: global,
            prompt_dim,
            mask_in_chans,
            decoder_depth,
            decoder_heads,
            decoder_mlp_dim,
            iou_head_hidden_dim,
            iou_head_depth,
            num_multimask_outputs: mask_tokens.saturating_sub(1),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_variants_are_valid() {
        for c in [SamConfig::vit_b(), SamConfig::vit_l(), SamConfig::vit_h()] {
            c.validate().unwrap();
            assert_eq!(c.grid(), 64);
        }
        assert!(SamConfig::variant("vit_x").is_err());
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut c = SamConfig::vit_b();
        c.num_heads = 7;
        assert!(c.validate().is_err());
        let mut c = SamConfig::vit_b();
        c.global_attn_indexes.push(12);
        assert!(c.validate().is_err());
        let mut c = SamConfig::vit_b();
        c.image_size = 1000;
        assert!(c.validate().is_err());
    }
}
