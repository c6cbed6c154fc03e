//! The fused host kernel of TinyViT's windowed attention with attention biases (official
//! `tiny_vit_sam.py` `Attention.forward`: `softmax(scale · q·kᵀ + ab) · v`), the counterpart for MobileSAM of
//! `kernels::attention_host` for SAM's ViT. As Burn tensor ops, each of the many small windows' scores of
//! all heads are materialised, the bias broadcast-added and a five-op softmax run over them; here each task
//! takes whole windows and, head by head, computes scores, bias, softmax and output in a scratch of one
//! `N × N` matrix.

use crate::kernels::{exp_sum, row_max, simd};
use rayon::prelude::*;

/// Sizes of one [`window_attention_host`] call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowShape {
    /// Windows × batch.
    pub windows: usize,
    /// Tokens per window.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Channels per head (q, k and v alike: `attn_ratio` 1).
    pub head_dim: usize,
}

/// Attention within each window on the host.
///
/// # Shapes
/// * `qkv`: `(G, N, heads, 3, hd)` row-major (the `qkv` linear's output, `[q | k | v]` per head);
/// * `bias`: `(heads, N, N)`, the attention biases gathered by offset;
/// * output: `(G, N, heads · hd)`.
pub(crate) fn window_attention_host(
    qkv: &[f32],
    shape: WindowShape,
    bias: &[f32],
    scale: f32,
) -> Vec<f32> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let WindowShape {
        windows,
        tokens: n,
        heads,
        head_dim: hd,
    } = shape;
    let c = heads * hd;
    debug_assert_eq!(qkv.len(), windows * n * 3 * c);
    debug_assert_eq!(bias.len(), heads * n * n);
    // Enough windows per task that each task has some work (a 7 × 7 window is ~50 k multiply-adds a head).
    let per_task = (4096 / (n * n)).clamp(1, 64).min(windows.max(1));
    let mut out = vec![0.0f32; windows * n * c];
    out.par_chunks_mut(per_task * n * c)
        .enumerate()
        .for_each(|(task, out_windows)| {
            let mut scores = vec![0.0f32; n * n];
            for (local, out_rows) in out_windows.chunks_exact_mut(n * c).enumerate() {
                let g = task * per_task + local;
                let window = &qkv[g * n * 3 * c..(g + 1) * n * 3 * c];
                // Row `t` of q / k / v for head `head` starts at `t·3C + head·3hd + which·hd`.
                let part = |head: usize, which: usize| {
                    let start = head * 3 * hd + which * hd;
                    MatRef::from_row_major_slice_with_stride(
                        &window[start..start + (n - 1) * 3 * c + hd],
                        n,
                        hd,
                        3 * c,
                    )
                };
                for head in 0..heads {
                    let mut s = MatMut::from_row_major_slice_mut(&mut scores, n, n);
                    matmul(
                        s.as_mut(),
                        Accum::Replace,
                        part(head, 0),
                        part(head, 1).transpose(),
                        scale,
                        Par::Seq,
                    );
                    let b = &bias[head * n * n..(head + 1) * n * n];
                    simd(|| {
                        for (row, brow) in scores.chunks_exact_mut(n).zip(b.chunks_exact(n)) {
                            for (x, &y) in row.iter_mut().zip(brow) {
                                *x += y;
                            }
                            let max = row_max(row);
                            let inv = 1.0 / exp_sum(row, max);
                            for x in row.iter_mut() {
                                *x *= inv;
                            }
                        }
                    });
                    // Output columns head·hd.. of every row (see `attention_host` for the faer view).
                    let o = MatMut::from_column_major_slice_with_stride_mut(
                        &mut out_rows[head * hd..(n - 1) * c + (head + 1) * hd],
                        hd,
                        n,
                        c,
                    )
                    .transpose_mut();
                    let p = MatRef::from_row_major_slice(&scores, n, n);
                    matmul(o, Accum::Replace, p, part(head, 2), 1.0, Par::Seq);
                }
            }
        });
    out
}
