//! Gaussian mixture models of RGB colours with full 3×3 covariances (Eqs. 10–11).

use pslg_core::kmeans_pp;

/// Added to the covariance diagonal of every component so that a component fitted on a flat colour (or on too
/// few pixels) stays invertible. Same value as OpenCV's grabCut; in squared 8-bit intensity units.
pub const COVARIANCE_REGULARIZATION: f64 = 0.01;

const LOG_2PI_3_2: f64 = 2.756_815_599_614_018; // 1.5 · ln(2π)

/// One Gaussian component.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Mixing weight `π_k`.
    pub weight: f64,
    /// Mean colour `μ_k`.
    pub mean: [f64; 3],
    /// Covariance `Σ_k` (row-major), regularised.
    pub covariance: [[f64; 3]; 3],
    inverse: [[f64; 3]; 3],
    /// `ln π_k − ½ ln |Σ_k| − 1.5 ln 2π`.
    log_norm: f64,
    /// Single-precision copy used by the per-pixel evaluations (see [`Component::log_density_f32`]).
    fast: FastComponent,
}

/// `f32` parameters of one component for the hot per-pixel loops: the mean, the six distinct entries of the
/// symmetric inverse covariance (off-diagonal ones doubled), and `log_norm`. Colours are 8-bit values, so
/// `f32` keeps the data terms to ~1e-6 relative, far below what changes a cut.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FastComponent {
    mean: [f32; 3],
    /// `[i00, i11, i22, 2·i01, 2·i02, 2·i12]`.
    inv: [f32; 6],
    log_norm: f32,
}

/// A Gaussian mixture `P(x) = Σ_k π_k 𝒩(x; μ_k, Σ_k)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gmm {
    components: Vec<Component>,
    /// The components' `f32` parameters, contiguous for the per-pixel loops.
    fast: Vec<FastComponent>,
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn inv3(m: &[[f64; 3]; 3], det: f64) -> [[f64; 3]; 3] {
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let d = 1.0 / det;
    [
        [c(1, 1, 2, 2) * d, -c(0, 1, 2, 2) * d, c(0, 1, 1, 2) * d],
        [-c(1, 0, 2, 2) * d, c(0, 0, 2, 2) * d, -c(0, 0, 1, 2) * d],
        [c(1, 0, 2, 1) * d, -c(0, 0, 2, 1) * d, c(0, 0, 1, 1) * d],
    ]
}

/// Weighted sufficient statistics of one component.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: f64,
    s: [f64; 3],
    ss: [[f64; 3]; 3],
}

impl Stats {
    fn add(&mut self, x: &[f32; 3], w: f64) {
        let x = [f64::from(x[0]), f64::from(x[1]), f64::from(x[2])];
        self.n += w;
        for r in 0..3 {
            self.s[r] += w * x[r];
            for c in 0..3 {
                self.ss[r][c] += w * x[r] * x[c];
            }
        }
    }
}

impl Gmm {
    /// Builds a mixture from per-component statistics; components with no mass are dropped.
    fn from_stats(stats: &[Stats]) -> Option<Self> {
        let total: f64 = stats.iter().map(|s| s.n).sum();
        if total <= 0.0 {
            return None;
        }
        let components: Vec<Component> = stats
            .iter()
            .filter(|s| s.n > 1e-9)
            .map(|s| {
                let mean = [s.s[0] / s.n, s.s[1] / s.n, s.s[2] / s.n];
                let mut cov = [[0.0; 3]; 3];
                for r in 0..3 {
                    for c in 0..3 {
                        cov[r][c] = s.ss[r][c] / s.n - mean[r] * mean[c];
                    }
                    cov[r][r] += COVARIANCE_REGULARIZATION;
                }
                let mut det = det3(&cov);
                if det <= 1e-12 {
                    // Numerically singular despite the regularisation (e.g. rounding): inflate the diagonal.
                    for (r, row) in cov.iter_mut().enumerate() {
                        row[r] += 1.0;
                    }
                    det = det3(&cov);
                }
                let weight = s.n / total;
                let inverse = inv3(&cov, det);
                let log_norm = weight.ln() - 0.5 * det.ln() - LOG_2PI_3_2;
                let iv = &inverse;
                let fast = FastComponent {
                    mean: mean.map(|m| m as f32),
                    inv: [
                        iv[0][0],
                        iv[1][1],
                        iv[2][2],
                        iv[0][1] + iv[1][0],
                        iv[0][2] + iv[2][0],
                        iv[1][2] + iv[2][1],
                    ]
                    .map(|v| v as f32),
                    log_norm: log_norm as f32,
                };
                Component {
                    weight,
                    mean,
                    covariance: cov,
                    inverse,
                    log_norm,
                    fast,
                }
            })
            .collect();
        let fast = components.iter().map(|c| c.fast).collect();
        (!components.is_empty()).then_some(Self { components, fast })
    }

    /// Eq. (10)–(11) fitting: `k` components initialised by k-means++ (seeded) on `colours`, each component's
    /// weight, mean and full covariance estimated from its cluster, covariances regularised by
    /// [`COVARIANCE_REGULARIZATION`]. Returns `None` when `colours` is empty. Fewer than `k` components result
    /// when the data has fewer distinct colours.
    pub fn fit(colours: &[[f32; 3]], k: usize, seed: u64) -> Option<Self> {
        let km = kmeans_pp(colours, k, seed, 10, 4096);
        let mut stats = vec![Stats::default(); km.centroids.len()];
        for (x, &l) in colours.iter().zip(&km.labels) {
            stats[usize::from(l)].add(x, 1.0);
        }
        Self::from_stats(&stats)
    }

    /// One EM step on `colours`: responsibilities `r_k(x) ∝ π_k 𝒩(x; μ_k, Σ_k)` under the current mixture
    /// (E), then weights, means and covariances re-estimated from them (M). Returns `None` for no colours.
    pub fn em_step(&self, colours: &[[f32; 3]]) -> Option<Self> {
        // E step component by component over colour planes (vectorised, as in `neg_log_likelihoods`):
        // `m` = largest log-term of each colour, `z` = Σ_k exp(term_k − m); then each component's
        // responsibilities r = exp(term − m) / z feed its weighted statistics (terms below 1e-6 skipped).
        let planes = ColourPlanes::new(colours.iter().copied());
        let n = planes.len();
        let (r, g, b) = (&planes.r[..n], &planes.g[..n], &planes.b[..n]);
        let mut m = vec![f32::NEG_INFINITY; n];
        for c in &self.fast {
            for i in 0..n {
                m[i] = m[i].max(c.log_density(&[r[i], g[i], b[i]]));
            }
        }
        let mut z = vec![0.0f32; n];
        for c in &self.fast {
            for i in 0..n {
                z[i] += exp_nonpositive(c.log_density(&[r[i], g[i], b[i]]) - m[i]);
            }
        }
        let mut stats = vec![Stats::default(); self.fast.len()];
        let mut resp = vec![0.0f32; n];
        for (s, c) in stats.iter_mut().zip(&self.fast) {
            for i in 0..n {
                resp[i] = exp_nonpositive(c.log_density(&[r[i], g[i], b[i]]) - m[i]) / z[i];
            }
            for (x, &w) in colours.iter().zip(&resp) {
                if w > 1e-6 {
                    s.add(x, f64::from(w));
                }
            }
        }
        Self::from_stats(&stats)
    }

    /// The components.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Eq. (12) data term: `−ln P(x)`, computed with log-sum-exp so that far-away colours stay finite.
    ///
    /// Evaluated in `f32` (see [`Component::log_density_f32`]); terms more than 30 nats below the largest
    /// are skipped (they cannot change the sum in `f32`).
    pub fn neg_log_likelihood(&self, x: &[f32; 3]) -> f64 {
        let mut buf = [0.0f32; 16];
        let n = self.fast.len().min(16);
        let mut m = f32::NEG_INFINITY;
        for (b, c) in buf.iter_mut().zip(&self.fast) {
            *b = c.log_density(x);
            m = m.max(*b);
        }
        let mut z = 0.0f32;
        for &b in &buf[..n] {
            // Terms below e^-30 cannot change z ≥ 1 in f32; skipping them avoids the slow underflow path.
            let t = b - m;
            if t > -30.0 {
                z += t.exp();
            }
        }
        f64::from(-(m + z.ln()))
    }
}

/// Colours as three planes (structure of arrays), the layout [`Gmm::neg_log_likelihoods`] vectorises over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColourPlanes {
    /// First channel of every colour.
    pub r: Vec<f32>,
    /// Second channel.
    pub g: Vec<f32>,
    /// Third channel.
    pub b: Vec<f32>,
}

impl ColourPlanes {
    /// Splits `colours` into planes.
    pub fn new(colours: impl IntoIterator<Item = [f32; 3]>) -> Self {
        let mut p = Self::default();
        for c in colours {
            p.r.push(c[0]);
            p.g.push(c[1]);
            p.b.push(c[2]);
        }
        p
    }

    /// Number of colours.
    pub fn len(&self) -> usize {
        self.r.len()
    }

    /// Whether there are no colours.
    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }
}

/// `e^x` for `x ≤ 0` in `f32` without a libm call, so that loops using it vectorise: `x = n·ln 2 + y` with
/// `n` rounded to nearest (the 1.5·2²³ trick, plain SSE2 arithmetic), `e^y` by its degree-6 Taylor polynomial
/// on `|y| ≤ ln 2 / 2` (truncation error < 1.3e-7 relative), `2^n` built from the exponent bits. Inputs below
/// −87 are clamped (the result, < 1.7e-38, is then only an upper bound of a negligible term).
#[inline]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E;
    let n = (t + SHIFT) - SHIFT; // round to nearest
    // Cody–Waite: ln 2 in two parts, so that n·ln 2 is subtracted without rounding error for |n| < 2^9.
    let y = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    let p = 1.0
        + y * (1.0
            + y * (0.5
                + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

impl Gmm {
    /// [`Gmm::neg_log_likelihood`] of every colour of `planes`, written to `out` (resized to fit). Runs
    /// component by component over contiguous planes with a polynomial `exp`, so the compiler vectorises it:
    /// the per-pixel data terms of every MBO round come from here. Agrees with the scalar version to ~1e-6
    /// relative.
    pub fn neg_log_likelihoods(&self, planes: &ColourPlanes, out: &mut Vec<f32>) {
        let n = planes.len();
        out.clear();
        out.resize(n, f32::NEG_INFINITY);
        let (r, g, b) = (&planes.r[..n], &planes.g[..n], &planes.b[..n]);
        // Pass 1: the largest log-density term of every colour.
        for c in &self.fast {
            for (((m, &r), &g), &b) in out.iter_mut().zip(r).zip(g).zip(b) {
                *m = m.max(c.log_density(&[r, g, b]));
            }
        }
        // Pass 2: Σ_k exp(term_k − max), then −(max + ln Σ).
        let mut z = vec![0.0f32; n];
        for c in &self.fast {
            for ((((z, &m), &r), &g), &b) in z.iter_mut().zip(out.iter()).zip(r).zip(g).zip(b) {
                *z += exp_nonpositive(c.log_density(&[r, g, b]) - m);
            }
        }
        for (o, z) in out.iter_mut().zip(&z) {
            *o = -(*o + z.ln());
        }
    }
}

impl Component {
    /// `ln(π_k 𝒩(x; μ_k, Σ_k))`.
    pub fn log_density(&self, x: &[f32; 3]) -> f64 {
        let d = [
            f64::from(x[0]) - self.mean[0],
            f64::from(x[1]) - self.mean[1],
            f64::from(x[2]) - self.mean[2],
        ];
        let iv = &self.inverse;
        let q = d[0] * (iv[0][0] * d[0] + iv[0][1] * d[1] + iv[0][2] * d[2])
            + d[1] * (iv[1][0] * d[0] + iv[1][1] * d[1] + iv[1][2] * d[2])
            + d[2] * (iv[2][0] * d[0] + iv[2][1] * d[1] + iv[2][2] * d[2]);
        self.log_norm - 0.5 * q
    }

    /// [`Component::log_density`] in single precision, with the symmetric quadratic form expanded
    /// (six products instead of nine). The hot loops of [`Gmm::neg_log_likelihood`] and [`Gmm::em_step`] use it.
    pub fn log_density_f32(&self, x: &[f32; 3]) -> f32 {
        self.fast.log_density(x)
    }
}

impl FastComponent {
    #[inline]
    fn log_density(&self, x: &[f32; 3]) -> f32 {
        let f = self;
        let d = [x[0] - f.mean[0], x[1] - f.mean[1], x[2] - f.mean[2]];
        let v = &f.inv;
        let q = v[0] * d[0] * d[0]
            + v[1] * d[1] * d[1]
            + v[2] * d[2] * d[2]
            + v[3] * d[0] * d[1]
            + v[4] * d[0] * d[2]
            + v[5] * d[1] * d[2];
        f.log_norm - 0.5 * q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_gaussian_density_is_exact() {
        // Points with mean 0 and unit-ish spread along each axis.
        let pts: Vec<[f32; 3]> = vec![
            [1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, -1.0],
        ];
        let g = Gmm::fit(&pts, 1, 0).unwrap();
        let c = &g.components()[0];
        let var = 1.0 / 3.0 + COVARIANCE_REGULARIZATION;
        assert!((c.covariance[0][0] - var).abs() < 1e-12 && c.covariance[0][1].abs() < 1e-12);
        let expected = 1.5 * (2.0 * std::f64::consts::PI * var).ln();
        // The per-pixel path runs in f32.
        assert!((g.neg_log_likelihood(&[0.0, 0.0, 0.0]) - expected).abs() < 1e-5 * expected.abs());
    }

    #[test]
    fn single_precision_density_matches_double() {
        let pts: Vec<[f32; 3]> = (0..300)
            .map(|i| {
                let t = i as f32;
                [(t * 7.3) % 255.0, (t * 3.1) % 200.0, (t * 1.7) % 90.0]
            })
            .collect();
        let g = Gmm::fit(&pts, 5, 3).unwrap();
        for c in g.components() {
            for x in [[0.0, 0.0, 0.0], [128.0, 64.0, 32.0], [255.0, 255.0, 255.0]] {
                let (a, b) = (f64::from(c.log_density_f32(&x)), c.log_density(&x));
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
        for x in [[3.0, 9.0, 27.0], [250.0, 10.0, 80.0]] {
            let direct: f64 = g.components().iter().map(|c| c.log_density(&x).exp()).sum();
            let nll = g.neg_log_likelihood(&x);
            assert!((nll + direct.ln()).abs() <= 1e-5 * nll.abs().max(1.0));
        }
    }

    #[test]
    fn polynomial_exp_is_accurate() {
        let mut x = 0.0f32;
        while x > -80.0 {
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b, "exp({x}): {a} vs {b}");
            x -= 0.173;
        }
        assert!(exp_nonpositive(-1000.0) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn batched_likelihoods_match_the_scalar_ones() {
        let pts: Vec<[f32; 3]> = (0..257)
            .map(|i| {
                let t = i as f32;
                [(t * 7.3) % 255.0, (t * 3.1) % 200.0, (t * 1.7) % 90.0]
            })
            .collect();
        let g = Gmm::fit(&pts, 5, 3).unwrap();
        let mut out = Vec::new();
        let probe: Vec<[f32; 3]> = pts
            .iter()
            .copied()
            .chain([[255.0, 0.0, 255.0], [0.0; 3]])
            .collect();
        g.neg_log_likelihoods(&ColourPlanes::new(probe.iter().copied()), &mut out);
        assert_eq!(out.len(), probe.len());
        for (x, &o) in probe.iter().zip(&out) {
            let s = g.neg_log_likelihood(x);
            assert!(
                (f64::from(o) - s).abs() <= 2e-6 * s.abs().max(1.0),
                "{x:?}: {o} vs {s}"
            );
        }
        g.neg_log_likelihoods(&ColourPlanes::default(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn flat_colour_stays_finite() {
        let g = Gmm::fit(&vec![[10.0, 10.0, 10.0]; 50], 5, 0).unwrap();
        assert_eq!(g.components().len(), 1);
        assert!(g.neg_log_likelihood(&[10.0, 10.0, 10.0]).is_finite());
        assert!(g.neg_log_likelihood(&[255.0, 0.0, 0.0]).is_finite());
        assert!(Gmm::fit(&[], 5, 0).is_none());
    }

    #[test]
    fn em_increases_likelihood() {
        let pts: Vec<[f32; 3]> = (0..400)
            .map(|i| {
                let t = i as f32;
                if i % 2 == 0 {
                    [20.0 + (t * 0.37) % 9.0, 40.0 + (t * 0.71) % 7.0, 30.0]
                } else {
                    [200.0, 180.0 + (t * 0.13) % 11.0, 170.0 + (t * 0.53) % 5.0]
                }
            })
            .collect();
        let nll = |g: &Gmm| pts.iter().map(|p| g.neg_log_likelihood(p)).sum::<f64>();
        let g0 = Gmm::fit(&pts, 3, 1).unwrap();
        let g1 = g0.em_step(&pts).unwrap();
        assert!(nll(&g1) <= nll(&g0) + 1e-6, "{} > {}", nll(&g1), nll(&g0));
    }
}
