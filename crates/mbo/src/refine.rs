//! The graph of Eqs. (10)–(13) and the iterated cut / EM loop over a [`Trimap`].

use crate::gmm::exp_nonpositive;
use crate::trimap::{Trimap, TrimapLabel};
use crate::{ColourPlanes, Gmm, MaxFlowGraph, MboError, Segment};
use image::{GrayImage, Luma, RgbImage};

/// Parameters of the boundary optimisation; [`MboParams::build`] validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct MboParams {
    /// Gaussian components per mixture (5 in GrabCut and the paper). Valid: 1..=10.
    pub components: usize,
    /// Smoothness weight γ of Eq. (13) (50 as in OpenCV's grabCut). Valid: ≥ 0, finite.
    pub gamma: f64,
    /// Cut / EM rounds at most. Valid: ≥ 1.
    pub max_iterations: usize,
    /// Stop when fewer than this fraction of the free pixels change label in a round. Valid: [0, 1].
    pub tolerance: f64,
    /// Seed of the k-means++ initialisation of the mixtures.
    pub seed: u64,
    /// Pixels per mixture used by the initial fit and by each EM update at most (a regular subsample; 0 = all).
    /// Bounds the cost of a round on large crops: a 5-component, 3-D mixture is well determined by a few thousand samples.
    pub max_em_samples: usize,
    /// Weight of the smoothness edges between free pixels and **fixed background** pixels, relative to the
    /// others (GrabCut: 1). With a tight box prompt the box frame is not an image edge — the object touches
    /// it — and these edges pull the pixels along the frame to background (GrabCut's shrinking bias on small
    /// boxes); a weight below 1 weakens that pull. Valid: [0, 1].
    pub fixed_background_link: f64,
    /// Stop the rounds early once fewer than this fraction of the initially (probably) foreground pixels are
    /// still foreground after a round (0 = never). For callers that discard collapsed masks — the box path
    /// returns the box when too little of it survives — set below their own threshold, it spares the rounds
    /// of a mask that will be thrown away; [`Refinement::abandoned`] tells. Valid: [0, 1].
    pub abandon_below: f64,
    /// Smoothness edges to the 8 neighbours of each pixel (GrabCut, Eq. 13; diagonal weights divided by √2)
    /// or only to the 4 horizontal and vertical ones, which halves the graph's edges: the cut then costs
    /// about 0.7× the time, and a larger γ gives the same smoothness (the box path uses 4 with γ 30,
    /// `docs/quality.md`).
    pub eight_connected: bool,
}

impl Default for MboParams {
    fn default() -> Self {
        Self {
            components: 5,
            gamma: 50.0,
            max_iterations: 5,
            tolerance: 0.001,
            seed: 0,
            max_em_samples: 2048,
            fixed_background_link: 1.0,
            abandon_below: 0.0,
            eight_connected: true,
        }
    }
}

impl MboParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`MboError::InvalidParam`] naming the field.
    pub fn build(self) -> Result<MaskRefiner, MboError> {
        let bad = |name: &'static str, value: String, valid: &'static str| {
            Err(MboError::InvalidParam { name, value, valid })
        };
        if !(1..=10).contains(&self.components) {
            return bad("components", self.components.to_string(), "1..=10");
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return bad("gamma", self.gamma.to_string(), "finite, >= 0");
        }
        if self.max_iterations == 0 {
            return bad("max_iterations", "0".into(), ">= 1");
        }
        if !(0.0..=1.0).contains(&self.fixed_background_link) {
            return bad(
                "fixed_background_link",
                self.fixed_background_link.to_string(),
                "[0, 1]",
            );
        }
        if !(0.0..=1.0).contains(&self.tolerance) {
            return bad("tolerance", self.tolerance.to_string(), "[0, 1]");
        }
        if !(0.0..=1.0).contains(&self.abandon_below) {
            return bad("abandon_below", self.abandon_below.to_string(), "[0, 1]");
        }
        Ok(MaskRefiner { params: self })
    }
}

/// Why the refiner returned the initial labelling unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Skipped {
    /// No pixel is free to change.
    NoFreePixels,
    /// No pixel is (probably) foreground: nothing to model.
    NoForeground,
    /// No pixel is (probably) background: nothing to model.
    NoBackground,
}

/// Result of [`MaskRefiner::refine`].
#[derive(Debug, Clone, PartialEq)]
pub struct Refinement {
    /// The refined mask, 0/255, the trimap's size.
    pub mask: GrayImage,
    /// Rounds run (0 when skipped).
    pub iterations: usize,
    /// Whether the labelling converged below the tolerance before `max_iterations`.
    pub converged: bool,
    /// Free pixels that changed label in each round.
    pub changes: Vec<usize>,
    /// Graph nodes (free pixels).
    pub free_pixels: usize,
    /// Set when the input could not be refined and the initial labelling is returned.
    pub skipped: Option<Skipped>,
    /// Whether the rounds stopped because the foreground fell below [`MboParams::abandon_below`].
    pub abandoned: bool,
}

/// GrabCut-style mask boundary optimisation (§3.3). Build it with [`MboParams::build`].
#[derive(Debug, Clone, PartialEq)]
pub struct MaskRefiner {
    params: MboParams,
}

/// Eq. (13)'s contrast constant `β = 1 / (2 · mean ‖c_p − c_q‖²)` over all 8-neighbour pairs of the image
/// (each pair once); 0 for a flat image.
pub fn contrast_beta(colours: &[[f32; 3]], width: usize, height: usize) -> f64 {
    if width == 0 || colours.len() < width * height {
        return 0.0;
    }
    // Row-wise so that the neighbour bounds are loop bounds, not per-pixel tests; exact integer-valued
    // sums for 8-bit colours (every squared difference is an integer below 2^18, each row sum exact in f64).
    let row_sum = |a: &[[f32; 3]], b: &[[f32; 3]]| -> f64 {
        a.iter().zip(b).map(|(p, q)| f64::from(dist2(p, q))).sum()
    };
    let mut sum = 0.0f64;
    let mut count = 0u64;
    for y in 0..height {
        let row = &colours[y * width..(y + 1) * width];
        sum += row_sum(&row[..width - 1], &row[1..]); // right
        count += width as u64 - 1;
        if y + 1 < height {
            let next = &colours[(y + 1) * width..(y + 2) * width];
            sum += row_sum(row, next); // down
            sum += row_sum(&row[1..], &next[..width - 1]); // down-left
            sum += row_sum(&row[..width - 1], &next[1..]); // down-right
            count += 3 * width as u64 - 2;
        }
    }
    if sum <= 0.0 {
        0.0
    } else {
        1.0 / (2.0 * sum / count as f64)
    }
}

/// Forward half of the 8-neighbourhood: right, down, down-left, down-right (each pair visited once); the first
/// two are the forward half of the 4-neighbourhood.
const NEIGHBOURS: [(isize, isize); 4] = [(1, 0), (0, 1), (-1, 1), (1, 1)];

fn dist2(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

impl MaskRefiner {
    /// The validated parameters.
    pub fn params(&self) -> &MboParams {
        &self.params
    }

    /// Refines the labelling of `trimap` on `image` (§3.3):
    ///
    /// 1. fit the foreground and background mixtures on the initially (probably) foreground / background
    ///    pixels (k-means++ initialisation, Eqs. 10–11; at most `max_em_samples` of each, at a regular stride);
    /// 2. build the graph over the free pixels: terminal capacities `−ln P_B(x_p)` (source, foreground side) and
    ///    `−ln P_F(x_p)` (sink) — Eq. (12); 8-neighbour smoothness `γ / dist(p, q) · exp(−β ‖c_p − c_q‖²)` —
    ///    Eq. (13);
    /// 3. cut it with [`MaxFlowGraph::max_flow_ibfs`]: source side = foreground;
    /// 4. update both mixtures by one EM step on the new labelling; repeat 2–4 until fewer than
    ///    `tolerance · free pixels` labels change or `max_iterations` rounds ran.
    ///
    /// **Only free pixels are graph nodes.** A fixed pixel can never change side (GrabCut links it to its
    /// terminal with weight 9γ, more than the sum of its smoothness edges, ≤ (4 + 2√2)·γ), so its smoothness
    /// edge to a free neighbour is folded into that neighbour's terminal capacity. The cut is identical to the
    /// one on the whole image; the cost is proportional to the free band, not to the image. Fixed pixels
    /// still feed the mixtures.
    ///
    /// # Errors
    /// [`MboError::SizeMismatch`] when the image and the trimap differ in size.
    pub fn refine(&self, image: &RgbImage, trimap: &Trimap) -> Result<Refinement, MboError> {
        if image.dimensions() != (trimap.width, trimap.height) {
            return Err(MboError::SizeMismatch {
                image: image.dimensions(),
                trimap: (trimap.width, trimap.height),
            });
        }
        let (w, h) = (trimap.width as usize, trimap.height as usize);
        let colours: Vec<[f32; 3]> = image
            .pixels()
            .map(|p| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])])
            .collect();
        let mut fg: Vec<bool> = trimap.labels.iter().map(|l| l.is_foreground()).collect();
        let free: Vec<usize> = (0..w * h)
            .filter(|&i| !trimap.labels[i].is_hard())
            .collect();
        let skipped = |why| Refinement {
            mask: trimap.initial_mask(),
            iterations: 0,
            converged: false,
            changes: Vec::new(),
            free_pixels: free.len(),
            skipped: Some(why),
            abandoned: false,
        };
        if free.is_empty() {
            return Ok(skipped(Skipped::NoFreePixels));
        }
        let split = |fg: &[bool]| {
            let (mut f, mut b) = (Vec::new(), Vec::new());
            for (c, &is_fg) in colours.iter().zip(fg) {
                if is_fg { f.push(*c) } else { b.push(*c) }
            }
            (f, b)
        };
        let cap = self.params.max_em_samples;
        let subsample = |v: Vec<[f32; 3]>| -> Vec<[f32; 3]> {
            if cap == 0 || v.len() <= cap {
                v
            } else {
                v.iter().step_by(v.len().div_ceil(cap)).copied().collect()
            }
        };
        let (f, b) = split(&fg);
        let (f, b) = (subsample(f), subsample(b));
        let Some(mut fg_gmm) = Gmm::fit(&f, self.params.components, self.params.seed) else {
            return Ok(skipped(Skipped::NoForeground));
        };
        let Some(mut bg_gmm) = Gmm::fit(&b, self.params.components, self.params.seed) else {
            return Ok(skipped(Skipped::NoBackground));
        };

        // Smoothness weights do not change between rounds: compute them once.
        let beta = contrast_beta(&colours, w, h);
        let gamma = self.params.gamma;
        let link_bg = self.params.fixed_background_link as f32;
        let mut node_of = vec![u32::MAX; w * h];
        for (k, &i) in free.iter().enumerate() {
            node_of[i] = k as u32;
        }
        let mut changes = Vec::new();
        let mut converged = false;
        let mut abandoned = false;
        let initial_foreground = fg.iter().filter(|&&f| f).count();
        // One graph for all rounds: the smoothness edges never change, and each round only moves the data
        // terms, so the flow of the previous round is kept and only the difference is pushed
        // (`update_terminal_weights`, Kohli & Torr's dynamic graph cuts). The cut is the same as on a fresh
        // graph; later rounds cost a fraction of the first.
        let mut g = MaxFlowGraph::<f32>::with_capacity(free.len(), free.len() * 4);
        let neg_beta = -beta as f32;
        let gamma_diag = (gamma / std::f64::consts::SQRT_2) as f32;
        let gamma = gamma as f32;
        let nb = if self.params.eight_connected { 4 } else { 2 };
        // Every neighbour pair touching a free pixel, once; edges to fixed pixels folded as they come.
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                for &(dx, dy) in &NEIGHBOURS[..nb] {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    if nx < 0 || nx >= w as isize || ny >= h as isize {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    let (np, nq) = (node_of[p], node_of[q]);
                    if np == u32::MAX && nq == u32::MAX {
                        continue;
                    }
                    let g_pq = if dx != 0 && dy != 0 {
                        gamma_diag
                    } else {
                        gamma
                    };
                    let wgt = g_pq * exp_nonpositive(neg_beta * dist2(&colours[p], &colours[q]));
                    match (np, nq) {
                        (np, u32::MAX) => {
                            fold_fixed(&mut g, np as usize, trimap.labels[q], wgt, link_bg)
                        }
                        (u32::MAX, nq) => {
                            fold_fixed(&mut g, nq as usize, trimap.labels[p], wgt, link_bg)
                        }
                        (np, nq) => g.add_edge(np as usize, nq as usize, wgt, wgt),
                    }
                }
            }
        }
        let mut data = vec![(0.0f32, 0.0f32); free.len()];
        let free_colours = ColourPlanes::new(free.iter().map(|&i| colours[i]));
        let (mut nll_bg, mut nll_fg) = (Vec::new(), Vec::new());
        for _ in 0..self.params.max_iterations {
            bg_gmm.neg_log_likelihoods(&free_colours, &mut nll_bg);
            fg_gmm.neg_log_likelihoods(&free_colours, &mut nll_fg);
            for (k, (d, new)) in data.iter_mut().zip(nll_bg.iter().zip(&nll_fg)).enumerate() {
                g.update_terminal_weights(k, new.0 - d.0, new.1 - d.1);
                *d = (*new.0, *new.1);
            }
            g.max_flow();
            let mut changed = 0;
            for (k, &i) in free.iter().enumerate() {
                let now = g.segment(k) == Segment::Source;
                changed += usize::from(now != fg[i]);
                fg[i] = now;
            }
            changes.push(changed);
            if (changed as f64) < self.params.tolerance * free.len() as f64 || changed == 0 {
                converged = true;
                break;
            }
            let foreground = fg.iter().filter(|&&f| f).count();
            if (foreground as f64) < self.params.abandon_below * initial_foreground as f64 {
                abandoned = true;
                break;
            }
            let (f, b) = split(&fg);
            // A side emptied by the cut keeps its previous mixture.
            if let Some(m) = fg_gmm.em_step(&subsample(f)) {
                fg_gmm = m;
            }
            if let Some(m) = bg_gmm.em_step(&subsample(b)) {
                bg_gmm = m;
            }
        }
        let data = fg.iter().map(|&f| if f { 255 } else { 0 }).collect();
        Ok(Refinement {
            mask: GrayImage::from_raw(trimap.width, trimap.height, data)
                .unwrap_or_else(|| GrayImage::from_pixel(trimap.width, trimap.height, Luma([0]))),
            iterations: changes.len(),
            converged,
            changes,
            free_pixels: free.len(),
            skipped: None,
            abandoned,
        })
    }
}

/// Folds the smoothness edge between free node `n` and a fixed neighbour into `n`'s terminal capacity:
/// the edge is cut exactly when `n` takes the label opposite to the neighbour's.
fn fold_fixed(
    g: &mut MaxFlowGraph<f32>,
    n: usize,
    fixed: TrimapLabel,
    w: f32,
    background_link: f32,
) {
    if fixed == TrimapLabel::Foreground {
        g.add_terminal_weights(n, w, 0.0); // cut when n is background
    } else {
        g.add_terminal_weights(n, 0.0, w * background_link); // cut when n is foreground
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use pslg_core::Roi;

    fn refiner() -> MaskRefiner {
        MboParams::default().build().unwrap()
    }

    /// A textured disc on a textured background, with a box around it.
    fn disc_scene() -> (RgbImage, GrayImage) {
        let img = RgbImage::from_fn(64, 64, |x, y| {
            let d = (x as f64 - 32.0).powi(2) + (y as f64 - 30.0).powi(2);
            let n = ((x * 7 + y * 13) % 11) as u8;
            if d < 15.0f64.powi(2) {
                Rgb([200 + n, 60 + n, 50])
            } else {
                Rgb([40, 90 + n, 40 + n])
            }
        });
        let gt = GrayImage::from_fn(64, 64, |x, y| {
            let d = (x as f64 - 32.0).powi(2) + (y as f64 - 30.0).powi(2);
            Luma([if d < 15.0f64.powi(2) { 255 } else { 0 }])
        });
        (img, gt)
    }

    /// Rect initialisation with a loose box around the disc of [`disc_scene`].
    fn disc_box_trimap() -> Trimap {
        Trimap::from_rect(
            64,
            64,
            Roi {
                x: 15,
                y: 13,
                width: 34,
                height: 34,
            },
        )
    }

    fn iou(a: &GrayImage, b: &GrayImage) -> f64 {
        let (mut i, mut u) = (0, 0);
        for (p, q) in a.pixels().zip(b.pixels()) {
            i += u32::from(p[0] != 0 && q[0] != 0);
            u += u32::from(p[0] != 0 || q[0] != 0);
        }
        f64::from(i) / f64::from(u.max(1))
    }

    #[test]
    fn contrast_beta_matches_the_definition() {
        // β = 1 / (2 · mean over all 8-neighbour pairs of ‖c_p − c_q‖²), each unordered pair once.
        for (w, h) in [(1usize, 1usize), (1, 5), (6, 1), (7, 4)] {
            let colours: Vec<[f32; 3]> = (0..w * h)
                .map(|i| [(i * 37 % 256) as f32, (i * 11 % 200) as f32, (i % 3) as f32])
                .collect();
            let (mut sum, mut n) = (0.0f64, 0u64);
            for p in 0..w * h {
                for q in p + 1..w * h {
                    let (dx, dy) = ((p % w).abs_diff(q % w), (p / w).abs_diff(q / w));
                    if dx <= 1 && dy <= 1 {
                        sum += f64::from(dist2(&colours[p], &colours[q]));
                        n += 1;
                    }
                }
            }
            let expected = if sum > 0.0 {
                n as f64 / (2.0 * sum)
            } else {
                0.0
            };
            let got = contrast_beta(&colours, w, h);
            assert!(
                (got - expected).abs() <= 1e-12 * expected.abs(),
                "{w}x{h}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn rect_init_recovers_a_disc() {
        let (img, gt) = disc_scene();
        let trimap = disc_box_trimap();
        let box_iou = iou(&trimap.initial_mask(), &gt);
        let r = refiner().refine(&img, &trimap).unwrap();
        let refined = iou(&r.mask, &gt);
        assert!(
            refined > 0.95 && refined > box_iou + 0.1,
            "box {box_iou:.3} → refined {refined:.3}"
        );
        assert!(r.converged);
    }

    #[test]
    fn four_connected_smoothness_recovers_the_disc_too() {
        let (img, gt) = disc_scene();
        let params = MboParams {
            eight_connected: false,
            gamma: 30.0,
            ..Default::default()
        };
        let r = params
            .build()
            .unwrap()
            .refine(&img, &disc_box_trimap())
            .unwrap();
        assert!(iou(&r.mask, &gt) > 0.95, "IoU {}", iou(&r.mask, &gt));
    }

    #[test]
    fn mask_init_repairs_a_shifted_mask() {
        let (img, gt) = disc_scene();
        let shifted = GrayImage::from_fn(64, 64, |x, y| {
            *gt.get_pixel_checked(x.saturating_sub(3), y)
                .unwrap_or(&Luma([0]))
        });
        let trimap = Trimap::from_mask(&shifted, 3, 6, false);
        let r = refiner().refine(&img, &trimap).unwrap();
        assert!(iou(&r.mask, &gt) > iou(&shifted, &gt) + 0.05);
    }

    #[test]
    fn degenerate_inputs_are_returned_unchanged() {
        let img = RgbImage::from_pixel(5, 4, Rgb([9, 9, 9]));
        for label in [TrimapLabel::Background, TrimapLabel::Foreground] {
            let r = refiner()
                .refine(&img, &Trimap::filled(5, 4, label))
                .unwrap();
            assert_eq!(r.skipped, Some(Skipped::NoFreePixels));
        }
        let r = refiner()
            .refine(&img, &Trimap::filled(5, 4, TrimapLabel::ProbablyForeground))
            .unwrap();
        assert_eq!(r.skipped, Some(Skipped::NoBackground));
        let r = refiner()
            .refine(&img, &Trimap::filled(5, 4, TrimapLabel::ProbablyBackground))
            .unwrap();
        assert_eq!(r.skipped, Some(Skipped::NoForeground));
        let one = RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]));
        assert!(
            refiner()
                .refine(
                    &one,
                    &Trimap::from_rect(
                        1,
                        1,
                        Roi {
                            x: 0,
                            y: 0,
                            width: 1,
                            height: 1
                        }
                    )
                )
                .is_ok()
        );
        let err = refiner().refine(&one, &Trimap::filled(2, 1, TrimapLabel::Background));
        assert!(matches!(err, Err(MboError::SizeMismatch { .. })));
        // Uniform colour inside and outside a rect: must not panic, must return a mask of the right size.
        let flat = RgbImage::from_pixel(12, 7, Rgb([50, 50, 50]));
        let r = refiner()
            .refine(
                &flat,
                &Trimap::from_rect(
                    12,
                    7,
                    Roi {
                        x: 2,
                        y: 2,
                        width: 5,
                        height: 3,
                    },
                ),
            )
            .unwrap();
        assert_eq!(r.mask.dimensions(), (12, 7));
    }

    #[test]
    fn hard_foreground_disk_is_kept() {
        let (img, _) = disc_scene();
        let mut trimap = disc_box_trimap();
        trimap.set_foreground_disk(20.5, 20.5, 2.0); // a background corner of the box, forced to foreground
        let r = refiner().refine(&img, &trimap).unwrap();
        assert_eq!(r.mask.get_pixel(20, 20)[0], 255);
        assert_eq!(r.mask.get_pixel(0, 0)[0], 0);
    }

    #[test]
    fn invalid_params_are_rejected() {
        for p in [
            MboParams {
                components: 0,
                ..Default::default()
            },
            MboParams {
                gamma: f64::NAN,
                ..Default::default()
            },
            MboParams {
                max_iterations: 0,
                ..Default::default()
            },
            MboParams {
                tolerance: 2.0,
                ..Default::default()
            },
            MboParams {
                abandon_below: -0.1,
                ..Default::default()
            },
        ] {
            assert!(matches!(p.build(), Err(MboError::InvalidParam { .. })));
        }
    }

    #[test]
    fn collapsing_foreground_is_abandoned_only_when_asked() {
        // A box around plain background texture: the cut drops almost all of it in the first round.
        let img = RgbImage::from_fn(40, 40, |x, y| {
            let n = ((x * 7 + y * 13) % 11) as u8;
            Rgb([90 + n, 120 + n, 60])
        });
        let trimap = Trimap::from_rect(
            40,
            40,
            Roi {
                x: 10,
                y: 10,
                width: 20,
                height: 20,
            },
        );
        let run = |abandon_below| {
            MboParams {
                abandon_below,
                max_iterations: 5,
                tolerance: 0.0,
                ..Default::default()
            }
            .build()
            .unwrap()
            .refine(&img, &trimap)
            .unwrap()
        };
        let kept = |r: &Refinement| r.mask.pixels().filter(|p| p[0] != 0).count();
        let full = run(0.0);
        assert!(!full.abandoned);
        assert!(
            kept(&full) < 400 / 2,
            "the box should mostly collapse, kept {}",
            kept(&full)
        );
        let early = run(0.9);
        assert!(early.abandoned);
        assert_eq!(early.iterations, 1);
        assert!(early.iterations <= full.iterations);
    }
}
