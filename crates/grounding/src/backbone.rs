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
use burn::tensor::module::conv2d;
use burn::tensor::ops::PaddedConvOptions;

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
        let (scale, shift) = self.affine();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }

    /// The per-channel `(scale, shift)` with `forward(x) = x · scale + shift`.
    fn affine(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scale = self.weight.val() * (self.running_var.val() + FROZEN_BN_EPS).sqrt().recip();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        (scale, shift)
    }

    /// `self.forward(conv.forward(x))` as one convolution: the affine map folded into the kernel
    /// (`w · scale` per output channel) and the bias (`b · scale + shift`). It saves two passes over the
    /// convolution's output (the scale and the shift), which at LQVG's 800² input are the size of the
    /// backbone's activations.
    pub fn after_conv(&self, conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let ((top, bottom), (left, right)) = match conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
            PaddingConfig2d::Valid => ((0, 0), (0, 0)),
            // Input-dependent padding: convolve, then apply the map.
            PaddingConfig2d::Same => return self.forward(conv.forward(x)),
        };
        let c = self.weight.dims()[0];
        let (scale, shift) = self.affine();
        let bias = match &conv.bias {
            Some(b) => b.val() * scale.clone() + shift,
            None => shift,
        };
        let weight = conv.weight.val() * scale.reshape([c, 1, 1, 1]);
        let options = PaddedConvOptions::asymmetric(
            conv.stride,
            [top, left],
            [bottom, right],
            conv.dilation,
            conv.groups,
        );
        conv2d(x, weight, Some(bias), options)
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
            Some(d) => d.bn.after_conv(&d.conv, x.clone()),
            None => x.clone(),
        };
        let y = relu(self.bn1.after_conv(&self.conv1, x));
        let y = relu(self.bn2.after_conv(&self.conv2, y));
        let y = self.bn3.after_conv(&self.conv3, y);
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
        let x = relu(self.bn1.after_conv(&self.conv1, x));
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

#[cfg(test)]
mod tests {
    use super::{FrozenBatchNorm2d, conv};
    use burn::module::Param;
    use burn::tensor::{Distribution, Tensor};

    /// The folded convolution against the convolution followed by the frozen BatchNorm, with non-trivial
    /// statistics, with and without a convolution bias.
    #[test]
    fn folded_batchnorm_matches_conv_then_batchnorm() {
        type B = burn_ndarray::NdArray<f32>;
        let device = Default::default();
        let stat = |lo, hi| {
            Param::from_tensor(Tensor::<B, 1>::random(
                [6],
                Distribution::Uniform(lo, hi),
                &device,
            ))
        };
        let bn = FrozenBatchNorm2d {
            weight: stat(0.5, 2.0),
            bias: stat(-1.0, 1.0),
            running_mean: stat(-1.0, 1.0),
            running_var: stat(0.1, 3.0),
        };
        let x = Tensor::<B, 4>::random([2, 4, 9, 7], Distribution::Normal(0.0, 1.0), &device);
        let mut with_bias = conv::<B>(4, 6, 3, 2, 1, &device);
        with_bias.bias = Some(stat(-1.0, 1.0));
        for c in [conv::<B>(4, 6, 3, 2, 1, &device), with_bias] {
            let want = bn
                .forward(c.forward(x.clone()))
                .into_data()
                .to_vec::<f32>()
                .expect("f32");
            let got = bn
                .after_conv(&c, x.clone())
                .into_data()
                .to_vec::<f32>()
                .expect("f32");
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "folded vs conv + BN: {worst}");
        }
    }
}
