//! Times the Boykov–Kolmogorov max-flow on a synthetic segmentation grid.
//!
//! `cargo run --release --example maxflow_grid -- 256` prints the flow and the time for a 256×256 grid.
use pslg::mbo::MaxFlowGraph;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let mut state = 7u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut g = MaxFlowGraph::<f32>::with_capacity(n * n, 4 * n * n);
    for y in 0..n {
        for x in 0..n {
            let inside =
                (x as f32 - n as f32 / 2.0).hypot(y as f32 - n as f32 / 2.0) < n as f32 / 3.0;
            let (a, b) = if inside {
                (8.0 + 4.0 * rnd(), 2.0 * rnd())
            } else {
                (2.0 * rnd(), 8.0 + 4.0 * rnd())
            };
            g.add_terminal_weights(y * n + x, a, b);
            for (dx, dy, d) in [
                (1, 0, 1.0f32),
                (0, 1, 1.0),
                (1, 1, 1.414),
                (usize::MAX, 1, 1.414),
            ] {
                let (nx, ny) = (x.wrapping_add(dx), y + dy);
                if nx < n && ny < n {
                    let w = 50.0 / d * (-3.0 * rnd()).exp();
                    g.add_edge(y * n + x, ny * n + nx, w, w);
                }
            }
        }
    }
    let t = Instant::now();
    let f = g.max_flow();
    println!(
        "{n}x{n}: flow {f:.1} in {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
