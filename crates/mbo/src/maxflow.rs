//! Boykov–Kolmogorov maximum flow / minimum s–t cut, for the grid graphs of graph-cut segmentation.
//!
//! Implements the algorithm of Y. Boykov and V. Kolmogorov, "An Experimental Comparison of Min-Cut/Max-Flow
//! Algorithms for Energy Minimization in Vision", IEEE TPAMI 26(9), 2004. No maintained Rust crate implements
//! it; general-purpose algorithms (Dinic, push–relabel) are several times slower on the short-path,
//! terminal-heavy graphs of image segmentation.
//!
//! Two search trees grow from the source `S` and the sink `T` over non-saturated residual arcs:
//! 1. **growth** — active nodes acquire free neighbours until the trees touch, which gives an `S → T` path;
//! 2. **augmentation** — the path's bottleneck is pushed; nodes whose tree arc saturates become orphans;
//! 3. **adoption** — each orphan looks for a new parent in its own tree whose path leads to the root
//!    (preferring the shortest, with the time-stamp/distance heuristic of the paper), or becomes free.
//!
//! Terminal arcs are stored as one signed residual per node (`> 0`: residual from `S`, `< 0`: residual to `T`),
//! after pushing `min(c_s, c_t)` directly, as in the paper's reference implementation.
//!
//! The same graph can also be solved by **IBFS** ([`MaxFlowGraph::max_flow_ibfs`], Goldberg, Hed, Kaplan,
//! Tarjan and Werneck, ESA 2011), which keeps the two trees breadth-first. On GrabCut graphs (γ = 50, weak
//! first-round data terms) Boykov–Kolmogorov's paths average ~60 arcs and each orphan's origin check walks
//! ~20 parents; IBFS's paths average ~11 arcs and an orphan looks only at its neighbours. MBO uses IBFS. Both
//! are property-tested against petgraph's Dinic, and give the same (smallest) source side.

use std::collections::VecDeque;

/// Numeric type of capacities and flows: integers (exact) or floats.
pub trait Capacity:
    Copy + PartialOrd + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::fmt::Debug
{
    /// The additive identity.
    const ZERO: Self;
}
macro_rules! impl_capacity {
    ($($t:ty => $z:expr),*) => { $(impl Capacity for $t { const ZERO: Self = $z; })* };
}
impl_capacity!(i32 => 0, i64 => 0, f32 => 0.0, f64 => 0.0);

fn min<T: Capacity>(a: T, b: T) -> T {
    if b < a { b } else { a }
}
fn neg<T: Capacity>(a: T) -> T {
    T::ZERO - a
}

const NONE: u32 = u32::MAX; // free node: no parent
const TERMINAL: u32 = u32::MAX - 1; // parent is the terminal of its tree
const ORPHAN: u32 = u32::MAX - 2; // lost its parent arc during augmentation
const INFINITE_DIST: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node<T> {
    first: u32,
    /// Arc from this node to its parent, or `NONE` / `TERMINAL` / `ORPHAN`.
    parent: u32,
    /// The parent node itself (head of `parent`), kept so that walks up a tree chase one load per step.
    parent_node: u32,
    tr_cap: T,
    in_sink_tree: bool,
    timestamp: u32,
    dist: u32,
    active: bool,
    /// IBFS distance label: `> 0` source tree (distance from the source), `< 0` sink tree, `0` free.
    label: i32,
}

#[derive(Debug, Clone)]
struct Arc<T> {
    head: u32,
    next: u32,
    r_cap: T,
}

/// Which side of the minimum cut a node lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Reachable from the source in the final residual graph.
    Source,
    /// Not reachable from the source (it can reach the sink, or is cut off from both).
    Sink,
}

/// A flow network with terminal capacities, solved by the Boykov–Kolmogorov algorithm.
///
/// # Examples
/// Textbook network (CLRS 3rd ed., Fig. 26.1): maximum flow 23.
/// ```
/// use pslg_mbo::{MaxFlowGraph, Segment};
/// let mut g = MaxFlowGraph::<i64>::new(4);
/// // s → v1 16, s → v2 13 become terminal capacities; v3 → t 20, v4 → t 4 too.
/// let (v1, v2, v3, v4) = (0, 1, 2, 3);
/// g.add_terminal_weights(v1, 16, 0);
/// g.add_terminal_weights(v2, 13, 0);
/// g.add_terminal_weights(v3, 0, 20);
/// g.add_terminal_weights(v4, 0, 4);
/// g.add_edge(v1, v3, 12, 0);
/// g.add_edge(v2, v1, 4, 0);
/// g.add_edge(v2, v4, 14, 0);
/// g.add_edge(v3, v2, 9, 0);
/// g.add_edge(v4, v3, 7, 0);
/// assert_eq!(g.max_flow(), 23);
/// assert_eq!(g.segment(v1), Segment::Source);
/// assert_eq!(g.segment(v3), Segment::Sink);
/// ```
#[derive(Debug, Clone)]
pub struct MaxFlowGraph<T: Capacity> {
    nodes: Vec<Node<T>>,
    arcs: Vec<Arc<T>>,
    flow: T,
    solved: bool,
    /// Scratch buffer for tree walks (augmenting paths, origin checks); kept to avoid reallocation.
    path: Vec<u32>,
    /// Scratch list of the nodes an augmentation saturated.
    saturated: Vec<(u32, bool)>,
}

/// Orphans of one IBFS tree, bucketed by level.
#[derive(Debug, Default)]
struct OrphanBuckets {
    levels: Vec<Vec<u32>>,
    /// Lowest non-empty level (or `usize::MAX`).
    min: usize,
    /// Highest level pushed to since the last sweep.
    max: usize,
}

impl OrphanBuckets {
    fn push(&mut self, level: usize, node: u32) {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(node);
        self.min = self.min.min(level);
        self.max = self.max.max(level);
    }
}

/// Working state of one IBFS run.
#[derive(Debug)]
struct IbfsState {
    /// Nodes at the next level of each tree, to scan in its next pass.
    next_s: Vec<u32>,
    next_t: Vec<u32>,
    /// Level being built by each tree's current/next pass.
    top_s: i32,
    top_t: i32,
    orphans_s: OrphanBuckets,
    orphans_t: OrphanBuckets,
}

impl Default for IbfsState {
    fn default() -> Self {
        Self {
            next_s: Vec::new(),
            next_t: Vec::new(),
            top_s: 1,
            top_t: 1,
            orphans_s: OrphanBuckets {
                levels: Vec::new(),
                min: usize::MAX,
                max: 0,
            },
            orphans_t: OrphanBuckets {
                levels: Vec::new(),
                min: usize::MAX,
                max: 0,
            },
        }
    }
}

impl IbfsState {
    fn orphans(&mut self, source: bool) -> &mut OrphanBuckets {
        if source {
            &mut self.orphans_s
        } else {
            &mut self.orphans_t
        }
    }
}

impl<T: Capacity> MaxFlowGraph<T> {
    /// A graph of `n` nodes (indices `0..n`), no arcs, no terminal capacities.
    pub fn new(n: usize) -> Self {
        Self::with_capacity(n, 0)
    }

    /// Like [`MaxFlowGraph::new`], reserving room for `edges` calls to [`MaxFlowGraph::add_edge`].
    pub fn with_capacity(n: usize, edges: usize) -> Self {
        let node = Node {
            first: NONE,
            parent: NONE,
            parent_node: NONE,
            tr_cap: T::ZERO,
            in_sink_tree: false,
            timestamp: 0,
            dist: 0,
            active: false,
            label: 0,
        };
        Self {
            nodes: vec![node; n],
            arcs: Vec::with_capacity(2 * edges),
            flow: T::ZERO,
            solved: false,
            path: Vec::new(),
            saturated: Vec::new(),
        }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds capacity `source_cap` on `S → i` and `sink_cap` on `i → T` (both ≥ 0). May be called repeatedly.
    ///
    /// # Panics
    /// When `i` is not a node index (a programming error, not input-dependent).
    pub fn add_terminal_weights(&mut self, i: usize, source_cap: T, sink_cap: T) {
        let n = &mut self.nodes[i];
        let (cs, ct) = if n.tr_cap > T::ZERO {
            (n.tr_cap + source_cap, sink_cap)
        } else {
            (source_cap, neg(n.tr_cap) + sink_cap)
        };
        // Push min(cs, ct) through S → i → T directly; keep the signed remainder.
        let m = min(cs, ct);
        self.flow = self.flow + m;
        n.tr_cap = cs - ct;
        self.solved = false;
    }

    /// Changes the terminal capacities of node `i` by `delta_source` and `delta_sink` (either may be
    /// negative) **keeping the flow found so far**, so that the next [`MaxFlowGraph::max_flow`] only pushes the
    /// difference — the "dynamic graph cuts" of P. Kohli and P. Torr (ICCV 2005). The residual of a node's two
    /// terminal arcs is stored as one signed value, which absorbs the constant Kohli and Torr add to both arcs
    /// to keep them non-negative; the minimum cut is exact, and the value [`MaxFlowGraph::max_flow`] returns
    /// afterwards equals the new maximum flow up to a constant (it is exact again only for non-negative
    /// increments).
    ///
    /// # Panics
    /// When `i` is not a node index.
    pub fn update_terminal_weights(&mut self, i: usize, delta_source: T, delta_sink: T) {
        let n = &mut self.nodes[i];
        n.tr_cap = n.tr_cap + delta_source - delta_sink;
        self.solved = false;
    }

    /// Adds the arc `i → j` with capacity `cap` and the arc `j → i` with capacity `rev_cap` (both ≥ 0).
    ///
    /// # Panics
    /// When `i` or `j` is not a node index, or `i == j`.
    pub fn add_edge(&mut self, i: usize, j: usize, cap: T, rev_cap: T) {
        assert!(
            i != j && i < self.nodes.len() && j < self.nodes.len(),
            "bad edge {i} -> {j}"
        );
        let a = self.arcs.len() as u32;
        self.arcs.push(Arc {
            head: j as u32,
            next: self.nodes[i].first,
            r_cap: cap,
        });
        self.nodes[i].first = a;
        self.arcs.push(Arc {
            head: i as u32,
            next: self.nodes[j].first,
            r_cap: rev_cap,
        });
        self.nodes[j].first = a + 1;
        self.solved = false;
    }

    /// Computes and returns the maximum flow value (including flow pushed directly by terminal weights).
    ///
    /// # Complexity
    /// `O(m n² |C|)` in the worst case (`|C|` the cut value), near-linear in practice on image grids.
    pub fn max_flow(&mut self) -> T {
        if self.solved {
            return self.flow;
        }
        let mut queue: VecDeque<u32> = VecDeque::new();
        let mut orphans: VecDeque<u32> = VecDeque::new();
        let mut time = 0u32;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.parent = NONE;
            n.active = false;
            n.timestamp = 0;
            n.dist = 0;
            if n.tr_cap != T::ZERO {
                n.in_sink_tree = n.tr_cap < T::ZERO;
                n.parent = TERMINAL;
                n.dist = 1;
                n.active = true;
                queue.push_back(i as u32);
            }
        }
        let mut current: Option<u32> = None;
        loop {
            // Pick an active node that is still in a tree.
            let i = match current
                .take()
                .filter(|&c| self.nodes[c as usize].parent != NONE)
            {
                Some(c) => c,
                None => loop {
                    match queue.pop_front() {
                        None => break NONE,
                        Some(c) => {
                            self.nodes[c as usize].active = false;
                            if self.nodes[c as usize].parent != NONE {
                                break c;
                            }
                        }
                    }
                },
            };
            if i == NONE {
                break;
            }
            // Growth.
            let mut meeting: Option<u32> = None; // arc from the source side to the sink side
            let iu = i as usize;
            let in_sink = self.nodes[iu].in_sink_tree;
            let mut a = self.nodes[iu].first;
            while a != NONE {
                let arc = &self.arcs[a as usize];
                let (j, next) = (arc.head as usize, arc.next);
                let residual = if in_sink {
                    self.arcs[(a ^ 1) as usize].r_cap
                } else {
                    arc.r_cap
                };
                if residual > T::ZERO {
                    let (ts, dist) = (self.nodes[iu].timestamp, self.nodes[iu].dist);
                    let nj = &mut self.nodes[j];
                    if nj.parent == NONE {
                        nj.in_sink_tree = in_sink;
                        nj.parent = a ^ 1;
                        nj.parent_node = i;
                        nj.timestamp = ts;
                        nj.dist = dist.saturating_add(1);
                        if !nj.active {
                            nj.active = true;
                            queue.push_back(j as u32);
                        }
                    } else if nj.in_sink_tree != in_sink {
                        meeting = Some(if in_sink { a ^ 1 } else { a });
                        break;
                    } else if nj.timestamp <= ts && nj.dist > dist {
                        // Heuristic: re-hang j under i, which is closer to the terminal.
                        nj.parent = a ^ 1;
                        nj.parent_node = i;
                        nj.timestamp = ts;
                        nj.dist = dist.saturating_add(1);
                    }
                }
                a = next;
            }
            let Some(mid) = meeting else { continue };
            time = time.wrapping_add(1);
            current = Some(i);
            self.augment(mid, &mut orphans);
            self.adopt(&mut orphans, &mut queue, time);
        }
        self.solved = true;
        self.flow
    }

    /// The node at the tail of arc `a`.
    fn tail(&self, a: u32) -> usize {
        self.arcs[(a ^ 1) as usize].head as usize
    }

    fn augment(&mut self, mid: u32, orphans: &mut VecDeque<u32>) {
        let mut saturated = std::mem::take(&mut self.saturated);
        self.push_along(mid, &mut saturated);
        for &(i, _) in &saturated {
            orphans.push_front(i);
        }
        self.saturated = saturated;
    }

    /// Pushes the bottleneck along the path `source tree → mid → sink tree` and lists, in path order, the
    /// nodes whose tree arc (or terminal arc) it saturated, with whether they are on the source side; those
    /// nodes are marked `ORPHAN`. One walk up each tree records the path and its bottleneck; the push then
    /// reads the recorded nodes (independent loads) instead of chasing parents a second time.
    fn push_along(&mut self, mid: u32, saturated: &mut Vec<(u32, bool)>) {
        saturated.clear();
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut b = self.arcs[mid as usize].r_cap;
        let mut i = self.tail(mid);
        loop {
            let n = &self.nodes[i];
            path.push(i as u32);
            if n.parent == TERMINAL {
                b = min(b, n.tr_cap);
                break;
            }
            b = min(b, self.arcs[(n.parent ^ 1) as usize].r_cap);
            i = n.parent_node as usize;
        }
        let source_len = path.len();
        let mut i = self.arcs[mid as usize].head as usize;
        loop {
            let n = &self.nodes[i];
            path.push(i as u32);
            if n.parent == TERMINAL {
                b = min(b, neg(n.tr_cap));
                break;
            }
            b = min(b, self.arcs[n.parent as usize].r_cap);
            i = n.parent_node as usize;
        }
        self.arcs[mid as usize].r_cap = self.arcs[mid as usize].r_cap - b;
        self.arcs[(mid ^ 1) as usize].r_cap = self.arcs[(mid ^ 1) as usize].r_cap + b;
        for (k, &i) in path.iter().enumerate() {
            let i = i as usize;
            let on_source_side = k < source_len;
            let p = self.nodes[i].parent;
            let is_saturated = if p == TERMINAL {
                let n = &mut self.nodes[i];
                n.tr_cap = if on_source_side {
                    n.tr_cap - b
                } else {
                    n.tr_cap + b
                };
                n.tr_cap == T::ZERO
            } else {
                // Source side: flow runs parent → i; sink side: i → parent.
                let (fwd, rev) = if on_source_side {
                    ((p ^ 1) as usize, p as usize)
                } else {
                    (p as usize, (p ^ 1) as usize)
                };
                self.arcs[fwd].r_cap = self.arcs[fwd].r_cap - b;
                self.arcs[rev].r_cap = self.arcs[rev].r_cap + b;
                self.arcs[fwd].r_cap == T::ZERO
            };
            if is_saturated {
                self.nodes[i].parent = ORPHAN;
                saturated.push((i as u32, on_source_side));
            }
        }
        self.flow = self.flow + b;
        self.path = path;
    }

    /// Distance from `j` to its tree's terminal through parents, or `None` when the path hits an orphan.
    /// Marks the nodes on the path with `time` and their distances (the paper's heuristic).
    fn origin_distance(&mut self, start: usize, time: u32) -> Option<u32> {
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut j = start;
        let d = loop {
            let n = &self.nodes[j];
            if n.timestamp == time {
                break Some(n.dist);
            }
            path.push(j as u32);
            match n.parent {
                TERMINAL => break Some(0),
                ORPHAN | NONE => break None,
                _ => j = n.parent_node as usize,
            }
        };
        let result = d.map(|base| {
            // Mark the path: the node nearest the terminal (or the marked node) is last.
            let total = base.saturating_add(path.len() as u32);
            for (k, &j) in path.iter().enumerate() {
                let n = &mut self.nodes[j as usize];
                n.timestamp = time;
                n.dist = total - k as u32;
            }
            total
        });
        self.path = path;
        result
    }

    fn adopt(&mut self, orphans: &mut VecDeque<u32>, queue: &mut VecDeque<u32>, time: u32) {
        while let Some(i) = orphans.pop_front() {
            let iu = i as usize;
            let in_sink = self.nodes[iu].in_sink_tree;
            let mut best: Option<(u32, u32)> = None; // (arc, distance)
            let mut a = self.nodes[iu].first;
            while a != NONE {
                let arc = &self.arcs[a as usize];
                let (j, next) = (arc.head as usize, arc.next);
                // Residual toward i along the tree direction.
                let residual = if in_sink {
                    arc.r_cap
                } else {
                    self.arcs[(a ^ 1) as usize].r_cap
                };
                if residual > T::ZERO
                    && self.nodes[j].in_sink_tree == in_sink
                    && self.nodes[j].parent != NONE
                    && let Some(d) = self.origin_distance(j, time)
                    && best.is_none_or(|(_, bd)| d < bd)
                {
                    best = Some((a, d));
                }
                a = next;
            }
            if let Some((a, d)) = best {
                let head = self.arcs[a as usize].head;
                let n = &mut self.nodes[iu];
                n.parent = a;
                n.parent_node = head;
                n.timestamp = time;
                n.dist = d.saturating_add(1);
                continue;
            }
            // No parent: i becomes free; its tree neighbours may grow into it again, its children are orphaned.
            self.nodes[iu].parent = NONE;
            self.nodes[iu].timestamp = 0;
            self.nodes[iu].dist = INFINITE_DIST;
            let mut a = self.nodes[iu].first;
            while a != NONE {
                let arc = &self.arcs[a as usize];
                let (j, next) = (arc.head as usize, arc.next);
                let nj_parent = self.nodes[j].parent;
                if self.nodes[j].in_sink_tree == in_sink && nj_parent != NONE {
                    let residual = if in_sink {
                        arc.r_cap
                    } else {
                        self.arcs[(a ^ 1) as usize].r_cap
                    };
                    if residual > T::ZERO && !self.nodes[j].active {
                        self.nodes[j].active = true;
                        queue.push_back(j as u32);
                    }
                    if nj_parent != TERMINAL
                        && nj_parent != ORPHAN
                        && self.nodes[j].parent_node == i
                    {
                        self.nodes[j].parent = ORPHAN;
                        orphans.push_back(j as u32);
                    }
                }
                a = next;
            }
        }
    }

    /// Computes the maximum flow by **incremental breadth-first search** (IBFS: A. V. Goldberg, S. Hed,
    /// H. Kaplan, R. E. Tarjan and R. F. Werneck, "Maximum Flows by Incremental Breadth-First Search",
    /// ESA 2011) and returns its value; an alternative to [`MaxFlowGraph::max_flow`] (Boykov–Kolmogorov)
    /// with the same result and the same [`MaxFlowGraph::segment`] afterwards.
    ///
    /// Like Boykov–Kolmogorov it grows a source tree and a sink tree and augments where they meet, but the
    /// trees are breadth-first: every tree node carries its exact distance label from its terminal, the trees
    /// grow one whole level per pass (the smaller side first), and an orphan is re-attached by looking only at
    /// its neighbours one level closer to the terminal (O(degree), no walk to the root); failing that it is
    /// relabelled to its lowest eligible neighbour's level + 1 (its children become orphans), or freed.
    /// Orphans are processed level by level, lowest first. Augmenting paths are shortest in the residual
    /// graph at the time they are found.
    pub fn max_flow_ibfs(&mut self) -> T {
        if self.solved {
            return self.flow;
        }
        // Paths of one arc first: push directly from each node with source excess to its neighbours with sink
        // excess. The same augmentations the first pass would make, without building trees for them.
        for i in 0..self.nodes.len() {
            if self.nodes[i].tr_cap <= T::ZERO {
                continue;
            }
            let mut a = self.nodes[i].first;
            while a != NONE {
                let arc = &self.arcs[a as usize];
                let (j, next, r) = (arc.head as usize, arc.next, arc.r_cap);
                let tj = self.nodes[j].tr_cap;
                if tj < T::ZERO && r > T::ZERO {
                    let f = min(min(self.nodes[i].tr_cap, neg(tj)), r);
                    self.arcs[a as usize].r_cap = r - f;
                    self.arcs[(a ^ 1) as usize].r_cap = self.arcs[(a ^ 1) as usize].r_cap + f;
                    self.nodes[j].tr_cap = tj + f;
                    self.nodes[i].tr_cap = self.nodes[i].tr_cap - f;
                    self.flow = self.flow + f;
                    if self.nodes[i].tr_cap == T::ZERO {
                        break;
                    }
                }
                a = next;
            }
        }
        let mut st = IbfsState::default();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.parent = NONE;
            n.label = 0;
            if n.tr_cap > T::ZERO {
                n.label = 1;
                n.parent = TERMINAL;
                st.next_s.push(i as u32);
            } else if n.tr_cap < T::ZERO {
                n.label = -1;
                n.parent = TERMINAL;
                st.next_t.push(i as u32);
            }
        }
        while !st.next_s.is_empty() && !st.next_t.is_empty() {
            if st.next_s.len() <= st.next_t.len() {
                self.ibfs_grow(&mut st, true);
            } else {
                self.ibfs_grow(&mut st, false);
            }
        }
        // The sink tree closed first: finish the source tree so that it is exactly the set reachable from
        // the source (no augmenting path is left, so this growth meets no sink-tree node).
        while !st.next_s.is_empty() {
            self.ibfs_grow(&mut st, true);
        }
        for n in &mut self.nodes {
            n.in_sink_tree = n.label < 0;
            if n.label > 0 {
                if n.parent == NONE || n.parent == ORPHAN {
                    n.parent = TERMINAL;
                }
            } else {
                n.parent = NONE;
            }
        }
        self.solved = true;
        self.flow
    }

    /// One IBFS pass: scans the nodes of the current top level of one tree, attaching free neighbours at
    /// the next level and augmenting through neighbours of the other tree.
    fn ibfs_grow(&mut self, st: &mut IbfsState, source: bool) {
        let active = if source {
            st.top_s += 1;
            std::mem::take(&mut st.next_s)
        } else {
            st.top_t += 1;
            std::mem::take(&mut st.next_t)
        };
        let level = if source {
            st.top_s - 1
        } else {
            -(st.top_t - 1)
        };
        let step = if source { 1 } else { -1 };
        for &x in &active {
            let xu = x as usize;
            if self.nodes[xu].label != level {
                continue; // relabelled or freed since it was listed
            }
            let mut a = self.nodes[xu].first;
            while a != NONE {
                // Residual in the tree's direction: x → y for the source tree, y → x for the sink tree.
                let residual = if source {
                    self.arcs[a as usize].r_cap
                } else {
                    self.arcs[(a ^ 1) as usize].r_cap
                };
                if residual > T::ZERO {
                    let y = self.arcs[a as usize].head as usize;
                    let ly = self.nodes[y].label;
                    if ly == 0 {
                        let n = &mut self.nodes[y];
                        n.label = level + step;
                        n.parent = a ^ 1;
                        n.parent_node = x;
                        if source {
                            st.next_s.push(y as u32);
                        } else {
                            st.next_t.push(y as u32);
                        }
                    } else if (ly < 0) == source {
                        // The trees meet: the bridge goes from the source side to the sink side.
                        self.ibfs_augment(if source { a } else { a ^ 1 }, st);
                        if self.nodes[xu].label != level {
                            break; // x lost its place at this level
                        }
                        continue; // the same arc may still be residual, towards a new neighbour state
                    }
                }
                a = self.arcs[a as usize].next;
            }
        }
    }

    fn ibfs_augment(&mut self, bridge: u32, st: &mut IbfsState) {
        let mut saturated = std::mem::take(&mut self.saturated);
        self.push_along(bridge, &mut saturated);
        for &(i, on_source_side) in &saturated {
            let level = self.nodes[i as usize].label.unsigned_abs() as usize;
            st.orphans(on_source_side).push(level, i);
        }
        self.saturated = saturated;
        self.ibfs_adopt(st, false);
        self.ibfs_adopt(st, true);
    }

    /// Processes the orphans of one tree, lowest level first.
    fn ibfs_adopt(&mut self, st: &mut IbfsState, source: bool) {
        let top = if source { st.top_s } else { st.top_t };
        let sign = if source { 1 } else { -1 };
        let mut buckets = std::mem::take(st.orphans(source));
        let mut level = buckets.min;
        while level <= buckets.max {
            while let Some(x) = buckets.levels[level].pop() {
                let xu = x as usize;
                let lx = level as i32; // |label| of x
                // 1. One scan of the arcs finds the lowest-level neighbour that can be a parent: a tree node of
                //    level < top with a residual arc towards x. Level lx − 1 (the lowest possible: labels are
                //    breadth-first distances) re-attaches x where it was and ends the scan.
                let mut best: Option<(u32, i32)> = None;
                let mut a = self.nodes[xu].first;
                while a != NONE {
                    let arc = &self.arcs[a as usize];
                    let (y, next, fwd) = (arc.head as usize, arc.next, arc.r_cap);
                    let ly = self.nodes[y].label * sign;
                    if ly > 0 && ly < top && best.is_none_or(|(_, l)| ly < l) {
                        let residual = if source {
                            self.arcs[(a ^ 1) as usize].r_cap
                        } else {
                            fwd
                        };
                        if residual > T::ZERO {
                            best = Some((a, ly));
                            if ly == lx - 1 {
                                break;
                            }
                        }
                    }
                    a = next;
                }
                if let Some((a, ly)) = best
                    && ly == lx - 1
                {
                    let head = self.arcs[a as usize].head;
                    let n = &mut self.nodes[xu];
                    n.parent = a;
                    n.parent_node = head;
                    continue;
                }
                // 2. At the top level there are no children and no lower level to move to: free.
                if lx == top {
                    let n = &mut self.nodes[xu];
                    n.label = 0;
                    n.parent = NONE;
                    continue;
                }
                // 3. Its children become orphans, one level up.
                let child_label = sign * (lx + 1);
                let mut a = self.nodes[xu].first;
                while a != NONE {
                    let arc = &self.arcs[a as usize];
                    let (z, next) = (arc.head as usize, arc.next);
                    let nz = &self.nodes[z];
                    if nz.label == child_label
                        && nz.parent_node == x
                        && nz.parent != ORPHAN
                        && nz.parent != TERMINAL
                        && nz.parent != NONE
                    {
                        self.nodes[z].parent = ORPHAN;
                        buckets.push((lx + 1) as usize, z as u32);
                    }
                    a = next;
                }
                // 4. Relabel onto the lowest-level neighbour found in 1 (its children, orphaned in 3, keep
                //    their labels and may be chosen, as in the paper; they re-attach or relabel in turn), or free.
                match best {
                    Some((a, ly)) => {
                        let head = self.arcs[a as usize].head;
                        let n = &mut self.nodes[xu];
                        n.parent = a;
                        n.parent_node = head;
                        n.label = sign * (ly + 1);
                        if ly + 1 == top {
                            if source {
                                st.next_s.push(x);
                            } else {
                                st.next_t.push(x);
                            }
                        }
                    }
                    None => {
                        let n = &mut self.nodes[xu];
                        n.label = 0;
                        n.parent = NONE;
                    }
                }
            }
            level += 1;
        }
        buckets.min = usize::MAX;
        buckets.max = 0;
        *st.orphans(source) = buckets;
    }

    /// The side of the minimum cut node `i` lies on, after [`MaxFlowGraph::max_flow`] or
    /// [`MaxFlowGraph::max_flow_ibfs`]: nodes of the final
    /// source tree are [`Segment::Source`]; all others (sink tree and free nodes) are [`Segment::Sink`], which
    /// gives the minimum cut with the smallest source side.
    pub fn segment(&self, i: usize) -> Segment {
        let n = &self.nodes[i];
        if n.parent != NONE && !n.in_sink_tree {
            Segment::Source
        } else {
            Segment::Sink
        }
    }
}

#[cfg(test)]
mod tests {
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
}
