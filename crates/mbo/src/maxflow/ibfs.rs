//! IBFS (incremental breadth-first search; Goldberg, Hed, Kaplan, Tarjan and Werneck, ESA 2011) on
//! [`MaxFlowGraph`]: breadth-first source and sink trees with exact distance labels, orphans re-attached
//! level by level from their neighbours.

use super::*;

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
}
