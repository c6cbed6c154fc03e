//! Multi-scale deformable attention (Deformable DETR's `MSDeformAttn`) with Burn tensor ops.
//!
//! The sampling reproduces the official pure-PyTorch fallback `ms_deform_attn_core_pytorch`: bilinear
//! `grid_sample` with zero padding and `align_corners = False` — a location `(x, y) ∈ [0, 1]²` reads pixel
//! coordinates `(x·W − 0.5, y·H − 0.5)`, and corners outside the map contribute zero. It is written as a
//! row gather plus a weighted sum, so the same code is differentiable with respect to the values, the
//! sampling locations and the attention weights (training needs all three).

pub use crate::deform_host::HostKernels;
use crate::deform_host::{ms_deform_attn_core_host, ms_deform_attn_host};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Queries per gather chunk: bounds the `(chunk · heads · levels · points · 4, head dim)` temporary.
const QUERY_CHUNK: usize = 1024;

/// The core: `value (N, S, M, D)` laid out level after level with `shapes[l] = (H_l, W_l)`,
/// `locations (N, Lq, M, L, P, 2)` in `[0, 1]` (x, y), `weights (N, Lq, M, L, P)` → `(N, Lq, M·D)`.
///
/// On `flex` and `ndarray` without autodiff this is one fused loop over the host buffers
/// ([`HostKernels`]); elsewhere, and whenever gradients are recorded, the tensor-op composition.
///
/// # Panics
/// When `shapes` does not describe `value`: `L` levels whose `H·W` sum to `S`.
pub fn ms_deform_attn_core<B: Backend>(
    value: Tensor<B, 4>,
    shapes: &[(usize, usize)],
    locations: Tensor<B, 6>,
    weights: Tensor<B, 5>,
) -> Tensor<B, 3> {
    // Empty dimensions (nothing to sample) take the tensor ops, which handle them.
    let fused = HostKernels::for_backend::<B>(&value.device()) == HostKernels::Fused
        && value.dims().iter().chain(&locations.dims()).all(|&d| d > 0);
    if fused {
        ms_deform_attn_core_host(value, shapes, locations, weights)
    } else {
        ms_deform_attn_core_tensor_ops(value, shapes, locations, weights)
    }
}

/// [`ms_deform_attn_core`] as Burn tensor ops: a row gather and a weighted sum, differentiable in the
/// values, the locations and the weights.
pub fn ms_deform_attn_core_tensor_ops<B: Backend>(
    value: Tensor<B, 4>,
    shapes: &[(usize, usize)],
    locations: Tensor<B, 6>,
    weights: Tensor<B, 5>,
) -> Tensor<B, 3> {
    let [n, s, m, d] = value.dims();
    let [_, lq, _, l, p, _] = locations.dims();
    let device = value.device();
    // Rows of (batch, head, position): one D-vector each.
    let rows = value.swap_dims(1, 2).reshape([n * m * s, d]);
    let col = |f: &dyn Fn(usize, usize, usize) -> f32| {
        let mut v = Vec::with_capacity(l);
        let mut start = 0;
        for &(h, w) in shapes {
            v.push(f(h, w, start));
            start += h * w;
        }
        Tensor::<B, 5>::from_data(TensorData::new(v, [1, 1, 1, l, 1]), &device)
    };
    let width = col(&|_, w, _| w as f32);
    let height = col(&|h, _, _| h as f32);
    let start = col(&|_, _, st| st as f32);
    // (batch · M + head) · S: the first row of each (batch, head) block.
    let base: Vec<f32> = (0..n)
        .flat_map(|b| (0..m).map(move |h| ((b * m + h) * s) as f32))
        .collect();
    let base = Tensor::<B, 5>::from_data(TensorData::new(base, [n, 1, m, 1, 1]), &device);

    let mut outputs = Vec::new();
    let mut q0 = 0;
    while q0 < lq {
        let cq = QUERY_CHUNK.min(lq - q0);
        let loc = locations.clone().narrow(1, q0, cq);
        let att = weights.clone().narrow(1, q0, cq);
        let x = loc.clone().narrow(5, 0, 1).reshape([n, cq, m, l, p]);
        let y = loc.narrow(5, 1, 1).reshape([n, cq, m, l, p]);
        let px = x * width.clone() - 0.5;
        let py = y * height.clone() - 0.5;
        let x0 = px.clone().floor();
        let y0 = py.clone().floor();
        let fx = px - x0.clone();
        let fy = py - y0.clone();
        let mut idx = Vec::with_capacity(4);
        let mut wts = Vec::with_capacity(4);
        for (dx, dy) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
            let xi = x0.clone() + dx;
            let yi = y0.clone() + dy;
            let wx = if dx == 0.0 {
                fx.clone().neg() + 1.0
            } else {
                fx.clone()
            };
            let wy = if dy == 0.0 {
                fy.clone().neg() + 1.0
            } else {
                fy.clone()
            };
            let inside = xi
                .clone()
                .greater_equal_elem(0.0)
                .bool_and(xi.clone().lower_equal(width.clone() - 1.0))
                .bool_and(yi.clone().greater_equal_elem(0.0))
                .bool_and(yi.clone().lower_equal(height.clone() - 1.0))
                .float();
            wts.push(wx * wy * inside * att.clone());
            let xc = xi
                .max_pair(Tensor::zeros_like(&width))
                .min_pair(width.clone() - 1.0);
            let yc = yi
                .max_pair(Tensor::zeros_like(&height))
                .min_pair(height.clone() - 1.0);
            idx.push(base.clone() + start.clone() + yc * width.clone() + xc);
        }
        let k = l * p * 4;
        let idx: Tensor<B, 1, Int> = Tensor::stack::<6>(idx, 5).reshape([n * cq * m * k]).int();
        let wts = Tensor::stack::<6>(wts, 5).reshape([n * cq * m, k, 1]);
        let sampled = rows.clone().select(0, idx).reshape([n * cq * m, k, d]);
        let out = (sampled * wts).sum_dim(1).reshape([n, cq, m * d]);
        outputs.push(out);
        q0 += cq;
    }
    Tensor::cat(outputs, 1)
}

/// Reference points of the queries: a point per level `(N, Lq, L, 2)` or a box per level `(N, Lq, L, 4)`
/// (centre x, y, width, height; all normalised).
#[derive(Debug, Clone)]
pub enum ReferencePoints<B: Backend> {
    /// `(x, y)`: location = reference + offset / (W, H).
    Points(Tensor<B, 4>),
    /// `(cx, cy, w, h)`: location = centre + offset / points · (w, h) · 0.5.
    Boxes(Tensor<B, 4>),
}

/// Deformable attention over several feature levels (`MSDeformAttn`).
#[derive(Module, Debug)]
pub struct MsDeformAttn<B: Backend> {
    /// Offsets `(heads · levels · points · 2)` from the query, in (x, y) order.
    pub sampling_offsets: Linear<B>,
    /// Attention logits `(heads · levels · points)`, softmaxed over levels × points.
    pub attention_weights: Linear<B>,
    /// Value projection.
    pub value_proj: Linear<B>,
    /// Output projection.
    pub output_proj: Linear<B>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    levels: usize,
    #[module(skip)]
    points: usize,
}

impl<B: Backend> MsDeformAttn<B> {
    /// A `dim`-wide module with placeholder weights.
    pub fn new(dim: usize, levels: usize, heads: usize, points: usize, device: &B::Device) -> Self {
        Self {
            sampling_offsets: LinearConfig::new(dim, heads * levels * points * 2).init(device),
            attention_weights: LinearConfig::new(dim, heads * levels * points).init(device),
            value_proj: LinearConfig::new(dim, dim).init(device),
            output_proj: LinearConfig::new(dim, dim).init(device),
            heads,
            levels,
            points,
        }
    }

    /// `query (N, Lq, C)` samples `input (N, S, C)` (levels flattened in order, `shapes[l] = (H, W)`)
    /// around its reference points. On the host backends ([`HostKernels`]) the softmax, the locations
    /// and the sampling run as one fused loop.
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        reference: &ReferencePoints<B>,
        input: Tensor<B, 3>,
        shapes: &[(usize, usize)],
    ) -> Tensor<B, 3> {
        let sampling = HostKernels::for_backend::<B>(&query.device());
        self.forward_with(query, reference, input, shapes, sampling)
    }

    /// [`MsDeformAttn::forward`] with the sampling implementation chosen by the caller.
    pub(crate) fn forward_with(
        &self,
        query: Tensor<B, 3>,
        reference: &ReferencePoints<B>,
        input: Tensor<B, 3>,
        shapes: &[(usize, usize)],
        sampling: HostKernels,
    ) -> Tensor<B, 3> {
        let nonempty = query.dims().iter().chain(&input.dims()).all(|&d| d > 0)
            && self.heads * self.levels * self.points > 0;
        if sampling == HostKernels::Fused && nonempty {
            let [n, _, c] = query.dims();
            let s = input.dims()[1];
            let m = self.heads;
            let value = self.value_proj.forward(input).reshape([n, s, m, c / m]);
            let offsets = self.sampling_offsets.forward(query.clone());
            let logits = self.attention_weights.forward(query);
            let reference = match reference {
                ReferencePoints::Points(r) | ReferencePoints::Boxes(r) => r.clone(),
            };
            let out = ms_deform_attn_host(value, offsets, logits, reference, shapes, self.points);
            return self.output_proj.forward(out);
        }
        let [n, lq, c] = query.dims();
        let s = input.dims()[1];
        let (m, l, p) = (self.heads, self.levels, self.points);
        let value = self.value_proj.forward(input).reshape([n, s, m, c / m]);
        let offsets = self
            .sampling_offsets
            .forward(query.clone())
            .reshape([n, lq, m, l, p, 2]);
        let weights = softmax(
            self.attention_weights
                .forward(query)
                .reshape([n, lq, m, l * p]),
            3,
        )
        .reshape([n, lq, m, l, p]);
        let device = offsets.device();
        let locations = match reference {
            ReferencePoints::Points(r) => {
                let mut norm = Vec::with_capacity(2 * l);
                for &(h, w) in shapes {
                    norm.push(w as f32);
                    norm.push(h as f32);
                }
                let norm =
                    Tensor::<B, 6>::from_data(TensorData::new(norm, [1, 1, 1, l, 1, 2]), &device);
                r.clone().reshape([n, lq, 1, l, 1, 2]) + offsets / norm
            }
            ReferencePoints::Boxes(r) => {
                let r = r.clone().reshape([n, lq, 1, l, 1, 4]);
                let xy = r.clone().narrow(5, 0, 2);
                let wh = r.narrow(5, 2, 2);
                xy + offsets / (p as f64) * wh * 0.5
            }
        };
        let out = ms_deform_attn_core_tensor_ops(value, shapes, locations, weights);
        self.output_proj.forward(out)
    }
}
