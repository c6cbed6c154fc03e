//! Criterion benches of every CFPG and MBO stage over image sizes 64² … 1024².
//!
//! `cargo bench --bench stages` (all), or e.g. `cargo bench --bench stages -- maxflow` for one group.
//! Inputs are synthetic aerial-like scenes: bright and dark discs on a textured background.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use image::{GrayImage, Luma, Rgb, RgbImage};
use pslg::cfpg::{
    CfpgParams, Connectivity, FloatMap, LabelMap, PixelBox, Roi, distance_markers,
    euclidean_distance_transform, kmeans_pp, label_components, measure_regions, watershed,
};
use pslg::mbo::{Gmm, MaxFlowGraph, MboParams, Trimap};
use std::hint::black_box;
use std::time::Duration;

const SIZES: [u32; 5] = [64, 128, 256, 512, 1024];

fn scene(n: u32) -> RgbImage {
    let r = n as f64 / 5.0;
    RgbImage::from_fn(n, n, |x, y| {
        let (fx, fy) = (x as f64, y as f64);
        let c1 = (fx - n as f64 * 0.45).hypot(fy - n as f64 * 0.5) < r;
        let c2 = (fx - n as f64 * 0.75).hypot(fy - n as f64 * 0.3) < r * 0.6;
        let t = ((x.wrapping_mul(7) ^ y.wrapping_mul(13)) % 23) as u8;
        if c1 {
            Rgb([200 + t, 190 + t, 180])
        } else if c2 {
            Rgb([220, 60 + t, 50])
        } else {
            Rgb([50 + t, 80 + t, 60])
        }
    })
}

/// The pixels of `img` as colour vectors.
fn colours(img: &RgbImage) -> Vec<[f32; 3]> {
    img.pixels()
        .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
        .collect()
}

fn binary(img: &RgbImage) -> GrayImage {
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        Luma([if img.get_pixel(x, y)[0] > 150 { 255 } else { 0 }])
    })
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    g
}

fn cfpg_stages(c: &mut Criterion) {
    let mut g = group(c, "kmeans");
    for n in SIZES {
        let pts = colours(&scene(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &pts, |b, pts| {
            b.iter(|| kmeans_pp(black_box(pts), 2, 0, 50, 4096))
        });
    }
    g.finish();
    let mut g = group(c, "edt");
    for n in SIZES {
        let bin = binary(&scene(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &bin, |b, bin| {
            b.iter(|| euclidean_distance_transform(black_box(bin)))
        });
    }
    g.finish();
    let mut g = group(c, "watershed");
    for n in SIZES {
        let bin = binary(&scene(n));
        let d = euclidean_distance_transform(&bin);
        let markers = distance_markers(&d, 0.5);
        let relief = FloatMap::from_fn(n, n, |x, y| Luma([-d.get_pixel(x, y)[0]]));
        g.bench_with_input(
            BenchmarkId::from_parameter(n),
            &(relief, markers, bin),
            |b, (r, m, bin)| b.iter(|| watershed(r, m, bin)),
        );
    }
    g.finish();
    let mut g = group(c, "labelling");
    for n in SIZES {
        let bin = binary(&scene(n));
        let map = LabelMap::from_fn(n, n, |x, y| Luma([u32::from(bin.get_pixel(x, y)[0] != 0)]));
        g.bench_with_input(BenchmarkId::from_parameter(n), &map, |b, m| {
            b.iter(|| label_components(black_box(m), Connectivity::Four))
        });
    }
    g.finish();
    let mut g = group(c, "hull_convexity");
    for n in SIZES {
        let bin = binary(&scene(n));
        let comps = label_components(
            &LabelMap::from_fn(n, n, |x, y| Luma([u32::from(bin.get_pixel(x, y)[0] != 0)])),
            Connectivity::Four,
        );
        g.bench_with_input(BenchmarkId::from_parameter(n), &comps, |b, c| {
            b.iter(|| measure_regions(black_box(c)))
        });
    }
    g.finish();
    let mut g = group(c, "cfpg");
    let generator = CfpgParams::default()
        .build()
        .expect("default params are valid");
    for n in SIZES {
        let img = scene(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &img, |b, img| {
            b.iter(|| generator.generate(img, PixelBox::new(0, 0, i64::from(n), i64::from(n))))
        });
    }
    g.finish();
}

fn mbo_stages(c: &mut Criterion) {
    let mut g = group(c, "gmm_fit");
    for n in SIZES {
        let pts = colours(&scene(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &pts, |b, pts| {
            b.iter(|| Gmm::fit(black_box(pts), 5, 0))
        });
    }
    g.finish();
    let mut g = group(c, "maxflow");
    for n in SIZES {
        // An 8-connected grid with GrabCut-like weights from the scene.
        let img = scene(n);
        let (w, h) = (n as usize, n as usize);
        let px = colours(&img);
        let build = || {
            let mut gr = MaxFlowGraph::<f32>::with_capacity(w * h, 4 * w * h);
            for (i, p) in px.iter().enumerate() {
                let bright = p[0] > 150.0;
                gr.add_terminal_weights(
                    i,
                    if bright { 6.0 } else { 1.0 },
                    if bright { 1.0 } else { 6.0 },
                );
            }
            for y in 0..h {
                for x in 0..w {
                    for (dx, dy, dist) in [
                        (1isize, 0usize, 1.0f32),
                        (0, 1, 1.0),
                        (1, 1, 1.414),
                        (-1, 1, 1.414),
                    ] {
                        let (nx, ny) = (x as isize + dx, y + dy);
                        if nx >= 0 && (nx as usize) < w && ny < h {
                            let q = ny * w + nx as usize;
                            let d: f32 =
                                (0..3).map(|k| (px[y * w + x][k] - px[q][k]).powi(2)).sum();
                            let wt = 50.0 / dist * (-d / 800.0).exp();
                            gr.add_edge(y * w + x, q, wt, wt);
                        }
                    }
                }
            }
            gr
        };
        g.bench_function(BenchmarkId::new("boykov_kolmogorov", n), |b| {
            b.iter_batched(
                build,
                |mut gr| gr.max_flow(),
                criterion::BatchSize::LargeInput,
            )
        });
        g.bench_function(BenchmarkId::new("ibfs", n), |b| {
            b.iter_batched(
                build,
                |mut gr| gr.max_flow_ibfs(),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
    let mut g = group(c, "mbo");
    let refiner = MboParams::default()
        .build()
        .expect("default params are valid");
    for n in SIZES {
        let img = scene(n);
        let m = n / 8;
        let trimap = Trimap::from_rect(
            n,
            n,
            Roi {
                x: m,
                y: m,
                width: n - 2 * m,
                height: n - 2 * m,
            },
        );
        g.bench_with_input(
            BenchmarkId::from_parameter(n),
            &(img, trimap),
            |b, (img, t)| b.iter(|| refiner.refine(img, t)),
        );
    }
    g.finish();
}

criterion_group!(benches, cfpg_stages, mbo_stages);
criterion_main!(benches);
