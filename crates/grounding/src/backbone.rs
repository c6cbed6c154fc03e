//! The ResNet backbone with frozen BatchNorm, as torchvision's `resnet50(norm_layer=FrozenBatchNorm2d)`
//! inside DETR-family code: returns the stride-8, -16 and -32 stages.

use crate::config::ResNetConfig;
use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

/// BatchNorm with fixed statistics and affine parameters (DETR's `FrozenBatchNorm2d`):
/// `x · w / √(var + 1e-5) + (b − mean · w / √(var + 1e-5))`.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d<B: Backend> {
    /// Scale γ.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift β.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean.
    pub running_mean: Param<Tensor<B, 1>>,
    /// Running variance.
    pub running_var: Param<Tensor<B, 1>>,
}

/// The official code's epsilon (added before the reciprocal square root).
const FROZEN_BN_EPS: f64 = 1e-5;

impl<B: Backend> FrozenBatchNorm2d<B> {
    fn new(channels: usize, device: &B::Device) -> Self {
        let frozen = |t: Tensor<B, 1>| Param::from_tensor(t).set_require_grad(false);
        Self {
            weight: frozen(Tensor::ones([channels], device)),
            bias: frozen(Tensor::zeros([channels], device)),
            running_mean: frozen(Tensor::zeros([channels], device)),
            running_var: frozen(Tensor::ones([channels], device)),
        }
    }

    /// Applies the frozen affine map to `(B, C, H, W)`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = self.weight.dims()[0];
        let scale = self.weight.val() * (self.running_var.val() + FROZEN_BN_EPS).sqrt().recip();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }
}

/// The projection shortcut of a bottleneck that changes width or stride (`downsample.0`, `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1×1 convolution.
    pub conv: Conv2d<B>,
    /// Its frozen BatchNorm.
    pub bn: FrozenBatchNorm2d<B>,
}

/// torchvision's `Bottleneck` (stride on the 3×3 convolution).
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// 1×1 reduce.
    pub conv1: Conv2d<B>,
    /// Its BatchNorm.
    pub bn1: FrozenBatchNorm2d<B>,
    /// 3×3, carries the stride.
    pub conv2: Conv2d<B>,
    /// Its BatchNorm.
    pub bn2: FrozenBatchNorm2d<B>,
    /// 1×1 expand.
    pub conv3: Conv2d<B>,
    /// Its BatchNorm.
    pub bn3: FrozenBatchNorm2d<B>,
    /// Projection shortcut, when the shape changes.
    pub downsample: Option<Downsample<B>>,
}

fn conv<B: Backend>(
    i: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

impl<B: Backend> Bottleneck<B> {
    fn new(
        inplanes: usize,
        planes: usize,
        expansion: usize,
        stride: usize,
        device: &B::Device,
    ) -> Self {
        let out = planes * expansion;
        Self {
            conv1: conv(inplanes, planes, 1, 1, 0, device),
            bn1: FrozenBatchNorm2d::new(planes, device),
            conv2: conv(planes, planes, 3, stride, 1, device),
            bn2: FrozenBatchNorm2d::new(planes, device),
            conv3: conv(planes, out, 1, 1, 0, device),
            bn3: FrozenBatchNorm2d::new(out, device),
            downsample: (stride != 1 || inplanes != out).then(|| Downsample {
                conv: conv(inplanes, out, 1, stride, 0, device),
                bn: FrozenBatchNorm2d::new(out, device),
            }),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = relu(self.bn2.forward(self.conv2.forward(y)));
        let y = self.bn3.forward(self.conv3.forward(y));
        relu(y + identity)
    }
}

/// The ResNet body (`backbone.0.body` in the official keys).
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// 7×7 stride-2 stem.
    pub conv1: Conv2d<B>,
    /// Stem BatchNorm.
    pub bn1: FrozenBatchNorm2d<B>,
    /// 3×3 stride-2 max pooling.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 4).
    pub layer1: Vec<Bottleneck<B>>,
    /// Stage 2 (stride 8).
    pub layer2: Vec<Bottleneck<B>>,
    /// Stage 3 (stride 16).
    pub layer3: Vec<Bottleneck<B>>,
    /// Stage 4 (stride 32).
    pub layer4: Vec<Bottleneck<B>>,
}

impl<B: Backend> ResNet<B> {
    /// A ResNet of `cfg`'s shape with placeholder weights.
    pub fn new(cfg: &ResNetConfig, device: &B::Device) -> Self {
        let mut inplanes = cfg.stem;
        let mut stage = |s: usize| {
            let stride = if s == 0 { 1 } else { 2 };
            (0..cfg.blocks[s])
                .map(|b| {
                    let block = Bottleneck::new(
                        inplanes,
                        cfg.planes[s],
                        cfg.expansion,
                        if b == 0 { stride } else { 1 },
                        device,
                    );
                    inplanes = cfg.planes[s] * cfg.expansion;
                    block
                })
                .collect::<Vec<_>>()
        };
        let (layer1, layer2, layer3, layer4) = (stage(0), stage(1), stage(2), stage(3));
        Self {
            conv1: Conv2dConfig::new([3, cfg.stem], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn1: FrozenBatchNorm2d::new(cfg.stem, device),
            // After a ReLU every value is ≥ 0, so zero padding equals PyTorch's implicit −∞ padding.
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    /// The outputs of stages 2, 3 and 4 (strides 8, 16, 32).
    pub fn forward(&self, x: Tensor<B, 4>) -> [Tensor<B, 4>; 3] {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let mut x = self.maxpool.forward(x);
        for b in &self.layer1 {
            x = b.forward(x);
        }
        for b in &self.layer2 {
            x = b.forward(x);
        }
        let c2 = x.clone();
        for b in &self.layer3 {
            x = b.forward(x);
        }
        let c3 = x.clone();
        for b in &self.layer4 {
            x = b.forward(x);
        }
        [c2, c3, x]
    }
}
