//! The SAM architecture: named variants, small test configurations, inference from checkpoint shapes.
//! The image encoder is either SAM's ViT ([`VitConfig`]) or MobileSAM's TinyViT ([`TinyVitConfig`]); the
//! prompt encoder and mask decoder are the same for both.

use crate::SamError;
use std::collections::BTreeMap;

/// SAM's architecture. The official variants are [`SamConfig::vit_b`], [`SamConfig::vit_l`],
/// [`SamConfig::vit_h`] and MobileSAM's [`SamConfig::vit_t`]; any other combination (e.g. the tiny
/// configurations of the parity tests) is valid as long as [`SamConfig::validate`] accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamConfig {
    /// Side of the square encoder input in pixels (1024 for the official models).
    pub image_size: usize,
    /// The image encoder.
    pub encoder: EncoderConfig,
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

/// Which image encoder a [`SamConfig`] has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderConfig {
    /// SAM's ViT (`segment_anything/modeling/image_encoder.py`).
    Vit(VitConfig),
    /// MobileSAM's TinyViT (`mobile_sam/modeling/tiny_vit_sam.py`).
    TinyVit(TinyVitConfig),
}

/// SAM's ViT image encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VitConfig {
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
}

/// MobileSAM's TinyViT image encoder: a convolutional stage (MBConv blocks) then attention stages (windowed
/// attention with attention biases, a depthwise "local" convolution, an MLP), a patch merging between
/// stages, and SAM's neck. Entry `i` of each list describes stage `i`; the heads and window of stage 0 (the
/// convolutional one) are unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyVitConfig {
    /// Width of each stage (`[64, 128, 160, 320]` for MobileSAM).
    pub embed_dims: Vec<usize>,
    /// Blocks per stage (`[2, 2, 6, 2]`).
    pub depths: Vec<usize>,
    /// Attention heads per stage (`[2, 4, 5, 10]`).
    pub num_heads: Vec<usize>,
    /// Attention window side per stage (`[7, 7, 14, 7]`).
    pub window_sizes: Vec<usize>,
    /// MLP hidden width ÷ stage width (4).
    pub mlp_ratio: usize,
    /// MBConv hidden width ÷ stage width (4).
    pub mbconv_expand_ratio: usize,
    /// Kernel side of the depthwise convolution between attention and MLP (3).
    pub local_conv_size: usize,
}

impl TinyVitConfig {
    /// MobileSAM's encoder (`build_sam_vit_t`): TinyViT-5M.
    pub fn mobile_sam() -> Self {
        Self {
            embed_dims: vec![64, 128, 160, 320],
            depths: vec![2, 2, 6, 2],
            num_heads: vec![2, 4, 5, 10],
            window_sizes: vec![7, 7, 14, 7],
            mlp_ratio: 4,
            mbconv_expand_ratio: 4,
            local_conv_size: 3,
        }
    }

    /// Stride of the patch merging after stage `i` (`i + 1 < stages`). The official `PatchMerging` keeps
    /// the resolution (stride 1) when its output width is 320, 448 or 576 (the last stage of the 5M, 11M
    /// and 21M models) and halves it otherwise.
    pub fn merging_stride(&self, i: usize) -> usize {
        if matches!(self.embed_dims[i + 1], 320 | 448 | 576) {
            1
        } else {
            2
        }
    }

    /// Total stride from the input to the embedding: 4 (the patch embedding) × the mergings' strides.
    pub fn stride(&self) -> usize {
        (0..self.embed_dims.len().saturating_sub(1))
            .map(|i| self.merging_stride(i))
            .product::<usize>()
            * 4
    }
}

impl std::fmt::Display for EncoderConfig {
    /// One line for logs: `ViT 768 wide x 12 blocks (12 heads, window 14, global [2, 5, 8, 11])` or
    /// `TinyViT (MobileSAM) widths [64, 128, 160, 320], blocks [2, 2, 6, 2], …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vit(v) => write!(
                f,
                "ViT {} wide x {} blocks ({} heads, window {}, global {:?})",
                v.embed_dim, v.depth, v.num_heads, v.window_size, v.global_attn_indexes
            ),
            Self::TinyVit(t) => write!(
                f,
                "TinyViT (MobileSAM) widths {:?}, blocks {:?}, heads {:?}, windows {:?}",
                t.embed_dims,
                t.depths,
                &t.num_heads[1..],
                &t.window_sizes[1..]
            ),
        }
    }
}

impl EncoderConfig {
    /// Input pixels per embedding cell (16 for every official model).
    pub fn stride(&self) -> usize {
        match self {
            Self::Vit(v) => v.patch_size,
            Self::TinyVit(t) => t.stride(),
        }
    }

    /// The ViT configuration, if this is a ViT.
    pub fn vit(&self) -> Option<&VitConfig> {
        match self {
            Self::Vit(v) => Some(v),
            Self::TinyVit(_) => None,
        }
    }

    /// The TinyViT configuration, if this is MobileSAM's encoder.
    pub fn tiny_vit(&self) -> Option<&TinyVitConfig> {
        match self {
            Self::Vit(_) => None,
            Self::TinyVit(t) => Some(t),
        }
    }

    /// `"vit"` or `"tiny_vit"`.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Vit(_) => "vit",
            Self::TinyVit(_) => "tiny_vit",
        }
    }
}

impl SamConfig {
    /// The official prompt encoder and mask decoder around `encoder`, at 1024 px.
    fn official(encoder: EncoderConfig) -> Self {
        Self {
            image_size: 1024,
            encoder,
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

    fn official_vit(embed_dim: usize, depth: usize, num_heads: usize, global: [usize; 4]) -> Self {
        Self::official(EncoderConfig::Vit(VitConfig {
            patch_size: 16,
            embed_dim,
            depth,
            num_heads,
            mlp_dim: 4 * embed_dim,
            window_size: 14,
            global_attn_indexes: global.to_vec(),
        }))
    }

    /// ViT-B (`sam_vit_b_01ec64.pth`): 768 wide, 12 blocks, 12 heads, global blocks 2, 5, 8, 11.
    pub fn vit_b() -> Self {
        Self::official_vit(768, 12, 12, [2, 5, 8, 11])
    }

    /// ViT-L (`sam_vit_l_0b3195.pth`): 1024 wide, 24 blocks, 16 heads, global blocks 5, 11, 17, 23.
    pub fn vit_l() -> Self {
        Self::official_vit(1024, 24, 16, [5, 11, 17, 23])
    }

    /// ViT-H (`sam_vit_h_4b8939.pth`): 1280 wide, 32 blocks, 16 heads, global blocks 7, 15, 23, 31.
    pub fn vit_h() -> Self {
        Self::official_vit(1280, 32, 16, [7, 15, 23, 31])
    }

    /// MobileSAM (`weights/mobile_sam.pt`, `build_sam_vit_t`): the TinyViT-5M encoder
    /// ([`TinyVitConfig::mobile_sam`]) with SAM's prompt encoder and decoder.
    pub fn vit_t() -> Self {
        Self::official(EncoderConfig::TinyVit(TinyVitConfig::mobile_sam()))
    }

    /// A named variant: `vit_b`, `vit_l`, `vit_h` or `vit_t` (MobileSAM).
    ///
    /// # Errors
    /// [`SamError::Config`] for another name.
    pub fn variant(name: &str) -> Result<Self, SamError> {
        match name {
            "vit_b" => Ok(Self::vit_b()),
            "vit_l" => Ok(Self::vit_l()),
            "vit_h" => Ok(Self::vit_h()),
            "vit_t" => Ok(Self::vit_t()),
            other => Err(SamError::Config(format!(
                "unknown variant {other:?}: use vit_b, vit_l, vit_h or vit_t"
            ))),
        }
    }

    /// Side of the image embedding grid (`image_size / stride`, 64).
    pub fn grid(&self) -> usize {
        self.image_size / self.encoder.stride().max(1)
    }

    /// Checks that the sizes fit together.
    ///
    /// # Errors
    /// [`SamError::Config`] naming the first inconsistency.
    pub fn validate(&self) -> Result<(), SamError> {
        let bad = |m: String| Err(SamError::Config(m));
        let positive = [
            ("image_size", self.image_size),
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
        match &self.encoder {
            EncoderConfig::Vit(v) => v.validate()?,
            EncoderConfig::TinyVit(t) => t.validate()?,
        }
        let stride = self.encoder.stride();
        if !self.image_size.is_multiple_of(stride) {
            return bad(format!(
                "image_size {} is not a multiple of the encoder's stride {stride}",
                self.image_size
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
        Ok(())
    }

    /// The architecture of a state dict from its tensor shapes (key → shape, official key names). The
    /// encoder family is told by its keys: `image_encoder.pos_embed` for SAM's ViT,
    /// `image_encoder.patch_embed.seq.*` for MobileSAM's TinyViT.
    ///
    /// Inferred for the ViT: image and patch size, widths, depth, heads (from the relative-position tables'
    /// head dimension), window size and global blocks (from the tables' lengths). For TinyViT: every
    /// stage's width, depth, heads (the attention biases' rows) and window (their columns are window²),
    /// the MLP and MBConv ratios and the local convolution; its input size is not in the weights and is
    /// the official 1024 (the official code fixes a 64 × 64 embedding). For both: prompt dim, mask-input
    /// channels, decoder depth and MLP width, IoU head, number of mask outputs. Not visible in shapes: the
    /// decoder's head count, taken from `decoder_heads` (8 in all official variants).
    ///
    /// # Errors
    /// [`SamError::Config`] when a tensor needed for the inference is absent or shapes contradict each other.
    pub fn infer(
        shapes: &BTreeMap<String, Vec<usize>>,
        decoder_heads: usize,
    ) -> Result<Self, SamError> {
        let s = ShapeReader(shapes);
        let (image_size, encoder) = if shapes.contains_key("image_encoder.pos_embed") {
            VitConfig::infer(&s)?
        } else if shapes.contains_key("image_encoder.patch_embed.seq.0.c.weight") {
            (1024, EncoderConfig::TinyVit(TinyVitConfig::infer(&s)?))
        } else {
            return Err(SamError::Config(
                "neither `image_encoder.pos_embed` (SAM's ViT) nor `image_encoder.patch_embed.seq.0.c.weight` \
                 (MobileSAM's TinyViT): not a SAM checkpoint (or its keys carry a prefix)?"
                    .into(),
            ));
        };
        let mask_tokens = s.get("mask_decoder.mask_tokens.weight", 2)?[0];
        let config = Self {
            image_size,
            encoder,
            prompt_dim: s.get("image_encoder.neck.0.weight", 4)?[0],
            mask_in_chans: s.get("prompt_encoder.mask_downscaling.3.weight", 4)?[0],
            decoder_depth: s.count("mask_decoder.transformer.layers.", ".norm1.weight"),
            decoder_heads,
            decoder_mlp_dim: s.get("mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)?[0],
            iou_head_hidden_dim: s.get("mask_decoder.iou_prediction_head.layers.0.weight", 2)?[0],
            iou_head_depth: s.count("mask_decoder.iou_prediction_head.layers.", ".weight"),
            num_multimask_outputs: mask_tokens.saturating_sub(1),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Shape lookups with errors that name the key.
struct ShapeReader<'a>(&'a BTreeMap<String, Vec<usize>>);

impl ShapeReader<'_> {
    fn get(&self, key: &str, rank: usize) -> Result<&[usize], SamError> {
        match self.0.get(key) {
            Some(s) if s.len() == rank => Ok(s),
            Some(s) => Err(SamError::Config(format!(
                "`{key}` has shape {s:?}, expected rank {rank}; not a SAM checkpoint?"
            ))),
            None => Err(SamError::Config(format!(
                "no tensor `{key}`; not a SAM checkpoint (or its keys carry a prefix)?"
            ))),
        }
    }

    /// How many `{prefix}{i}{suffix}` keys there are for i = 0, 1, … (stopping at the first gap).
    fn count(&self, prefix: &str, suffix: &str) -> usize {
        (0..)
            .take_while(|i| self.0.contains_key(&format!("{prefix}{i}{suffix}")))
            .count()
    }
}

impl VitConfig {
    fn validate(&self) -> Result<(), SamError> {
        let bad = |m: String| Err(SamError::Config(m));
        let positive = [
            ("patch_size", self.patch_size),
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("mlp_dim", self.mlp_dim),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{name} must be positive"));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
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

    /// The image size and ViT of a SAM state dict.
    fn infer(s: &ShapeReader<'_>) -> Result<(usize, EncoderConfig), SamError> {
        let patch = s.get("image_encoder.patch_embed.proj.weight", 4)?;
        let (embed_dim, patch_size) = (patch[0], patch[2]);
        let grid = s.get("image_encoder.pos_embed", 4)?[1];
        let depth = s.count("image_encoder.blocks.", ".norm1.weight");
        if depth == 0 {
            return Err(SamError::Config("no image_encoder.blocks.*".into()));
        }
        let mut window_size = 0;
        let mut global = Vec::new();
        let mut head_dim = 0;
        for i in 0..depth {
            let rel = s.get(&format!("image_encoder.blocks.{i}.attn.rel_pos_h"), 2)?;
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
        let vit = VitConfig {
            patch_size,
            embed_dim,
            depth,
            num_heads: embed_dim / head_dim,
            mlp_dim: s.get("image_encoder.blocks.0.mlp.lin1.weight", 2)?[0],
            window_size,
            global_attn_indexes: global,
        };
        Ok((grid * patch_size, EncoderConfig::Vit(vit)))
    }
}

impl TinyVitConfig {
    fn validate(&self) -> Result<(), SamError> {
        let bad = |m: String| Err(SamError::Config(m));
        let n = self.embed_dims.len();
        if n < 2 {
            return bad(format!(
                "TinyViT needs a convolutional stage and at least one attention stage, got {n} stage(s)"
            ));
        }
        for (name, len) in [
            ("depths", self.depths.len()),
            ("num_heads", self.num_heads.len()),
            ("window_sizes", self.window_sizes.len()),
        ] {
            if len != n {
                return bad(format!("TinyViT {name} has {len} entries for {n} stages"));
            }
        }
        if self.mlp_ratio == 0 || self.mbconv_expand_ratio == 0 || self.local_conv_size % 2 == 0 {
            return bad(format!(
                "TinyViT mlp_ratio {} and mbconv_expand_ratio {} must be positive, local_conv_size {} odd",
                self.mlp_ratio, self.mbconv_expand_ratio, self.local_conv_size
            ));
        }
        if self.embed_dims[0] < 2 || self.embed_dims[0] % 2 != 0 {
            return bad(format!(
                "TinyViT's first width {} must be even (the patch embedding halves it)",
                self.embed_dims[0]
            ));
        }
        for i in 0..n {
            if self.depths[i] == 0 || self.embed_dims[i] == 0 {
                return bad(format!("TinyViT stage {i} has no blocks or no width"));
            }
            if i > 0 {
                let (d, h, w) = (self.embed_dims[i], self.num_heads[i], self.window_sizes[i]);
                if h == 0 || w == 0 || d % h != 0 {
                    return bad(format!(
                        "TinyViT stage {i}: width {d} must split into {h} heads, window {w} positive"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The TinyViT of a MobileSAM state dict.
    fn infer(s: &ShapeReader<'_>) -> Result<Self, SamError> {
        let stages = (0..)
            .take_while(|i| {
                let p = format!("image_encoder.layers.{i}.blocks.0.");
                s.0.contains_key(&format!("{p}conv1.c.weight"))
                    || s.0.contains_key(&format!("{p}attn.attention_biases"))
            })
            .count();
        if stages < 2 {
            return Err(SamError::Config(format!(
                "TinyViT checkpoint with {stages} stage(s) under image_encoder.layers.*: expected a \
                 convolutional stage and attention stages"
            )));
        }
        let mut cfg = TinyVitConfig {
            embed_dims: vec![],
            depths: vec![],
            num_heads: vec![0],
            window_sizes: vec![0],
            mlp_ratio: 0,
            mbconv_expand_ratio: 0,
            local_conv_size: 0,
        };
        let conv1 = s.get("image_encoder.layers.0.blocks.0.conv1.c.weight", 4)?;
        let (hidden, dim0) = (conv1[0], conv1[1]);
        cfg.embed_dims.push(dim0);
        cfg.mbconv_expand_ratio = hidden / dim0.max(1);
        cfg.depths
            .push(s.count("image_encoder.layers.0.blocks.", ".conv1.c.weight"));
        for i in 1..stages {
            let p = format!("image_encoder.layers.{i}.blocks.");
            let biases = s.get(&format!("{p}0.attn.attention_biases"), 2)?;
            let dim = s.get(&format!("{p}0.attn.norm.weight"), 1)?[0];
            let window = (biases[1] as f64).sqrt().round() as usize;
            if window * window != biases[1] {
                return Err(SamError::Config(format!(
                    "`{p}0.attn.attention_biases` has {} offsets, not a square window",
                    biases[1]
                )));
            }
            cfg.embed_dims.push(dim);
            cfg.num_heads.push(biases[0]);
            cfg.window_sizes.push(window);
            cfg.depths.push(s.count(&p, ".attn.attention_biases"));
            if i == 1 {
                let fc1 = s.get(&format!("{p}0.mlp.fc1.weight"), 2)?;
                cfg.mlp_ratio = fc1[0] / dim.max(1);
                cfg.local_conv_size = s.get(&format!("{p}0.local_conv.c.weight"), 4)?[2];
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_variants_are_valid() {
        for c in [
            SamConfig::vit_b(),
            SamConfig::vit_l(),
            SamConfig::vit_h(),
            SamConfig::vit_t(),
        ] {
            c.validate().unwrap();
            assert_eq!(c.grid(), 64);
        }
        assert!(SamConfig::variant("vit_x").is_err());
        assert_eq!(SamConfig::variant("vit_t").unwrap(), SamConfig::vit_t());
    }

    #[test]
    fn tiny_vit_strides_follow_the_official_merging_rule() {
        let t = TinyVitConfig::mobile_sam();
        // 4 (patch embedding) × 2 × 2 × 1 (the merging into the 320-wide stage keeps the resolution).
        assert_eq!(
            (0..3).map(|i| t.merging_stride(i)).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!(t.stride(), 16);
    }

    fn vit(c: &mut SamConfig) -> &mut VitConfig {
        match &mut c.encoder {
            EncoderConfig::Vit(v) => v,
            EncoderConfig::TinyVit(_) => unreachable!("a ViT variant"),
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut c = SamConfig::vit_b();
        vit(&mut c).num_heads = 7;
        assert!(c.validate().is_err());
        let mut c = SamConfig::vit_b();
        vit(&mut c).global_attn_indexes.push(12);
        assert!(c.validate().is_err());
        let mut c = SamConfig::vit_b();
        c.image_size = 1000;
        assert!(c.validate().is_err());
        let mut c = SamConfig::vit_t();
        if let EncoderConfig::TinyVit(t) = &mut c.encoder {
            t.num_heads[2] = 3;
        }
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_family_is_told_by_the_keys() {
        let shapes: BTreeMap<String, Vec<usize>> =
            [("mask_decoder.mask_tokens.weight".to_string(), vec![4, 256])].into();
        let err = SamConfig::infer(&shapes, 8).unwrap_err().to_string();
        assert!(
            err.contains("pos_embed") && err.contains("TinyViT"),
            "{err}"
        );
    }
}
