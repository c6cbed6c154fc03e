//! The ViT image encoder (`segment_anything/modeling/image_encoder.py`): patch embedding, absolute position
//! embedding, blocks with windowed or global attention and decomposed relative-position bias, neck.
//! [`ImageEncoder`] is the encoder a [`Sam`](crate::Sam) holds: this ViT or MobileSAM's TinyViT.

use crate::common::{LayerNorm2d, MlpBlock};
use crate::conv_host::{conv_tokens, layer_norm_channels};
use crate::kernels::{
    AttentionShape, Depthwise, attention_host, host_f32, on_host, rel_pos_softmax_ops,
};
use crate::linear_host::{Activation, linear};
use crate::tiny_vit::TinyViT;
use crate::tiny_vit_host::Grid;
use crate::{EncoderConfig, SamConfig, VitConfig};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Patch embedding: a `patch × patch` convolution with stride `patch`.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// The projection.
    pub proj: Conv2d<B>,
}

impl<B: Backend> PatchEmbed<B> {
    /// `(B, 3, S, S)` → `(B, S/p, S/p, E)`. The patches do not overlap, so the convolution is one matmul of
    /// the flattened patches with the flattened kernel (same products, one dot product per output).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let [e, _, p, _] = self.proj.weight.dims();
        let (gh, gw) = (h / p, w / p);
        let patches = x
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, c * p * p]);
        let kernel = self
            .proj
            .weight
            .val()
            .reshape([1, e, c * p * p])
            .swap_dims(1, 2);
        let y = patches.matmul(kernel);
        let y = match &self.proj.bias {
            Some(bias) => y + bias.val().reshape([1, 1, e]),
            None => y,
        };
        y.reshape([b, gh, gw, e])
    }
}

/// Multi-head attention with decomposed relative-position bias over an `H × W` token grid.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Joint q, k, v projection.
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    /// Relative-position table along the height, `(2·H − 1, head_dim)`.
    pub rel_pos_h: Param<Tensor<B, 2>>,
    /// Relative-position table along the width, `(2·W − 1, head_dim)`.
    pub rel_pos_w: Param<Tensor<B, 2>>,
    #[module(skip)]
    num_heads: usize,
}

/// `table[i − j + size − 1]` for all query rows `i` and key rows `j`: `(size, size, C)`.
fn rel_pos<B: Backend>(table: Tensor<B, 2>, size: usize) -> Tensor<B, 3> {
    let device = table.device();
    let c = table.dims()[1];
    let idx: Vec<i64> = (0..size)
        .flat_map(|i| (0..size).map(move |j| (i + size - 1 - j) as i64))
        .collect();
    let idx = Tensor::<B, 1, Int>::from_ints(idx.as_slice(), &device);
    table.select(0, idx).reshape([size, size, c])
}

impl<B: Backend> Attention<B> {
    fn new(dim: usize, heads: usize, size: usize, device: &B::Device) -> Self {
        let head_dim = dim / heads;
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            rel_pos_h: Param::from_tensor(Tensor::zeros([2 * size - 1, head_dim], device)),
            rel_pos_w: Param::from_tensor(Tensor::zeros([2 * size - 1, head_dim], device)),
            num_heads: heads,
        }
    }

    /// Attention within each `(H, W)` grid of `x` (B, H, W, C): the fused host kernel on the CPU backends,
    /// Burn tensor ops elsewhere.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if on_host::<B>(&x.device()) {
            self.forward_host(x)
        } else {
            self.forward_ops(x)
        }
    }

    /// [`Attention::forward`] through [`attention_host`].
    fn forward_host(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let device = x.device();
        let heads = self.num_heads;
        let values =
            |t: Tensor<B, 2>| -> Vec<f32> { t.into_data().convert::<f32>().iter().collect() };
        let qkv = host_f32(linear(
            &self.qkv,
            x.reshape([b, h * w, c]),
            Activation::Identity,
            None,
        ));
        let shape = AttentionShape {
            grids: b,
            h,
            w,
            heads,
            head_dim: c / heads,
        };
        let scale = ((c / heads) as f32).powf(-0.5);
        let th = values(self.rel_pos_h.val());
        let tw = values(self.rel_pos_w.val());
        let out = attention_host(&qkv, shape, &th, &tw, scale);
        let out = Tensor::from_data(TensorData::new(out, [b, h, w, c]), &device);
        linear(&self.proj, out, Activation::Identity, None)
    }

    /// [`Attention::forward`] as Burn tensor ops (any backend). Queries, keys and values stay strided
    /// views of the one `qkv` output (`(B, heads, N, hd)` with the heads' columns side by side): the batched
    /// matmuls read them in place, so no head is copied out.
    fn forward_ops(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let heads = self.num_heads;
        let hd = c / heads;
        let n = h * w;
        // (B, N, 3·C) → three (B, heads, N, hd) views.
        let qkv = self
            .qkv
            .forward(x.reshape([b, n, c]))
            .reshape([b, n, 3, heads, hd]);
        let part = |i: usize| -> Tensor<B, 4> {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([b, n, heads, hd])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let scale = (hd as f64).powf(-0.5);
        // Gathered tables, one (hd × size) matrix per query row / column, shared by every window and head.
        let rh = rel_pos(self.rel_pos_h.val(), h)
            .swap_dims(1, 2)
            .unsqueeze::<5>(); // (1, 1, h, hd, h_k)
        let rw = rel_pos(self.rel_pos_w.val(), w)
            .swap_dims(1, 2)
            .unsqueeze::<5>(); // (1, 1, w, hd, w_k)
        // Heads are processed in chunks of at most ~16 M attention entries: the (N × N) matrices of global
        // attention (12 × 4096² for ViT-B) are never all in memory, and each chunk's temporaries are reused.
        let chunk = ((16usize << 20) / (b * n * n)).clamp(1, heads);
        let mut outs = Vec::with_capacity(heads.div_ceil(chunk));
        let mut start = 0;
        while start < heads {
            let m = chunk.min(heads - start);
            let q = q.clone().narrow(1, start, m);
            let k = k.clone().narrow(1, start, m);
            let v = v.clone().narrow(1, start, m);
            let attn = q.clone().matmul(k.swap_dims(2, 3)).reshape([b * m, n, n]);
            // Decomposed relative position (unscaled q): rel_h[…, i, j, k] = q[…, i, j, :] · Rh[i, k, :] as a
            // matmul batched over the query row i, rel_w over the query column j.
            let r_q = q.reshape([b, m, h, w, hd]);
            let rel_h = r_q.clone().matmul(rh.clone()).reshape([b * m, h, w, h]);
            let rel_w = r_q
                .swap_dims(2, 3)
                .matmul(rw.clone())
                .swap_dims(2, 3)
                .reshape([b * m, h, w, w]);
            let attn = rel_pos_softmax_ops(attn, scale, rel_h, rel_w).reshape([b, m, n, n]);
            outs.push(attn.matmul(v));
            start += m;
        }
        let out = Tensor::cat(outs, 1) // (B, heads, N, hd)
            .swap_dims(1, 2)
            .reshape([b, h, w, c]);
        self.proj.forward(out)
    }
}

/// A ViT block: pre-norm attention (windowed or global) and MLP, both residual.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention (eps 1e-6).
    pub norm1: LayerNorm<B>,
    /// Attention.
    pub attn: Attention<B>,
    /// Norm before the MLP (eps 1e-6).
    pub norm2: LayerNorm<B>,
    /// MLP.
    pub mlp: MlpBlock<B>,
    /// Window side in tokens, 0 for global attention.
    #[module(skip)]
    window_size: usize,
}

/// Splits `x` (B, H, W, C) into `ws × ws` windows, zero-padding H and W up to multiples of `ws`:
/// `(B · nH · nW, ws, ws, C)` and the padded size.
pub(crate) fn window_partition<B: Backend>(
    x: Tensor<B, 4>,
    ws: usize,
) -> (Tensor<B, 4>, (usize, usize)) {
    let [b, h, w, c] = x.dims();
    let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
    let device = x.device();
    let mut x = x;
    if pw > 0 {
        x = Tensor::cat(vec![x, Tensor::zeros([b, h, pw, c], &device)], 2);
    }
    if ph > 0 {
        x = Tensor::cat(vec![x, Tensor::zeros([b, ph, w + pw, c], &device)], 1);
    }
    let (hp, wp) = (h + ph, w + pw);
    let x = x
        .reshape([b, hp / ws, ws, wp / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (hp / ws) * (wp / ws), ws, ws, c]);
    (x, (hp, wp))
}

/// Inverse of [`window_partition`], cropping the padding.
pub(crate) fn window_unpartition<B: Backend>(
    windows: Tensor<B, 4>,
    ws: usize,
    (hp, wp): (usize, usize),
    (h, w): (usize, usize),
) -> Tensor<B, 4> {
    let [n, _, _, c] = windows.dims();
    let b = n / (hp * wp / ws / ws);
    let x = windows
        .reshape([b, hp / ws, wp / ws, ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, hp, wp, c]);
    if hp > h || wp > w {
        x.narrow(1, 0, h).narrow(2, 0, w)
    } else {
        x
    }
}

impl<B: Backend> Block<B> {
    fn new(cfg: &VitConfig, grid: usize, index: usize, device: &B::Device) -> Self {
        let global = cfg.global_attn_indexes.contains(&index);
        let window_size = if global { 0 } else { cfg.window_size };
        let size = if global { grid } else { window_size };
        Self {
            norm1: LayerNormConfig::new(cfg.embed_dim)
                .with_epsilon(1e-6)
                .init(device),
            attn: Attention::new(cfg.embed_dim, cfg.num_heads, size, device),
            norm2: LayerNormConfig::new(cfg.embed_dim)
                .with_epsilon(1e-6)
                .init(device),
            mlp: MlpBlock::new(cfg.embed_dim, cfg.mlp_dim, device),
            window_size,
        }
    }

    /// `x` (B, H, W, C) → same shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = x.clone();
        let x = self.norm1.forward(x);
        let x = if self.window_size > 0 {
            let [_, h, w, _] = x.dims();
            let (win, padded) = window_partition(x, self.window_size);
            window_unpartition(self.attn.forward(win), self.window_size, padded, (h, w))
        } else {
            self.attn.forward(x)
        };
        let x = shortcut + x;
        // `x + lin2(gelu(lin1(norm2(x))))`, the GELU and the residual fused into the products.
        let hidden = linear(
            &self.mlp.lin1,
            self.norm2.forward(x.clone()),
            Activation::Gelu,
            None,
        );
        linear(&self.mlp.lin2, hidden, Activation::Identity, Some(x))
    }
}

/// The neck: 1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d (official `neck.0`–`neck.3`).
#[derive(Module, Debug)]
pub struct Neck<B: Backend> {
    /// `neck.0`.
    pub conv1: Conv2d<B>,
    /// `neck.1`.
    pub ln1: LayerNorm2d<B>,
    /// `neck.2`.
    pub conv2: Conv2d<B>,
    /// `neck.3`.
    pub ln2: LayerNorm2d<B>,
}

impl<B: Backend> Neck<B> {
    /// A placeholder neck from `input` channels to `out` (the prompt dim).
    pub fn new(input: usize, out: usize, device: &B::Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([input, out], [1, 1])
                .with_bias(false)
                .init(device),
            ln1: LayerNorm2d::new(out, device),
            conv2: Conv2dConfig::new([out, out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            ln2: LayerNorm2d::new(out, device),
        }
    }

    /// `(B, C, H, W)` → `(B, prompt_dim, H, W)`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.ln1.forward(self.conv1.forward(x));
        self.ln2.forward(self.conv2.forward(x))
    }

    /// The neck on channels-last tokens `(B, H, W, C)` → `(B, prompt_dim, H, W)`: on the CPU backends the
    /// host kernels of `conv_host.rs` (no `(B, C, H, W)` copy of the input), elsewhere [`Neck::forward`].
    pub fn forward_tokens(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let geometry = [&self.conv1, &self.conv2].map(same_size_kernel);
        let (Some(k1), Some(k2)) = (geometry[0], geometry[1]) else {
            return self.forward(x.permute([0, 3, 1, 2]));
        };
        if b * h * w * c == 0 || !on_host::<B>(&x.device()) {
            return self.forward(x.permute([0, 3, 1, 2]));
        }
        let device = x.device();
        let conv = |x: &[f32], grid: Grid, conv: &Conv2d<B>, k: usize| {
            let bias = conv.bias.as_ref().map(|b| host_f32(b.val()));
            let weight = host_f32(conv.weight.val());
            let geo = Depthwise { k, stride: 1 };
            conv_tokens(x, grid, &weight, geo, bias.as_deref(), Activation::Identity).0
        };
        let norm = |x: &mut [f32], ln: &LayerNorm2d<B>| {
            layer_norm_channels(
                x,
                &host_f32(ln.weight.val()),
                &host_f32(ln.bias.val()),
                1e-6,
            );
        };
        let o = self.conv1.weight.dims()[0];
        let mut y = conv(&host_f32(x), Grid { b, h, w, c }, &self.conv1, k1);
        norm(&mut y, &self.ln1);
        let mut y = conv(&y, Grid { b, h, w, c: o }, &self.conv2, k2);
        norm(&mut y, &self.ln2);
        let o = self.conv2.weight.dims()[0];
        Tensor::<B, 4>::from_data(TensorData::new(y, [b, h, w, o]), &device).permute([0, 3, 1, 2])
    }
}

/// The kernel side `k` of a convolution that keeps the spatial size (stride 1, dilation 1, one group, an
/// odd square kernel, padding `k / 2` on every side), the only geometry the host neck runs.
fn same_size_kernel<B: Backend>(conv: &Conv2d<B>) -> Option<usize> {
    let [kh, kw] = conv.kernel_size;
    let p = kh / 2;
    let padded = match conv.padding {
        PaddingConfig2d::Valid => p == 0,
        PaddingConfig2d::Same => true,
        PaddingConfig2d::Explicit(t, l, bt, r) => [t, l, bt, r] == [p; 4],
    };
    (kh == kw
        && kh % 2 == 1
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && padded)
        .then_some(kh)
}

/// SAM's image encoder: the ViT of SAM or the TinyViT of MobileSAM (the variant does not appear in
/// checkpoint keys: both sit under `image_encoder.`).
#[derive(Module, Debug)]
pub enum ImageEncoder<B: Backend> {
    /// SAM's ViT.
    Vit(ImageEncoderViT<B>),
    /// MobileSAM's TinyViT.
    TinyVit(TinyViT<B>),
}

impl<B: Backend> ImageEncoder<B> {
    /// A placeholder encoder of `cfg`'s shape.
    pub fn new(cfg: &SamConfig, device: &B::Device) -> Self {
        match &cfg.encoder {
            EncoderConfig::Vit(v) => Self::Vit(ImageEncoderViT::new(cfg, v, device)),
            EncoderConfig::TinyVit(t) => Self::TinyVit(TinyViT::new(cfg, t, device)),
        }
    }

    /// `(B, 3, S, S)` normalised image → `(B, prompt_dim, S/16, S/16)` embedding.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Vit(e) => e.forward(x),
            Self::TinyVit(e) => e.forward(x),
        }
    }

    /// The ViT, if this is one.
    pub fn vit(&self) -> Option<&ImageEncoderViT<B>> {
        match self {
            Self::Vit(e) => Some(e),
            Self::TinyVit(_) => None,
        }
    }
}

/// The ViT-based image encoder: `(B, 3, S, S)` normalised image → `(B, prompt_dim, S/16, S/16)` embedding.
#[derive(Module, Debug)]
pub struct ImageEncoderViT<B: Backend> {
    /// Patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// Absolute position embedding `(1, S/p, S/p, embed_dim)`.
    pub pos_embed: Param<Tensor<B, 4>>,
    /// The transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Output neck.
    pub neck: Neck<B>,
}

impl<B: Backend> ImageEncoderViT<B> {
    /// A zero/identity-initialised encoder of `vit`'s shape with `cfg`'s neck width (weights come from a
    /// checkpoint).
    pub fn new(cfg: &SamConfig, vit: &VitConfig, device: &B::Device) -> Self {
        let (p, e, o) = (vit.patch_size, vit.embed_dim, cfg.prompt_dim);
        let grid = cfg.grid();
        Self {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([3, e], [p, p])
                    .with_stride([p, p])
                    .init(device),
            },
            pos_embed: Param::from_tensor(Tensor::zeros([1, grid, grid, e], device)),
            blocks: (0..vit.depth)
                .map(|i| Block::new(vit, grid, i, device))
                .collect(),
            neck: Neck::new(e, o, device),
        }
    }

    /// Encodes a normalised, padded image batch `(B, 3, S, S)`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.patch_embed.forward(x);
        let mut x = x + self.pos_embed.val();
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.neck.forward_tokens(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    /// An attention layer with every weight random (rel-pos tables included).
    fn random_attention(dim: usize, heads: usize, size: usize) -> Attention<B> {
        let device = Default::default();
        let mut a = Attention::<B>::new(dim, heads, size, &device);
        let r = |shape: [usize; 2]| {
            Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 0.5), &device)
        };
        a.qkv.weight = Param::from_tensor(r([dim, 3 * dim]));
        a.qkv.bias = Some(Param::from_tensor(r([1, 3 * dim]).reshape([3 * dim])));
        a.proj.weight = Param::from_tensor(r([dim, dim]));
        a.rel_pos_h = Param::from_tensor(r([2 * size - 1, dim / heads]));
        a.rel_pos_w = Param::from_tensor(r([2 * size - 1, dim / heads]));
        a
    }

    fn values(t: Tensor<B, 4>) -> Vec<f32> {
        t.into_data().to_vec().unwrap_or_default()
    }

    #[test]
    fn fused_host_attention_matches_tensor_ops() {
        let device = Default::default();
        // Windows (several grids, 5 × 5 = 25 queries: rows not a multiple of the 8 lanes) and one larger
        // grid split into several tasks (32 × 32 = 1024 queries, 256 per task).
        for (grids, size, dim, heads) in [(3, 5, 24, 3), (1, 32, 16, 2)] {
            let a = random_attention(dim, heads, size);
            let x = Tensor::<B, 4>::random(
                [grids, size, size, dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let want = values(a.forward_ops(x.clone()));
            let got = values(a.forward_host(x));
            assert_eq!(want.len(), grids * size * size * dim);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                err <= 1e-5 * scale,
                "grid {size}: max error {err} (scale {scale})"
            );
        }
    }
}
