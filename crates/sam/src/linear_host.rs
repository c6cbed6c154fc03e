//! Linear layers over the rows of a token tensor, with their epilogue (GELU, a residual) fused: TinyViT's
//! q, k, v and output projections and its MLP.
//!
//! Burn's `Linear::forward` on a `(…, rows, C)` tensor multiplies by the weight broadcast over the leading
//! dimensions. On `flex` that is one small product per leading index: TinyViT's `(windows, 49, C)` q, k, v
//! projection ran as 361 products of 49 rows, and the MLP's `(1, 128, 128, C)` as 128 products of 128
//! rows. Here every row of every leading index is one row of a single `(rows, C)` matrix, cut into blocks
//! of [`ROWS`] rows. Each block is a task (rayon): its output rows start as the bias (plus the residual),
//! receive the product (faer), and get their GELU while they are still in cache.

use crate::kernels::{gelu, gelu_in_place, host_f32, on_host, simd};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Rows per task: at TinyViT's widths (128–1280 outputs) a block's output stays in the L2 cache.
const ROWS: usize = 256;

/// What is applied to the product `x · W + b` before the residual is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Nothing.
    Identity,
    /// GELU, erf form (the official `nn.GELU()`).
    Gelu,
}

/// `residual + act(layer(x))` over the last dimension of `x` (no residual: `act(layer(x))`). On the host
/// backends the fused kernel of this module; elsewhere Burn's ops on `x` flattened to one `(rows, C)`
/// matrix.
pub(crate) fn linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    act: Activation,
    residual: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let [inputs, outputs] = layer.weight.dims();
    let nonempty = dims.iter().all(|&d| d > 0) && outputs > 0;
    if nonempty && on_host::<B>(&x.device()) {
        return linear_host(layer, x, act, residual);
    }
    let rows = dims[..D - 1].iter().product::<usize>();
    let mut out_dims = dims;
    out_dims[D - 1] = outputs;
    let y = layer.forward(x.reshape([rows, inputs]));
    let y = match act {
        Activation::Identity => y,
        Activation::Gelu => gelu(y),
    }
    .reshape(out_dims);
    match residual {
        Some(r) => r + y,
        None => y,
    }
}

/// [`linear`] on the host.
fn linear_host<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    act: Activation,
    residual: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    let device = x.device();
    let mut dims = x.dims();
    let [k, n] = layer.weight.dims();
    dims[D - 1] = n;
    let weight = host_f32(layer.weight.val());
    let bias = layer
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; n], |b| host_f32(b.val()));
    let residual = residual.map_or(Residual::None, |r| Residual::Outside(host_f32(r)));
    let w = MatRef::from_row_major_slice(&weight, k, n);
    let out = affine_rows(&host_f32(x), w, &bias, act, residual);
    Tensor::from_data(TensorData::new(out, dims), &device)
}

/// Where [`affine_rows`] adds a residual.
#[derive(Debug)]
pub(crate) enum Residual {
    /// None.
    None,
    /// After the activation: `r + act(x · W + b)` (TinyViT's MLP).
    Outside(Vec<f32>),
    /// Before it: `act(r + x · W + b)` (MobileSAM's MBConv).
    Inside(Vec<f32>),
}

/// The rows of `x` (`rows × K`, row-major) times `w` (`K × N`, any layout faer reads), plus `bias` (`N`),
/// with `act` and the residual (`rows × N`), in blocks of [`ROWS`] rows on rayon's threads.
pub(crate) fn affine_rows(
    x: &[f32],
    w: MatRef<'_, f32>,
    bias: &[f32],
    act: Activation,
    residual: Residual,
) -> Vec<f32> {
    let (k, n) = (w.nrows(), w.ncols());
    let rows = x.len() / k.max(1);
    let (mut out, outside) = match residual {
        Residual::None => (vec![0.0; rows * n], false),
        Residual::Outside(r) => (r, true),
        Residual::Inside(r) => (r, false),
    };
    debug_assert_eq!(out.len(), rows * n);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ROWS * n)
        .zip(x.par_chunks(ROWS * k.max(1)))
        .for_each_init(Vec::new, |tmp, (o, xb)| {
            let r = o.len() / n;
            let xb = MatRef::from_row_major_slice(xb, r, k);
            if act == Activation::Identity || !outside {
                // The product lands in the output rows directly: bias (plus residual) first.
                for row in o.chunks_mut(n) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                let dst = MatMut::from_row_major_slice_mut(o, r, n);
                matmul(dst, Accum::Add, xb, w, 1.0, Par::Seq);
                if act == Activation::Gelu {
                    gelu_in_place(o);
                }
            } else {
                // GELU before a residual: the activated product goes through a scratch block.
                tmp.clear();
                tmp.extend(std::iter::repeat_n(bias.iter().copied(), r).flatten());
                let dst = MatMut::from_row_major_slice_mut(tmp, r, n);
                matmul(dst, Accum::Add, xb, w, 1.0, Par::Seq);
                gelu_in_place(tmp);
                simd(|| o.iter_mut().zip(tmp.iter()).for_each(|(v, t)| *v += t));
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;
    use burn::tensor::activation;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().expect("f32")
    }

    /// Every activation, with and without a residual, on the host kernel (`flex`, with a row count that
    /// leaves a partial last block) against Burn's composition of tensor ops.
    #[test]
    fn fused_linear_matches_tensor_ops() {
        type B = burn_flex::Flex;
        let device = Default::default();
        let layer = LinearConfig::new(24, 40).init::<B>(&device);
        let x = Tensor::<B, 4>::random([2, 3, 101, 24], Distribution::Normal(0.0, 1.0), &device);
        let res = Tensor::<B, 4>::random([2, 3, 101, 40], Distribution::Normal(0.0, 1.0), &device);
        let plain = layer.forward(x.clone());
        for act in [Activation::Identity, Activation::Gelu] {
            let y = match act {
                Activation::Identity => plain.clone(),
                Activation::Gelu => activation::gelu(plain.clone()),
            };
            for residual in [None, Some(res.clone())] {
                let want = values(residual.clone().map_or(y.clone(), |r| r + y.clone()));
                let got = linear(&layer, x.clone(), act, residual);
                assert_eq!(got.dims(), [2, 3, 101, 40]);
                let got = values(got);
                let worst = crate::test_util::max_abs_diff(&got, &want);
                assert!(worst < 1e-5, "{act:?}: {worst}");
            }
        }
    }

    /// A layer without a bias, and the tensor-op path of a non-host backend shape (empty rows).
    #[test]
    fn bias_free_and_empty_inputs() {
        type B = burn_flex::Flex;
        let device = Default::default();
        let layer = LinearConfig::new(8, 5).with_bias(false).init::<B>(&device);
        let x = Tensor::<B, 3>::random([3, 7, 8], Distribution::Normal(0.0, 1.0), &device);
        let want = values(layer.forward(x.clone()));
        let got = values(linear(&layer, x, Activation::Identity, None));
        let worst = crate::test_util::max_abs_diff(&got, &want);
        assert!(worst < 1e-5, "{worst}");
        let empty = Tensor::<B, 3>::zeros([0, 7, 8], &device);
        assert_eq!(
            linear(&layer, empty, Activation::Gelu, None).dims(),
            [0, 7, 5]
        );
    }
}
