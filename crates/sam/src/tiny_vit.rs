//! MobileSAM's TinyViT image encoder (`mobile_sam/modeling/tiny_vit_sam.py`): `Conv2d_BN`, the patch
//! embedding, MBConv blocks, patch merging, TinyViT blocks (windowed attention with attention biases, a
//! depthwise local convolution, an MLP) and SAM's neck.
//!
//! Layout: the convolutional stage works on `(B, C, H, W)`; the attention stages keep tokens as
//! `(B, H, W, C)` (the official `(B, H·W, C)` with the grid kept), so windows are cut without reshaping
//! back and forth.

use crate::image_encoder::{Neck, window_partition, window_unpartition};
use crate::kernels::{Depthwise, depthwise_conv, gelu, host_f32, on_host};
use crate::linear_host::{Activation, linear};
use crate::tiny_vit_host::{Grid, depthwise_nhwc, partition, unpartition_add};
use crate::window_attention::{WindowShape, window_attention_host};
use crate::{SamConfig, TinyVitConfig};
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor, TensorData};

/// BatchNorm's epsilon in the official code (PyTorch's default).
const BN_EPS: f64 = 1e-5;
/// `nn.LayerNorm`'s default epsilon, used by TinyViT's attention and MLP norms.
const LN_EPS: f64 = 1e-5;

/// The kernel of a bias-free convolution (the official `Conv2d_BN.c`).
#[derive(Module, Debug)]
pub struct ConvKernel<B: Backend> {
    /// `(out, in / groups, k, k)`.
    pub weight: Param<Tensor<B, 4>>,
}

/// Inference-mode BatchNorm statistics and affine parameters (the official `Conv2d_BN.bn`).
#[derive(Module, Debug)]
pub struct BatchNormStats<B: Backend> {
    /// Scale γ.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift β.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean.
    pub running_mean: Param<Tensor<B, 1>>,
    /// Running variance.
    pub running_var: Param<Tensor<B, 1>>,
}

/// The official `Conv2d_BN`: a bias-free convolution followed by BatchNorm in inference mode, run as one
/// convolution with the BatchNorm folded in (the official `Conv2d_BN.fuse`): kernel `w · γ/√(var + ε)`,
/// bias `β − mean · γ/√(var + ε)`.
#[derive(Module, Debug)]
pub struct Conv2dBn<B: Backend> {
    /// The convolution.
    pub c: ConvKernel<B>,
    /// The BatchNorm.
    pub bn: BatchNormStats<B>,
    #[module(skip)]
    stride: usize,
    #[module(skip)]
    padding: usize,
    #[module(skip)]
    groups: usize,
}

impl<B: Backend> Conv2dBn<B> {
    fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &B::Device,
    ) -> Self {
        let [i, o] = channels;
        // The running statistics are buffers in the official code: never trained.
        let stat = |t: Tensor<B, 1>| Param::from_tensor(t).set_require_grad(false);
        Self {
            c: ConvKernel {
                weight: Param::from_tensor(Tensor::zeros([o, i / groups, kernel, kernel], device)),
            },
            bn: BatchNormStats {
                weight: Param::from_tensor(Tensor::ones([o], device)),
                bias: Param::from_tensor(Tensor::zeros([o], device)),
                running_mean: stat(Tensor::zeros([o], device)),
                running_var: stat(Tensor::ones([o], device)),
            },
            stride,
            padding: kernel / 2,
            groups,
        }
    }

    /// The convolution with the BatchNorm folded in: its kernel and bias.
    fn folded(&self) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let o = self.bn.weight.dims()[0];
        let scale = self.bn.weight.val() * (self.bn.running_var.val() + BN_EPS).sqrt().recip();
        let shift = self.bn.bias.val() - self.bn.running_mean.val() * scale.clone();
        (self.c.weight.val() * scale.reshape([o, 1, 1, 1]), shift)
    }

    /// The folded kernel `(out, in / groups, k, k)` and bias as host values, with the kernel side, the
    /// stride and the group count (for the host kernels of `tiny_vit_host.rs`).
    pub(crate) fn host_parts(&self) -> (Vec<f32>, Vec<f32>, [usize; 3]) {
        let (weight, shift) = self.folded();
        let k = weight.dims()[2];
        let geometry = [k, self.stride, self.groups];
        (host_f32(weight), host_f32(shift), geometry)
    }

    /// `(B, C_in, H, W)` → `(B, C_out, H / stride, W / stride)`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let o = self.bn.weight.dims()[0];
        let (weight, shift) = self.folded();
        let [_, per_group, k, _] = weight.dims();
        if per_group == 1 && self.groups == o {
            return depthwise_conv(
                x,
                weight,
                shift,
                Depthwise {
                    k,
                    stride: self.stride,
                },
            );
        }
        let (s, p) = (self.stride, self.padding);
        conv2d(
            x,
            weight,
            Some(shift),
            ConvOptions::new([s, s], [p, p], [1, 1], self.groups),
        )
    }
}

/// The patch embedding: two stride-2 3×3 `Conv2d_BN` with a GELU between (`patch_embed.seq.0`, `seq.2`).
#[derive(Module, Debug)]
pub struct TinyPatchEmbed<B: Backend> {
    /// `seq.0`: 3 → width / 2.
    pub conv1: Conv2dBn<B>,
    /// `seq.2`: width / 2 → width.
    pub conv2: Conv2dBn<B>,
}

impl<B: Backend> TinyPatchEmbed<B> {
    /// `(B, 3, S, S)` → `(B, width, S/4, S/4)`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv2.forward(gelu(self.conv1.forward(x)))
    }
}

/// The official `MBConv`: 1×1 expansion, depthwise 3×3, 1×1 projection, residual, GELU after each step.
#[derive(Module, Debug)]
pub struct MbConv<B: Backend> {
    /// 1×1, width → hidden.
    pub conv1: Conv2dBn<B>,
    /// Depthwise 3×3.
    pub conv2: Conv2dBn<B>,
    /// 1×1, hidden → width.
    pub conv3: Conv2dBn<B>,
}

impl<B: Backend> MbConv<B> {
    /// `(B, C, H, W)` → same shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = gelu(self.conv1.forward(x.clone()));
        let y = gelu(self.conv2.forward(y));
        gelu(self.conv3.forward(y) + x)
    }
}

/// The official `PatchMerging`: 1×1, depthwise 3×3 (stride [`TinyVitConfig::merging_stride`]), 1×1.
#[derive(Module, Debug)]
pub struct PatchMerging<B: Backend> {
    /// 1×1, width → next width.
    pub conv1: Conv2dBn<B>,
    /// Depthwise 3×3 with the stride.
    pub conv2: Conv2dBn<B>,
    /// 1×1.
    pub conv3: Conv2dBn<B>,
}

impl<B: Backend> PatchMerging<B> {
    /// `(B, C, H, W)` → tokens `(B, H', W', C')`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = gelu(self.conv1.forward(x));
        let y = gelu(self.conv2.forward(y));
        self.conv3.forward(y).permute([0, 2, 3, 1])
    }
}

/// The official `ConvLayer`: MBConv blocks, then the patch merging into the first attention stage.
#[derive(Module, Debug)]
pub struct ConvLayer<B: Backend> {
    /// The MBConv blocks.
    pub blocks: Vec<MbConv<B>>,
    /// The merging.
    pub downsample: PatchMerging<B>,
}

/// TinyViT's attention (the official `Attention`, `attn_ratio` 1): pre-norm, joint q, k, v projection laid
/// out head by head (`[q | k | v]` per head), softmax(q·kᵀ / √d + bias) · v, output projection. The bias of
/// a query–key pair is `attention_biases[head, |Δy| · window + |Δx|]`.
#[derive(Module, Debug)]
pub struct TinyAttention<B: Backend> {
    /// Norm before the projection (eps 1e-5).
    pub norm: LayerNorm<B>,
    /// q, k, v of every head.
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    /// `(heads, window²)`: one learnt bias per head and offset.
    pub attention_biases: Param<Tensor<B, 2>>,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    window: usize,
}

/// The official `attention_bias_idxs`: for each query `i` and key `j` of a `window × window` grid, the index
/// of their offset `(|Δy|, |Δx|)` in insertion order, which is `|Δy| · window + |Δx|` (the first query, at
/// the origin, meets every offset first).
fn bias_indices(window: usize) -> Vec<i64> {
    let n = window * window;
    (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            let dy = (i / window).abs_diff(j / window);
            let dx = (i % window).abs_diff(j % window);
            (dy * window + dx) as i64
        })
        .collect()
}

impl<B: Backend> TinyAttention<B> {
    fn new(dim: usize, heads: usize, window: usize, device: &B::Device) -> Self {
        Self {
            norm: LayerNormConfig::new(dim).with_epsilon(LN_EPS).init(device),
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            attention_biases: Param::from_tensor(Tensor::zeros([heads, window * window], device)),
            num_heads: heads,
            window,
        }
    }

    /// The bias of every query–key pair, `(1, heads, window², window²)`.
    fn biases(&self) -> Tensor<B, 4> {
        let device = self.attention_biases.device();
        let n = self.window * self.window;
        let idx = Tensor::<B, 1, Int>::from_ints(bias_indices(self.window).as_slice(), &device);
        self.attention_biases
            .val()
            .select(1, idx)
            .reshape([1, self.num_heads, n, n])
    }

    /// `x` (windows, window², C) → same shape: the fused host kernel on the CPU backends, Burn tensor ops
    /// elsewhere.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if on_host::<B>(&x.device()) {
            self.forward_host(x)
        } else {
            self.forward_ops(x)
        }
    }

    /// [`TinyAttention::forward`] through [`window_attention_host`].
    fn forward_host(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, c] = x.dims();
        let device = x.device();
        let heads = self.num_heads;
        let qkv = host_f32(linear(
            &self.qkv,
            self.norm.forward(x),
            Activation::Identity,
            None,
        ));
        let bias = host_f32(self.biases().reshape([heads, n, n]));
        let shape = WindowShape {
            windows: b,
            tokens: n,
            heads,
            head_dim: c / heads,
        };
        let scale = ((c / heads) as f32).powf(-0.5);
        let out = window_attention_host(&qkv, shape, &bias, scale);
        let out = Tensor::from_data(TensorData::new(out, [b, n, c]), &device);
        linear(&self.proj, out, Activation::Identity, None)
    }

    /// [`TinyAttention::forward`] as Burn tensor ops (any backend).
    fn forward_ops(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, c] = x.dims();
        let heads = self.num_heads;
        let hd = c / heads;
        let qkv = self
            .qkv
            .forward(self.norm.forward(x))
            .reshape([b, n, heads, 3 * hd])
            .swap_dims(1, 2); // (B, heads, N, 3·hd)
        let q = qkv.clone().narrow(3, 0, hd);
        let k = qkv.clone().narrow(3, hd, hd);
        let v = qkv.narrow(3, 2 * hd, hd);
        let scale = (hd as f64).powf(-0.5);
        let attn = q.matmul(k.swap_dims(2, 3)) * scale + self.biases();
        let out = softmax(attn, 3).matmul(v); // (B, heads, N, hd)
        self.proj.forward(out.swap_dims(1, 2).reshape([b, n, c]))
    }
}

/// TinyViT's MLP (the official `Mlp`): pre-norm (eps 1e-5), fc1, GELU, fc2.
#[derive(Module, Debug)]
pub struct TinyMlp<B: Backend> {
    /// The norm.
    pub norm: LayerNorm<B>,
    /// First layer.
    pub fc1: Linear<B>,
    /// Second layer.
    pub fc2: Linear<B>,
}

impl<B: Backend> TinyMlp<B> {
    /// `x` (…, C) → same shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let hidden = linear(&self.fc1, self.norm.forward(x), Activation::Gelu, None);
        linear(&self.fc2, hidden, Activation::Identity, None)
    }

    /// `x + forward(x)`, the residual added in the second product's output blocks.
    pub fn forward_residual(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let hidden = linear(
            &self.fc1,
            self.norm.forward(x.clone()),
            Activation::Gelu,
            None,
        );
        linear(&self.fc2, hidden, Activation::Identity, Some(x))
    }
}

/// The official `TinyViTBlock`: windowed attention (zero padding *before* the attention's norm, as the
/// official code pads), residual; depthwise local convolution; MLP, residual.
#[derive(Module, Debug)]
pub struct TinyVitBlock<B: Backend> {
    /// Attention within windows.
    pub attn: TinyAttention<B>,
    /// MLP.
    pub mlp: TinyMlp<B>,
    /// Depthwise convolution between attention and MLP.
    pub local_conv: Conv2dBn<B>,
    #[module(skip)]
    window: usize,
}

impl<B: Backend> TinyVitBlock<B> {
    /// Tokens `(B, H, W, C)` → same shape: the host kernels of `tiny_vit_host.rs` on the CPU backends,
    /// Burn tensor ops elsewhere.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let (weight, _) = self.local_conv.folded();
        let depthwise = weight.dims()[1] == 1 && self.local_conv.groups == c;
        if depthwise && b * h * w * c > 0 && on_host::<B>(&x.device()) {
            self.forward_host(x)
        } else {
            self.forward_ops(x)
        }
    }

    /// [`TinyVitBlock::forward`] with the window partition, its inverse (fused with the residual add) and
    /// the local convolution run by the host kernels on the token buffer.
    fn forward_host(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let device = x.device();
        let ws = self.window;
        let grid = Grid { b, h, w, c };
        let mut tokens = host_f32(x);
        let windows = partition(&tokens, grid, ws);
        let n = windows.len() / (ws * ws * c);
        let attended = self.attn.forward(Tensor::from_data(
            TensorData::new(windows, [n, ws * ws, c]),
            &device,
        ));
        unpartition_add(&mut tokens, grid, ws, &host_f32(attended));
        let (weight, bias) = self.local_conv.folded();
        let k = weight.dims()[2];
        let geo = Depthwise { k, stride: 1 };
        let (weight, bias) = (host_f32(weight), host_f32(bias));
        let (local, _) = depthwise_nhwc(&tokens, grid, &weight, &bias, geo, Activation::Identity);
        let x = Tensor::from_data(TensorData::new(local, [b, h, w, c]), &device);
        self.mlp.forward_residual(x)
    }

    /// [`TinyVitBlock::forward`] as Burn tensor ops (any backend).
    fn forward_ops(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, h, w, c] = x.dims();
        let ws = self.window;
        let (windows, padded) = window_partition(x.clone(), ws);
        let n = windows.dims()[0];
        let attended = self
            .attn
            .forward(windows.reshape([n, ws * ws, c]))
            .reshape([n, ws, ws, c]);
        let x = x + window_unpartition(attended, ws, padded, (h, w));
        let x = self
            .local_conv
            .forward(x.permute([0, 3, 1, 2]))
            .permute([0, 2, 3, 1]);
        self.mlp.forward_residual(x)
    }
}

/// The official `BasicLayer`: TinyViT blocks, then (except in the last stage) the patch merging.
#[derive(Module, Debug)]
pub struct AttentionLayer<B: Backend> {
    /// The blocks.
    pub blocks: Vec<TinyVitBlock<B>>,
    /// The merging into the next stage, absent in the last.
    pub downsample: Option<PatchMerging<B>>,
}

/// A TinyViT stage: `layers.0` is convolutional, the others attention stages.
#[derive(Module, Debug)]
pub enum TinyVitLayer<B: Backend> {
    /// MBConv stage.
    Conv(ConvLayer<B>),
    /// Attention stage.
    Attention(AttentionLayer<B>),
}

/// MobileSAM's image encoder: `(B, 3, S, S)` normalised image → `(B, prompt_dim, S/16, S/16)` embedding.
#[derive(Module, Debug)]
pub struct TinyViT<B: Backend> {
    /// Patch embedding (stride 4).
    pub patch_embed: TinyPatchEmbed<B>,
    /// The stages.
    pub layers: Vec<TinyVitLayer<B>>,
    /// Output neck (as SAM's ViT: `neck.0`–`neck.3`).
    pub neck: Neck<B>,
}

fn merging<B: Backend>(t: &TinyVitConfig, i: usize, device: &B::Device) -> PatchMerging<B> {
    let (d, o) = (t.embed_dims[i], t.embed_dims[i + 1]);
    PatchMerging {
        conv1: Conv2dBn::new([d, o], 1, 1, 1, device),
        conv2: Conv2dBn::new([o, o], 3, t.merging_stride(i), o, device),
        conv3: Conv2dBn::new([o, o], 1, 1, 1, device),
    }
}

impl<B: Backend> TinyViT<B> {
    /// A placeholder encoder of `t`'s shape with `cfg`'s neck width (weights come from a checkpoint).
    pub fn new(cfg: &SamConfig, t: &TinyVitConfig, device: &B::Device) -> Self {
        let e0 = t.embed_dims[0];
        let stages = t.embed_dims.len();
        let layers = (0..stages)
            .map(|i| {
                let d = t.embed_dims[i];
                if i == 0 {
                    let hidden = d * t.mbconv_expand_ratio;
                    TinyVitLayer::Conv(ConvLayer {
                        blocks: (0..t.depths[0])
                            .map(|_| MbConv {
                                conv1: Conv2dBn::new([d, hidden], 1, 1, 1, device),
                                conv2: Conv2dBn::new([hidden, hidden], 3, 1, hidden, device),
                                conv3: Conv2dBn::new([hidden, d], 1, 1, 1, device),
                            })
                            .collect(),
                        downsample: merging(t, 0, device),
                    })
                } else {
                    let (heads, ws) = (t.num_heads[i], t.window_sizes[i]);
                    TinyVitLayer::Attention(AttentionLayer {
                        blocks: (0..t.depths[i])
                            .map(|_| TinyVitBlock {
                                attn: TinyAttention::new(d, heads, ws, device),
                                mlp: TinyMlp {
                                    norm: LayerNormConfig::new(d).with_epsilon(LN_EPS).init(device),
                                    fc1: LinearConfig::new(d, d * t.mlp_ratio).init(device),
                                    fc2: LinearConfig::new(d * t.mlp_ratio, d).init(device),
                                },
                                local_conv: Conv2dBn::new([d, d], t.local_conv_size, 1, d, device),
                                window: ws,
                            })
                            .collect(),
                        downsample: (i + 1 < stages).then(|| merging(t, i, device)),
                    })
                }
            })
            .collect();
        let (last, o) = (t.embed_dims[stages - 1], cfg.prompt_dim);
        Self {
            patch_embed: TinyPatchEmbed {
                conv1: Conv2dBn::new([3, e0 / 2], 3, 2, 1, device),
                conv2: Conv2dBn::new([e0 / 2, e0], 3, 2, 1, device),
            },
            layers,
            neck: Neck::new(last, o, device),
        }
    }

    /// Encodes a normalised, padded image batch `(B, 3, S, S)`: on the CPU backends with the host kernels
    /// of `tiny_vit_host.rs` (channels-last tokens), elsewhere as Burn tensor ops.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_with_progress(x, |_| {})
    }

    /// [`TinyViT::forward`], calling `on_stage` with each part's name (`"patch_embed"`, `"layers.0"` …,
    /// `"neck"`) as soon as that part is done: a hook for timing the stages.
    pub fn forward_with_progress(
        &self,
        x: Tensor<B, 4>,
        mut on_stage: impl FnMut(&str),
    ) -> Tensor<B, 4> {
        if x.dims().iter().all(|&d| d > 0) && on_host::<B>(&x.device()) {
            return self.forward_host(x, &mut on_stage);
        }
        self.forward_ops(x, &mut on_stage)
    }

    /// [`TinyViT::forward`] as Burn tensor ops (any backend).
    fn forward_ops(&self, x: Tensor<B, 4>, on_stage: &mut dyn FnMut(&str)) -> Tensor<B, 4> {
        // Tokens (B, H, W, C) between stages; the convolutions take (B, C, H, W) views of them.
        let mut x = self.patch_embed.forward(x).permute([0, 2, 3, 1]);
        on_stage("patch_embed");
        for (i, layer) in self.layers.iter().enumerate() {
            x = match layer {
                TinyVitLayer::Conv(l) => {
                    let mut y = x.permute([0, 3, 1, 2]);
                    for block in &l.blocks {
                        y = block.forward(y);
                    }
                    l.downsample.forward(y)
                }
                TinyVitLayer::Attention(l) => {
                    for block in &l.blocks {
                        x = block.forward(x);
                    }
                    match &l.downsample {
                        Some(d) => d.forward(x.permute([0, 3, 1, 2])),
                        None => x,
                    }
                }
            };
            on_stage(&format!("layers.{i}"));
        }
        let y = self.neck.forward_tokens(x);
        on_stage("neck");
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_ndarray::NdArray;

    /// The fused host attention equals the tensor-op composition, for a padded-window size (7 × 7) and a
    /// single-window size (3 × 3 with one window).
    #[test]
    fn fused_window_attention_matches_tensor_ops() {
        type B = NdArray<f32>;
        let device = Default::default();
        for (windows, ws, dim, heads) in [(5, 7, 24, 3), (1, 3, 8, 2)] {
            let mut a = TinyAttention::<B>::new(dim, heads, ws, &device);
            let r =
                |s: [usize; 2]| Tensor::<B, 2>::random(s, Distribution::Normal(0.0, 0.5), &device);
            a.qkv.weight = Param::from_tensor(r([dim, 3 * dim]));
            a.qkv.bias = Some(Param::from_tensor(r([1, 3 * dim]).reshape([3 * dim])));
            a.proj.weight = Param::from_tensor(r([dim, dim]));
            a.attention_biases = Param::from_tensor(r([heads, ws * ws]));
            let x = Tensor::<B, 3>::random(
                [windows, ws * ws, dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let want: Vec<f32> = a.forward_ops(x.clone()).into_data().to_vec().unwrap();
            let got: Vec<f32> = a.forward_host(x).into_data().to_vec().unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = crate::test_util::max_abs_diff(&want, &got);
            assert!(
                err <= 1e-5 * scale,
                "{ws}x{ws}: max error {err} (scale {scale})"
            );
        }
    }

    /// The block on the host kernels equals its tensor-op composition, on a grid that needs padding.
    #[test]
    fn block_host_kernels_match_tensor_ops() {
        type B = NdArray<f32>;
        let device = Default::default();
        let (dim, heads, ws) = (16, 2, 7);
        let r = |s: [usize; 2]| Tensor::<B, 2>::random(s, Distribution::Normal(0.0, 0.5), &device);
        let mut attn = TinyAttention::<B>::new(dim, heads, ws, &device);
        attn.attention_biases = Param::from_tensor(r([heads, ws * ws]));
        let mut local_conv = Conv2dBn::new([dim, dim], 3, 1, dim, &device);
        local_conv.c.weight = Param::from_tensor(r([dim, 9]).reshape([dim, 1, 3, 3]));
        local_conv.bn.running_mean = Param::from_tensor(r([1, dim]).reshape([dim]));
        let block = TinyVitBlock {
            attn,
            mlp: TinyMlp {
                norm: LayerNormConfig::new(dim).init(&device),
                fc1: LinearConfig::new(dim, 4 * dim).init(&device),
                fc2: LinearConfig::new(4 * dim, dim).init(&device),
            },
            local_conv,
            window: ws,
        };
        let x = Tensor::<B, 4>::random([2, 10, 9, dim], Distribution::Normal(0.0, 1.0), &device);
        let want: Vec<f32> = block.forward_ops(x.clone()).into_data().to_vec().unwrap();
        let got: Vec<f32> = block.forward(x).into_data().to_vec().unwrap();
        let err = crate::test_util::max_abs_diff(&want, &got);
        assert!(err < 1e-4, "max error {err}");
    }

    #[test]
    fn bias_indices_follow_the_official_insertion_order() {
        // The official loop, for a 3 × 3 window: offsets numbered as first met.
        let w = 3;
        let points: Vec<(usize, usize)> =
            (0..w).flat_map(|y| (0..w).map(move |x| (y, x))).collect();
        let mut seen: Vec<(usize, usize)> = Vec::new();
        let mut want = Vec::new();
        for p1 in &points {
            for p2 in &points {
                let off = (p1.0.abs_diff(p2.0), p1.1.abs_diff(p2.1));
                let idx = seen.iter().position(|o| *o == off).unwrap_or_else(|| {
                    seen.push(off);
                    seen.len() - 1
                });
                want.push(idx as i64);
            }
        }
        assert_eq!(seen.len(), w * w);
        assert_eq!(bias_indices(w), want);
    }
}
