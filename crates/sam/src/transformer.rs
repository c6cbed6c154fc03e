//! The two-way transformer of the mask decoder (`segment_anything/modeling/transformer.py`): attention with
//! an optional down-projection, the two-way block (token self-attention, token → image and image → token
//! cross-attention, MLP), and the stack of blocks with its final token → image attention.

use crate::SamConfig;
use crate::common::MlpBlock;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;

/// Attention with optional down-projection of the embedding (`downsample_rate`).
#[derive(Module, Debug)]
pub struct DecoderAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Linear<B>,
    /// Key projection.
    pub k_proj: Linear<B>,
    /// Value projection.
    pub v_proj: Linear<B>,
    /// Output projection.
    pub out_proj: Linear<B>,
    #[module(skip)]
    num_heads: usize,
}

impl<B: Backend> DecoderAttention<B> {
    pub(crate) fn new(dim: usize, heads: usize, downsample: usize, device: &B::Device) -> Self {
        let inner = dim / downsample;
        Self {
            q_proj: LinearConfig::new(dim, inner).init(device),
            k_proj: LinearConfig::new(dim, inner).init(device),
            v_proj: LinearConfig::new(dim, inner).init(device),
            out_proj: LinearConfig::new(inner, dim).init(device),
            num_heads: heads,
        }
    }

    pub(crate) fn heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, n, c] = x.dims();
        x.reshape([b, n, self.num_heads, c / self.num_heads])
            .swap_dims(1, 2)
    }

    /// `q (B, Nq, C)`, `k`, `v (B, Nk, C)` → `(B, Nq, C)`.
    ///
    /// When one side is a handful of tokens and the other the image (`heads · tokens` below the inner
    /// dimension, batch 1), the image-side projections are folded into the tokens' side
    /// ([`DecoderAttention::forward_tokens_to_image`], [`DecoderAttention::forward_image_to_tokens`]): the
    /// same attention in about half the multiply-adds.
    pub fn forward(&self, q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, nq, _] = q.dims();
        let nk = k.dims()[1];
        if b == 1 && nq < nk && self.folds(nq) {
            self.forward_tokens_to_image(q, k, v)
        } else if b == 1 && nk < nq && self.folds(nk) {
            self.forward_image_to_tokens(q, k, v)
        } else {
            self.forward_unfolded(q, k, v)
        }
    }

    /// [`DecoderAttention::forward`] as the official code computes it: project, split heads, attend, merge,
    /// project.
    pub fn forward_unfolded(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let kv = self.project_kv(k, v);
        self.forward_projected(q, &kv)
    }

    /// Inner dimension and head dimension.
    pub(crate) fn dims(&self) -> (usize, usize) {
        let inner = self.q_proj.weight.dims()[1];
        (inner, inner / self.num_heads)
    }

    /// Whether folding saves work for `tokens` tokens: the image then meets `heads · tokens` columns per
    /// product instead of the inner dimension's.
    pub(crate) fn folds(&self, tokens: usize) -> bool {
        self.num_heads * tokens < self.dims().0
    }

    /// Few tokens `q (1, n, C)` attending to many image tokens `k`, `v (1, N, C)`, the key and value
    /// projections moved onto the tokens' side. Per head `h` (head dim `d`):
    ///
    /// `softmax(q_h (k W_k,h + b_k,h)ᵀ / √d) (v W_v,h + b_v,h) = softmax((q_h W_k,hᵀ) kᵀ / √d) (v) W_v,h + b_v,h`
    ///
    /// since the key bias adds the same value to a whole score row (softmax ignores it) and softmax rows sum
    /// to one. The image tokens meet a `(heads·n, C)` matrix twice instead of two `(C, inner)` weights.
    pub fn forward_tokens_to_image(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let [_, n, c] = q.dims();
        let h = self.num_heads;
        let (inner, d) = self.dims();
        let q = self.heads(self.q_proj.forward(q)); // (1, h, n, d)
        let wk = self
            .k_proj
            .weight
            .val()
            .reshape([1, c, h, d])
            .permute([0, 2, 3, 1]); // (1, h, d, C)
        // Batch 1: the image-sized products are plain 2-d matrix products; the scale goes on the small side.
        let big_n = k.dims()[1];
        let a = (q.matmul(wk) / (d as f64).sqrt()).reshape([h * n, c]);
        let scores = a.matmul(k.reshape([big_n, c]).transpose()); // (h·n, N)
        let pv = softmax(scores, 1)
            .matmul(v.reshape([big_n, c]))
            .reshape([1, h, n, c]);
        let wv = self
            .v_proj
            .weight
            .val()
            .reshape([1, c, h, d])
            .permute([0, 2, 1, 3]); // (1, h, C, d)
        let mut out = pv.matmul(wv); // (1, h, n, d)
        if let Some(bv) = &self.v_proj.bias {
            out = out + bv.val().reshape([1, h, 1, d]);
        }
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([1, n, inner]))
    }

    /// Many image tokens `q (1, N, C)` attending to few tokens `k`, `v (1, n, C)`, the query and output
    /// projections moved onto the tokens' side. Per head `h`, with `K_h`, `V_h` the projected tokens:
    ///
    /// `scores_h = (q W_q,h + b_q,h) K_hᵀ = q (W_q,h K_hᵀ) + b_q,h K_hᵀ`, and
    /// `out = Σ_h softmax(scores_h / √d) (V_h W_o,h) + b_o` with `W_o,h` the head's rows of the output
    /// weight; the image tokens meet `(C, heads·n)` and `(heads·n, C)` matrices instead of `(C, inner)` and
    /// `(inner, C)` weights. The output bias is spread over the rows of `V_h W_o,h` (each head's
    /// probabilities sum to one).
    pub fn forward_image_to_tokens(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let [_, big_n, c] = q.dims();
        let n = k.dims()[1];
        let h = self.num_heads;
        let (_, d) = self.dims();
        let kt = self.heads(self.k_proj.forward(k)).swap_dims(2, 3); // (1, h, d, n)
        let v = self.heads(self.v_proj.forward(v)); // (1, h, n, d)
        let wq = self
            .q_proj
            .weight
            .val()
            .reshape([1, c, h, d])
            .permute([0, 2, 1, 3]); // (1, h, C, d)
        let scale = (d as f64).sqrt();
        let m = (wq.matmul(kt.clone()) / scale)
            .permute([0, 2, 1, 3])
            .reshape([c, h * n]);
        let mut scores = q.reshape([big_n, c]).matmul(m); // (N, h·n)
        if let Some(bq) = &self.q_proj.bias {
            let r = bq.val().reshape([1, h, 1, d]).matmul(kt) / scale; // (1, h, 1, n)
            scores = scores + r.reshape([1, h * n]);
        }
        let p = softmax(scores.reshape([big_n, h, n]), 2).reshape([big_n, h * n]);
        let wo = self.out_proj.weight.val().reshape([1, h, d, c]);
        let mut u = v.matmul(wo); // (1, h, n, C)
        if let Some(bo) = &self.out_proj.bias {
            // Each head's probabilities sum to one over its n rows of `u`: adding b_o / heads to every row
            // adds b_o to every output, without an image-sized broadcast add.
            u = u + bo.val().reshape([1, 1, 1, c]) / h as f64;
        }
        p.matmul(u.reshape([h * n, c])).reshape([1, big_n, c])
    }

    /// The key and value projections, split into heads `(B, heads, Nk, C/heads)`.
    pub(crate) fn project_kv(
        &self,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (
            self.heads(self.k_proj.forward(k)),
            self.heads(self.v_proj.forward(v)),
        )
    }

    /// [`DecoderAttention::forward`] with the keys and values already projected.
    pub(crate) fn forward_projected(
        &self,
        q: Tensor<B, 3>,
        (k, v): &(Tensor<B, 4>, Tensor<B, 4>),
    ) -> Tensor<B, 3> {
        let (k, v) = (k.clone(), v.clone());
        let q = self.heads(self.q_proj.forward(q));
        let [b, h, n, ch] = q.dims();
        let attn = q.matmul(k.swap_dims(2, 3)) / (ch as f64).sqrt();
        let out = softmax(attn, 3).matmul(v);
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, n, h * ch]))
    }
}

/// One two-way block: token self-attention, token → image cross-attention, MLP, image → token
/// cross-attention, each followed by a LayerNorm.
#[derive(Module, Debug)]
pub struct TwoWayAttentionBlock<B: Backend> {
    /// Token self-attention.
    pub self_attn: DecoderAttention<B>,
    /// Norm after self-attention.
    pub norm1: LayerNorm<B>,
    /// Tokens attend to the image.
    pub cross_attn_token_to_image: DecoderAttention<B>,
    /// Norm after it.
    pub norm2: LayerNorm<B>,
    /// Token MLP (ReLU).
    pub mlp: MlpBlock<B>,
    /// Norm after the MLP.
    pub norm3: LayerNorm<B>,
    /// Norm after the image → token attention.
    pub norm4: LayerNorm<B>,
    /// The image attends to the tokens.
    pub cross_attn_image_to_token: DecoderAttention<B>,
    #[module(skip)]
    skip_first_layer_pe: bool,
}

impl<B: Backend> TwoWayAttentionBlock<B> {
    /// The token → image attention's projected keys and values for `keys` (image tokens) and their PE.
    pub(crate) fn token_to_image_kv(
        &self,
        keys: Tensor<B, 3>,
        key_pe: Tensor<B, 3>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        self.cross_attn_token_to_image
            .project_kv(keys.clone() + key_pe, keys)
    }

    /// One block; `kv` is [`TwoWayAttentionBlock::token_to_image_kv`] of `keys` when already computed.
    pub(crate) fn forward(
        &self,
        queries: Tensor<B, 3>,
        keys: Tensor<B, 3>,
        query_pe: Tensor<B, 3>,
        key_pe: Tensor<B, 3>,
        kv: Option<&(Tensor<B, 4>, Tensor<B, 4>)>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);
        let q = queries.clone() + query_pe.clone();
        let t2i = &self.cross_attn_token_to_image;
        let attended = match kv {
            Some(kv) => t2i.forward_projected(q, kv),
            None => t2i.forward(q, keys.clone() + key_pe.clone(), keys.clone()),
        };
        let queries = queries + attended;
        let queries = self.norm2.forward(queries);
        let queries = queries.clone() + self.mlp.forward(queries, relu);
        let queries = self.norm3.forward(queries);
        let q = queries.clone() + query_pe;
        let k = keys.clone() + key_pe;
        let keys = keys
            + self
                .cross_attn_image_to_token
                .forward(k, q, queries.clone());
        (queries, self.norm4.forward(keys))
    }
}

/// The two-way transformer.
#[derive(Module, Debug)]
pub struct TwoWayTransformer<B: Backend> {
    /// The blocks.
    pub layers: Vec<TwoWayAttentionBlock<B>>,
    /// Final token → image attention.
    pub final_attn_token_to_image: DecoderAttention<B>,
    /// Final norm of the tokens.
    pub norm_final_attn: LayerNorm<B>,
}

impl<B: Backend> TwoWayTransformer<B> {
    /// A zero-initialised transformer of `cfg`'s decoder shape (depth, heads, MLP width).
    pub(crate) fn new(cfg: &SamConfig, device: &B::Device) -> Self {
        let d = cfg.prompt_dim;
        let norm = || LayerNormConfig::new(d).init(device);
        Self {
            layers: (0..cfg.decoder_depth)
                .map(|i| TwoWayAttentionBlock {
                    self_attn: DecoderAttention::new(d, cfg.decoder_heads, 1, device),
                    norm1: norm(),
                    cross_attn_token_to_image: DecoderAttention::new(
                        d,
                        cfg.decoder_heads,
                        2,
                        device,
                    ),
                    norm2: norm(),
                    mlp: MlpBlock {
                        lin1: LinearConfig::new(d, cfg.decoder_mlp_dim).init(device),
                        lin2: LinearConfig::new(cfg.decoder_mlp_dim, d).init(device),
                    },
                    norm3: norm(),
                    norm4: norm(),
                    cross_attn_image_to_token: DecoderAttention::new(
                        d,
                        cfg.decoder_heads,
                        2,
                        device,
                    ),
                    skip_first_layer_pe: i == 0,
                })
                .collect(),
            final_attn_token_to_image: DecoderAttention::new(d, cfg.decoder_heads, 2, device),
            norm_final_attn: norm(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_ndarray::NdArray;

    type B = NdArray<f32>;

    fn rel(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
        let a = a.into_data().to_vec::<f32>().unwrap();
        let b = b.into_data().to_vec::<f32>().unwrap();
        let max_b = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max_d = crate::test_util::max_abs_diff(&a, &b);
        max_d / max_b
    }

    /// The folded token → image and image → token attentions equal the official computation (random
    /// weights and biases, which `LinearConfig::init` draws), and `forward` folds only where it saves work.
    #[test]
    fn folded_attention_matches_the_unfolded_one() {
        let device = Default::default();
        let att = DecoderAttention::<B>::new(64, 4, 2, &device); // inner 32, head dim 8
        let rnd =
            |n: usize| Tensor::<B, 3>::random([1, n, 64], Distribution::Normal(0.0, 1.0), &device);
        assert!(att.folds(7) && !att.folds(8));
        for n in [1, 3, 7] {
            let (tokens, image, image_v) = (rnd(n), rnd(96), rnd(96));
            let folded =
                att.forward_tokens_to_image(tokens.clone(), image.clone(), image_v.clone());
            let plain = att.forward_unfolded(tokens.clone(), image.clone(), image_v.clone());
            let e = rel(folded, plain.clone());
            assert!(
                e < 1e-5,
                "tokens -> image, {n} tokens: relative error {e:e}"
            );
            let e = rel(att.forward(tokens.clone(), image.clone(), image_v), plain);
            assert!(e < 1e-5, "forward, tokens -> image: {e:e}");
            let values = rnd(n);
            let folded = att.forward_image_to_tokens(image.clone(), tokens.clone(), values.clone());
            let plain = att.forward_unfolded(image.clone(), tokens.clone(), values.clone());
            let e = rel(folded, plain.clone());
            assert!(
                e < 1e-5,
                "image -> tokens, {n} tokens: relative error {e:e}"
            );
            let e = rel(att.forward(image, tokens, values), plain);
            assert!(e < 1e-5, "forward, image -> tokens: {e:e}");
        }
    }
}
