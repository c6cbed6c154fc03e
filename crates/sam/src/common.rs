//! Modules shared by the encoder and the decoder (`segment_anything/modeling/common.py`): the channel-wise
//! `LayerNorm2d` and the two-layer `MLPBlock`.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Channel-wise LayerNorm of an NCHW tensor (the official `LayerNorm2d`, eps 1e-6), parameters named
/// `weight` / `bias` as in the checkpoints.
#[derive(Module, Debug)]
pub struct LayerNorm2d<B: Backend> {
    /// Scale per channel.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift per channel.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> LayerNorm2d<B> {
    /// Identity-initialised norm over `channels`.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    /// Normalises `x` (N, C, H, W) over C.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = self.weight.dims()[0];
        let u = x.clone().mean_dim(1);
        let d = x - u;
        let s = d.clone().powi_scalar(2).mean_dim(1);
        let x = d / (s + 1e-6).sqrt();
        x * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }
}

/// The two-layer MLP of a ViT block (GELU).
#[derive(Module, Debug)]
pub struct MlpBlock<B: Backend> {
    /// First layer.
    pub lin1: Linear<B>,
    /// Second layer.
    pub lin2: Linear<B>,
}

impl<B: Backend> MlpBlock<B> {
    pub(crate) fn new(dim: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            lin1: LinearConfig::new(dim, hidden).init(device),
            lin2: LinearConfig::new(hidden, dim).init(device),
        }
    }

    /// `lin2(gelu(lin1(x)))`; the activation is passed by the caller (GELU in the ViT, ReLU in the decoder).
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<B, D>,
        act: fn(Tensor<B, D>) -> Tensor<B, D>,
    ) -> Tensor<B, D> {
        self.lin2.forward(act(self.lin1.forward(x)))
    }
}
