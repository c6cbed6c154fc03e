//! Boykov–Kolmogorov's solver on [`MaxFlowGraph`]: growth, augmentation and adoption with the
//! time-stamp/distance heuristic of the paper (TPAMI 2004).

use super::*;
use std::collections::VecDeque;

impl<T: Capacity> MaxFlowGraph<T> {
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

    fn augment(&mut self, mid: u32, orphans: &mut VecDeque<u32>) {
        let mut saturated = std::mem::take(&mut self.saturated);
        self.push_along(mid, &mut saturated);
        for &(i, _) in &saturated {
            orphans.push_front(i);
        }
        self.saturated = saturated;
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
}
