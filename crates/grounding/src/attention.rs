//! `torch.nn.MultiheadAttention` (packed input projection, the official key names) and LQVG's
//! vision–language fusion module built on it.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

/// PyTorch's `nn.MultiheadAttention` (batch-first here; the maths is the same): one packed
/// `in_proj_weight (3C, C)` / `in_proj_bias (3C)` and `out_proj`.
#[derive(Module, Debug)]
pub struct TorchMultiheadAttention<B: Backend> {
    /// Packed q, k, v projection weights `(3C, C)` (PyTorch layout, not transposed).
    pub in_proj_weight: Param<Tensor<B, 2>>,
    /// Packed q, k, v biases.
    pub in_proj_bias: Param<Tensor<B, 1>>,
    /// Output projection.
    pub out_proj: Linear<B>,
    #[module(skip)]
    heads: usize,
}

impl<B: Backend> TorchMultiheadAttention<B> {
    /// A `dim`-wide attention with `heads` heads and placeholder weights.
    pub fn new(dim: usize, heads: usize, device: &B::Device) -> Self {
        Self {
            in_proj_weight: Param::from_tensor(Tensor::zeros([3 * dim, dim], device)),
            in_proj_bias: Param::from_tensor(Tensor::zeros([3 * dim], device)),
            out_proj: LinearConfig::new(dim, dim).init(device),
            heads,
        }
    }

    fn project(&self, x: Tensor<B, 3>, part: usize) -> Tensor<B, 3> {
        let [b, n, c] = x.dims();
        let w = self.in_proj_weight.val().narrow(0, part * c, c);
        let bias = self.in_proj_bias.val().narrow(0, part * c, c);
        (x.reshape([b * n, c]).matmul(w.transpose()) + bias.unsqueeze::<2>()).reshape([b, n, c])
    }

    /// `(B, Lq, C)` attending to keys/values `(B, Lk, C)`; `key_padding` `(B, Lk)` is `true` where a key
    /// must be ignored. As PyTorch (with weights requested): q scaled by 1/√(head dim), softmax, no dropout.
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
        key_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let [b, lq, c] = query.dims();
        let lk = key.dims()[1];
        let h = self.heads;
        let hd = c / h;
        let split = |t: Tensor<B, 3>, l: usize| t.reshape([b, l, h, hd]).swap_dims(1, 2);
        let q = split(self.project(query, 0), lq) * (1.0 / (hd as f64).sqrt());
        let k = split(self.project(key, 1), lk);
        let v = split(self.project(value, 2), lk);
        let mut scores = q.matmul(k.swap_dims(2, 3));
        if let Some(mask) = key_padding {
            let mask = mask.reshape([b, 1, 1, lk]).expand([b, h, lq, lk]);
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let out = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, lq, c]);
        self.out_proj.forward(out)
    }
}

/// LQVG's `VisionLanguageFusionModule`: `tgt · MHA(tgt, memory + pos, memory)` — multiplicative, no
/// residual, no norm.
#[derive(Module, Debug)]
pub struct VisionLanguageFusion<B: Backend> {
    /// The attention.
    pub multihead_attn: TorchMultiheadAttention<B>,
}

impl<B: Backend> VisionLanguageFusion<B> {
    /// A fusion module of width `dim`.
    pub fn new(dim: usize, heads: usize, device: &B::Device) -> Self {
        Self {
            multihead_attn: TorchMultiheadAttention::new(dim, heads, device),
        }
    }

    /// Gates `tgt (B, Lt, C)` by its attention over `memory (B, Lm, C)`.
    pub fn forward(
        &self,
        tgt: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        memory_padding: Option<Tensor<B, 2, Bool>>,
        pos: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let gate =
            self.multihead_attn
                .forward(tgt.clone(), memory.clone() + pos, memory, memory_padding);
        tgt * gate
    }
}
