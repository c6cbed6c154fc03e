//! k-means with k-means++ seeding on colour vectors (Eq. 5).

use rand::{Rng, SeedableRng, rngs::StdRng};

/// Result of [`kmeans_pp`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Cluster centres `μ_j`, `k` of them (fewer when the data has fewer distinct points).
    pub centroids: Vec<[f32; 3]>,
    /// Cluster index of every input point.
    pub labels: Vec<u8>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

fn dist2(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// Points as three coordinate planes, for the vectorised assignment step.
struct Planes {
    x: Vec<f32>,
    y: Vec<f32>,
    z: Vec<f32>,
    /// Scratch: running argmin of the assignment, reused between calls.
    arg: Vec<f32>,
}

impl Planes {
    fn new(points: &[[f32; 3]]) -> Self {
        let mut p = Self {
            x: Vec::new(),
            y: Vec::new(),
            z: Vec::new(),
            arg: Vec::new(),
        };
        p.refill(points);
        p
    }

    fn refill(&mut self, points: &[[f32; 3]]) {
        self.x.clear();
        self.y.clear();
        self.z.clear();
        self.x.extend(points.iter().map(|p| p[0]));
        self.y.extend(points.iter().map(|p| p[1]));
        self.z.extend(points.iter().map(|p| p[2]));
    }

    /// Index of the nearest centroid of every point (the lowest index on ties), into `label`.
    fn assign(&mut self, centroids: &[[f32; 3]], best: &mut [f32], label: &mut [u32]) {
        let n = best.len();
        self.arg.clear();
        self.arg.resize(n, 0.0);
        let (xs, ys, zs, arg) = (&self.x[..n], &self.y[..n], &self.z[..n], &mut self.arg[..n]);
        // The running argmin is kept as f32 (exact for indices < 2^24) so that the select is all-f32 and
        // vectorises on baseline SSE2.
        best.fill(f32::INFINITY);
        for (j, c) in centroids.iter().enumerate() {
            let jf = j as f32;
            for i in 0..n {
                let d = [xs[i] - c[0], ys[i] - c[1], zs[i] - c[2]];
                let d = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                // Branch-free: 1.0 where strictly closer, so that the loop vectorises.
                let closer = f32::from(u8::from(d < best[i]));
                arg[i] += closer * (jf - arg[i]);
                best[i] = if d < best[i] { d } else { best[i] };
            }
        }
        for (l, &a) in label[..n].iter_mut().zip(arg.iter()) {
            *l = a as u32;
        }
    }
}

/// Index of the nearest centroid and its squared distance.
pub fn nearest(centroids: &[[f32; 3]], p: &[f32; 3]) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (j, c) in centroids.iter().enumerate() {
        let d = dist2(c, p);
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// Eq. (5): k-means clustering `argmin Σ_j Σ_{x ∈ C_j} ‖x − μ_j‖²` with k-means++ seeding
/// (Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007).
///
/// Deterministic for a given `seed`. To bound the cost on large regions, seeding and Lloyd updates use at most
/// `max_fit_points` points taken at a regular stride; every point is then assigned to its nearest centre.
/// Lloyd iterations stop when no fitted label changes or after `max_iter`. `k` is clamped to
/// `1..=min(255, points.len())`; with no points the result is empty.
///
/// # Examples
/// ```
/// use pslg_core::kmeans_pp;
/// let pts = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [100.0, 100.0, 100.0], [101.0, 100.0, 100.0]];
/// let km = kmeans_pp(&pts, 2, 7, 50, 10_000);
/// assert_eq!(km.labels[0], km.labels[1]);
/// assert_ne!(km.labels[0], km.labels[2]);
/// ```
pub fn kmeans_pp(
    points: &[[f32; 3]],
    k: usize,
    seed: u64,
    max_iter: usize,
    max_fit_points: usize,
) -> KMeans {
    if points.is_empty() {
        return KMeans {
            centroids: Vec::new(),
            labels: Vec::new(),
            iterations: 0,
        };
    }
    let k = k.clamp(1, 255.min(points.len()));
    let stride = points.len().div_ceil(max_fit_points.max(1));
    let fit: Vec<[f32; 3]> = points.iter().step_by(stride).copied().collect();
    let mut rng = StdRng::seed_from_u64(seed);

    // k-means++ seeding: the first centre uniformly, each next one with probability ∝ D(x)².
    let mut centroids = vec![fit[rng.random_range(0..fit.len())]];
    let mut d2: Vec<f32> = fit.iter().map(|p| dist2(p, &centroids[0])).collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().map(|&d| f64::from(d)).sum();
        if total <= 0.0 {
            break; // all remaining points coincide with a centre
        }
        let mut r = rng.random::<f64>() * total;
        let mut pick = fit.len() - 1;
        for (i, &d) in d2.iter().enumerate() {
            r -= f64::from(d);
            if r <= 0.0 && d > 0.0 {
                pick = i;
                break;
            }
        }
        let c = fit[pick];
        centroids.push(c);
        for (d, p) in d2.iter_mut().zip(&fit) {
            *d = d.min(dist2(p, &c));
        }
    }

    // Lloyd iterations on the fitted subset. The assignment step runs centroid by centroid over colour
    // planes (a strict `<` keeps the lowest index on ties, as `nearest` does) so that it vectorises.
    let mut planes = Planes::new(&fit);
    let mut labels = vec![u32::MAX; fit.len()];
    let mut assigned = vec![0u32; fit.len()];
    let mut best = vec![0.0f32; fit.len()];
    let mut iterations = 0;
    for _ in 0..max_iter {
        iterations += 1;
        planes.assign(&centroids, &mut best, &mut assigned);
        let changed = assigned != labels;
        std::mem::swap(&mut labels, &mut assigned);
        let mut sums = vec![[0.0f64; 4]; centroids.len()];
        for (&j, p) in labels.iter().zip(&fit) {
            let s = &mut sums[j as usize];
            s[0] += f64::from(p[0]);
            s[1] += f64::from(p[1]);
            s[2] += f64::from(p[2]);
            s[3] += 1.0;
        }
        for (c, s) in centroids.iter_mut().zip(&sums) {
            if s[3] > 0.0 {
                *c = [
                    (s[0] / s[3]) as f32,
                    (s[1] / s[3]) as f32,
                    (s[2] / s[3]) as f32,
                ];
            }
        }
        if !changed {
            break;
        }
    }
    let labels = if stride == 1 {
        planes.assign(&centroids, &mut best, &mut assigned);
        assigned.iter().map(|&j| j as u8).collect()
    } else {
        // Every point, in cache-sized chunks through reused planes (no image-sized temporaries).
        let mut labels = Vec::with_capacity(points.len());
        let mut chunk_planes = Planes::new(&[]);
        let chunk_len = 4096.min(points.len());
        best.resize(best.len().max(chunk_len), 0.0);
        assigned.resize(assigned.len().max(chunk_len), 0);
        for chunk in points.chunks(chunk_len) {
            chunk_planes.refill(chunk);
            let (best, assigned) = (&mut best[..chunk.len()], &mut assigned[..chunk.len()]);
            chunk_planes.assign(&centroids, best, assigned);
            labels.extend(assigned.iter().map(|&j| j as u8));
        }
        labels
    };
    KMeans {
        centroids,
        labels,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let pts: Vec<[f32; 3]> = (0..500)
            .map(|i| [(i % 17) as f32, (i % 5) as f32 * 40.0, (i / 7) as f32])
            .collect();
        assert_eq!(
            kmeans_pp(&pts, 2, 3, 30, 100),
            kmeans_pp(&pts, 2, 3, 30, 100)
        );
    }

    #[test]
    fn uniform_data_gives_one_cluster() {
        let pts = vec![[5.0, 5.0, 5.0]; 20];
        let km = kmeans_pp(&pts, 2, 0, 10, 100);
        assert_eq!(km.centroids.len(), 1);
        assert!(km.labels.iter().all(|&l| l == 0));
    }

    #[test]
    fn empty_and_single_point() {
        assert!(kmeans_pp(&[], 2, 0, 10, 100).labels.is_empty());
        let km = kmeans_pp(&[[1.0, 2.0, 3.0]], 2, 0, 10, 100);
        assert_eq!(km.centroids, vec![[1.0, 2.0, 3.0]]);
    }
}
