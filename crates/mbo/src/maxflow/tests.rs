//! Max-flow solvers against petgraph's Dinic and hand-checked graphs.

use super::*;
use petgraph::algo::dinics;
use petgraph::graph::{DiGraph, NodeIndex};
use proptest::prelude::*;

/// Random network: `n` inner nodes, terminal capacities and arcs with integer capacities.
#[derive(Debug, Clone)]
struct Net {
    n: usize,
    terminals: Vec<(i64, i64)>,
    edges: Vec<(usize, usize, i64, i64)>,
}

fn arb_net() -> impl Strategy<Value = Net> {
    (2usize..24).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec((0i64..20, 0i64..20), n),
            proptest::collection::vec((0..n, 0..n, 0i64..15, 0i64..15), 0..n * 4),
        )
            .prop_map(|(n, terminals, edges)| Net {
                n,
                terminals,
                edges: edges.into_iter().filter(|e| e.0 != e.1).collect(),
            })
    })
}

fn bk_flow(net: &Net) -> (i64, MaxFlowGraph<i64>) {
    let mut g = MaxFlowGraph::new(net.n);
    for (i, &(s, t)) in net.terminals.iter().enumerate() {
        g.add_terminal_weights(i, s, t);
    }
    for &(i, j, c, r) in &net.edges {
        g.add_edge(i, j, c, r);
    }
    (g.max_flow(), g)
}

fn dinics_flow(net: &Net) -> i64 {
    let mut g = DiGraph::<(), u64>::new();
    let s = g.add_node(());
    let t = g.add_node(());
    let v: Vec<NodeIndex> = (0..net.n).map(|_| g.add_node(())).collect();
    for (i, &(cs, ct)) in net.terminals.iter().enumerate() {
        g.add_edge(s, v[i], cs as u64);
        g.add_edge(v[i], t, ct as u64);
    }
    for &(i, j, c, r) in &net.edges {
        g.add_edge(v[i], v[j], c as u64);
        g.add_edge(v[j], v[i], r as u64);
    }
    dinics(&g, s, t).0 as i64
}

/// Capacity of the cut given by `segment`, which must equal the flow (max-flow min-cut theorem).
fn cut_value(net: &Net, g: &MaxFlowGraph<i64>) -> i64 {
    let src = |i: usize| g.segment(i) == Segment::Source;
    let mut c = 0;
    for (i, &(cs, ct)) in net.terminals.iter().enumerate() {
        c += if src(i) { ct } else { cs };
    }
    for &(i, j, cap, rev) in &net.edges {
        if src(i) && !src(j) {
            c += cap;
        }
        if src(j) && !src(i) {
            c += rev;
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn equals_petgraph_dinics(net in arb_net()) {
        let (flow, g) = bk_flow(&net);
        prop_assert_eq!(flow, dinics_flow(&net));
        prop_assert_eq!(cut_value(&net, &g), flow);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]
    #[test]
    fn ibfs_equals_petgraph_dinics(net in arb_net()) {
        let mut g = MaxFlowGraph::new(net.n);
        for (i, &(s, t)) in net.terminals.iter().enumerate() {
            g.add_terminal_weights(i, s, t);
        }
        for &(i, j, c, r) in &net.edges {
            g.add_edge(i, j, c, r);
        }
        let flow = g.max_flow_ibfs();
        prop_assert_eq!(flow, dinics_flow(&net));
        prop_assert_eq!(cut_value(&net, &g), flow);
        // Same minimal source side as Boykov–Kolmogorov.
        let (_, bk) = bk_flow(&net);
        for i in 0..net.n {
            prop_assert_eq!(g.segment(i), bk.segment(i));
        }
    }

    #[test]
    fn ibfs_dynamic_update_gives_the_fresh_minimum_cut(net in arb_net(), new_terminals in proptest::collection::vec((0i64..20, 0i64..20), 24)) {
        let mut g = MaxFlowGraph::new(net.n);
        for (i, &(s, t)) in net.terminals.iter().enumerate() {
            g.add_terminal_weights(i, s, t);
        }
        for &(i, j, c, r) in &net.edges {
            g.add_edge(i, j, c, r);
        }
        g.max_flow_ibfs();
        let mut updated = net.clone();
        for (i, t) in updated.terminals.iter_mut().enumerate() {
            let (cs, ct) = new_terminals[i];
            g.update_terminal_weights(i, cs - t.0, ct - t.1);
            *t = (cs, ct);
        }
        g.max_flow_ibfs();
        prop_assert_eq!(cut_value(&updated, &g), dinics_flow(&updated));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Re-solving after `update_terminal_weights` gives a minimum cut of the updated network: its capacity
    /// equals the max flow of that network computed from scratch.
    #[test]
    fn dynamic_update_gives_the_fresh_minimum_cut(net in arb_net(), new_terminals in proptest::collection::vec((0i64..20, 0i64..20), 24)) {
        let (_, mut g) = bk_flow(&net);
        let mut updated = net.clone();
        for (i, t) in updated.terminals.iter_mut().enumerate() {
            let (cs, ct) = new_terminals[i];
            g.update_terminal_weights(i, cs - t.0, ct - t.1);
            *t = (cs, ct);
        }
        g.max_flow();
        prop_assert_eq!(cut_value(&updated, &g), dinics_flow(&updated));
    }
}

#[test]
fn grid_graph_matches_dinics() {
    // A 30×30 4-connected grid with pseudo-random capacities (larger than the proptest graphs).
    let (w, h) = (30usize, 30usize);
    let mut state = 12345u64;
    let mut rnd = |m: i64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % m as u64) as i64
    };
    let mut net = Net {
        n: w * h,
        terminals: Vec::new(),
        edges: Vec::new(),
    };
    for _ in 0..w * h {
        net.terminals.push((rnd(30), rnd(30)));
    }
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x + 1 < w {
                net.edges.push((i, i + 1, rnd(10), rnd(10)));
            }
            if y + 1 < h {
                net.edges.push((i, i + w, rnd(10), rnd(10)));
            }
        }
    }
    let (flow, g) = bk_flow(&net);
    assert_eq!(flow, dinics_flow(&net));
    assert_eq!(cut_value(&net, &g), flow);
    let mut g2 = MaxFlowGraph::new(net.n);
    for (i, &(s, t)) in net.terminals.iter().enumerate() {
        g2.add_terminal_weights(i, s, t);
    }
    for &(i, j, c, r) in &net.edges {
        g2.add_edge(i, j, c, r);
    }
    assert_eq!(g2.max_flow_ibfs(), flow);
    assert_eq!(cut_value(&net, &g2), flow);
}

#[test]
fn float_capacities_and_empty_graph() {
    let mut g = MaxFlowGraph::<f32>::new(2);
    g.add_terminal_weights(0, 2.5, 0.0);
    g.add_terminal_weights(1, 0.0, 1.5);
    g.add_edge(0, 1, 1.0, 0.0);
    assert_eq!(g.max_flow(), 1.0);
    assert_eq!(MaxFlowGraph::<f64>::new(0).max_flow(), 0.0);
}
