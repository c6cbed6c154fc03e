//! Sine position embeddings of the official code (`PositionEmbeddingSine2D` / `PositionEmbeddingSine1D`,
//! normalised, temperature 10 000), computed in f32 as the official code does.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::f32::consts::PI;

fn dim_t(num_pos_feats: usize) -> Vec<f32> {
    (0..num_pos_feats)
        .map(|k| 10000f32.powf((2 * (k / 2)) as f32 / num_pos_feats as f32))
        .collect()
}

/// Interleaved sin/cos of `value / dim_t[k]`: even `k` sine, odd `k` cosine.
fn encode(value: f32, dims: &[f32], out: &mut Vec<f32>) {
    for (k, d) in dims.iter().enumerate() {
        let v = value / d;
        out.push(if k % 2 == 0 { v.sin() } else { v.cos() });
    }
}

/// The 2-D embedding of an unpadded `h × w` feature map as a sequence `(1, h·w, 2·num_pos_feats)` (row-major
/// positions; the y features come before the x features): `(cumsum − 0.5) / (last + 1e-6) · 2π`.
pub fn sine_2d<B: Backend>(
    h: usize,
    w: usize,
    num_pos_feats: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let dims = dim_t(num_pos_feats);
    let eps = 1e-6f32;
    let scale = 2.0 * PI;
    let mut ys = Vec::with_capacity(h);
    for i in 0..h {
        let mut row = Vec::with_capacity(num_pos_feats);
        encode(
            ((i + 1) as f32 - 0.5) / (h as f32 + eps) * scale,
            &dims,
            &mut row,
        );
        ys.push(row);
    }
    let mut xs = Vec::with_capacity(w);
    for j in 0..w {
        let mut col = Vec::with_capacity(num_pos_feats);
        encode(
            ((j + 1) as f32 - 0.5) / (w as f32 + eps) * scale,
            &dims,
            &mut col,
        );
        xs.push(col);
    }
    let c = 2 * num_pos_feats;
    let mut data = Vec::with_capacity(h * w * c);
    for y in &ys {
        for x in &xs {
            data.extend_from_slice(y);
            data.extend_from_slice(x);
        }
    }
    Tensor::from_data(TensorData::new(data, [1, h * w, c]), device)
}

/// The 1-D text embedding `(B, L, num_pos_feats)` of a padded batch (`valid` row-major, `true` for real
/// tokens): `cumsum / (count + 1e-6) · 2π`, no −0.5 offset.
pub fn sine_1d<B: Backend>(
    valid: &[bool],
    batch: usize,
    len: usize,
    num_pos_feats: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let dims = dim_t(num_pos_feats);
    let scale = 2.0 * PI;
    let mut data = Vec::with_capacity(batch * len * num_pos_feats);
    for r in 0..batch {
        let row = &valid[r * len..(r + 1) * len];
        // The official code divides by the cumulative count at the last position.
        let last = row.iter().filter(|&&v| v).count() as f32;
        let mut cum = 0f32;
        for &v in row {
            if v {
                cum += 1.0;
            }
            encode(cum / (last + 1e-6) * scale, &dims, &mut data);
        }
    }
    Tensor::from_data(TensorData::new(data, [batch, len, num_pos_feats]), device)
}
