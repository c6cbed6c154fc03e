//! The transformer layers' feed-forward network, `linear2(relu(linear1(x)))`, fused on the host backends.
//!
//! As three tensor ops, the encoder's FFN writes its `(positions, 1024)` hidden activations three times
//! (the product, the bias added, the ReLU) into freshly allocated 54 MB buffers at LQVG's 800² input, and
//! reads them back from memory each time. Here the rows are processed in blocks: a block's hidden
//! activations start as the bias, receive the product (faer), are rectified in place while they are in
//! cache, and are multiplied by the second weight into the output block, which also starts as its bias.
//! The blocks run in parallel (rayon), each product on one thread.

use crate::deform_host::{HostKernels, host_values};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Rows per block: the block's hidden activations (`ROWS × hidden`, 512 KB for LQVG) stay in cache.
const ROWS: usize = 128;

/// `linear2(relu(linear1(x)))` over the last dimension of `x (N, L, C)`: fused on the host backends
/// ([`HostKernels::Fused`]), Burn's tensor ops otherwise (and under autodiff).
pub fn feed_forward<B: Backend>(
    x: Tensor<B, 3>,
    linear1: &Linear<B>,
    linear2: &Linear<B>,
) -> Tensor<B, 3> {
    let nonempty = x
        .dims()
        .iter()
        .chain(&linear1.weight.dims())
        .all(|&d| d > 0);
    if nonempty && HostKernels::for_backend::<B>(&x.device()) == HostKernels::Fused {
        feed_forward_host(x, linear1, linear2)
    } else {
        linear2.forward(relu(linear1.forward(x)))
    }
}

/// A linear layer's weight `(in, out)` row-major and its bias (zeros without one).
fn weights<B: Backend>(linear: &Linear<B>) -> (Vec<f32>, Vec<f32>, usize, usize) {
    let [inputs, outputs] = linear.weight.dims();
    let weight = host_values(linear.weight.val());
    let bias = linear
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; outputs], |b| host_values(b.val()));
    (weight, bias, inputs, outputs)
}

/// `dst (r × cols) = bias + lhs (r × k) · rhs (k × cols)`, the bias added to every row; on this thread.
fn affine_rows(dst: &mut [f32], bias: &[f32], lhs: &[f32], rhs: MatRef<'_, f32>) {
    let (k, cols) = (rhs.nrows(), rhs.ncols());
    let r = lhs.len() / k;
    for row in dst.chunks_mut(cols) {
        row.copy_from_slice(bias);
    }
    matmul(
        MatMut::from_row_major_slice_mut(dst, r, cols),
        Accum::Add,
        MatRef::from_row_major_slice(lhs, r, k),
        rhs,
        1.0,
        Par::Seq,
    );
}

/// The fused host FFN.
fn feed_forward_host<B: Backend>(
    x: Tensor<B, 3>,
    linear1: &Linear<B>,
    linear2: &Linear<B>,
) -> Tensor<B, 3> {
    let device = x.device();
    let [n, l, _] = x.dims();
    let (w1, b1, c_in, hidden) = weights(linear1);
    let (w2, b2, _, c_out) = weights(linear2);
    let x = host_values(x);
    let rows = n * l;
    let mut out = vec![0.0f32; rows * c_out];
    let w1 = MatRef::from_row_major_slice(&w1, c_in, hidden);
    let w2 = MatRef::from_row_major_slice(&w2, hidden, c_out);
    out.par_chunks_mut(ROWS * c_out)
        .zip(x.par_chunks(ROWS * c_in))
        .for_each_init(Vec::new, |h, (out_block, x_block)| {
            h.resize(x_block.len() / c_in * hidden, 0.0);
            affine_rows(h, &b1, x_block, w1);
            for v in h.iter_mut() {
                *v = v.max(0.0);
            }
            affine_rows(out_block, &b2, h, w2);
        });
    Tensor::from_data(TensorData::new(out, [n, l, c_out]), &device)
}

#[cfg(test)]
mod tests {
    use super::{feed_forward, feed_forward_host};
    use burn::nn::LinearConfig;
    use burn::tensor::activation::relu;
    use burn::tensor::{Distribution, Tensor};

    /// The fused FFN against the tensor ops, over a row count that leaves a partial last block.
    #[test]
    fn fused_ffn_matches_tensor_ops() {
        type B = burn_flex::Flex;
        let device = Default::default();
        let linear1 = LinearConfig::new(24, 40).init::<B>(&device);
        let linear2 = LinearConfig::new(40, 24).init::<B>(&device);
        let x = Tensor::<B, 3>::random([2, 150, 24], Distribution::Normal(0.0, 1.0), &device);
        let want = linear2
            .forward(relu(linear1.forward(x.clone())))
            .into_data()
            .to_vec::<f32>()
            .expect("f32");
        for got in [
            feed_forward_host(x.clone(), &linear1, &linear2),
            feed_forward(x, &linear1, &linear2),
        ] {
            assert_eq!(got.dims(), [2, 150, 24]);
            let got = got.into_data().to_vec::<f32>().expect("f32");
            let worst = crate::test_util::max_abs_diff(&got, &want);
            assert!(worst < 1e-5, "fused vs tensor ops: {worst}");
        }
    }
}
