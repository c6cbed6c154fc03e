//! Markers from the thresholded distance map, and marker-controlled watershed (Meyer's flooding).

use crate::FloatMap;
use crate::{Connectivity, label_components};
use image::{GrayImage, ImageBuffer, Luma};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A `u32` label map: 0 = background / unlabelled.
pub type LabelMap = ImageBuffer<Luma<u32>, Vec<u32>>;

/// Label of watershed lines in the output of [`watershed`].
pub const WATERSHED_LINE: u32 = u32::MAX;

/// Markers: connected components (8-connected) of `{p : D(p) > t · max D}` — the "sure foreground" cores of
/// the objects in the distance map. Labels are 1, 2, …; 0 elsewhere. `relative_threshold` is in `[0, 1)`.
///
/// # Examples
/// ```
/// use pslg_cfpg::{distance_markers, FloatMap};
/// let d = FloatMap::from_raw(5, 1, vec![1.0, 3.0, 0.0, 2.9, 0.5]).unwrap();
/// let m = distance_markers(&d, 0.5);
/// assert_eq!(m.as_raw(), &vec![0, 1, 0, 2, 0]);
/// ```
pub fn distance_markers(distance: &FloatMap, relative_threshold: f32) -> LabelMap {
    let max = distance.as_raw().iter().copied().fold(0.0f32, f32::max);
    let t = relative_threshold * max;
    let cores = LabelMap::from_fn(distance.width(), distance.height(), |x, y| {
        Luma([u32::from(max > 0.0 && distance.get_pixel(x, y)[0] > t)])
    });
    label_components(&cores, Connectivity::Eight)
}

#[derive(PartialEq)]
struct Entry {
    level: f32,
    age: u64,
    index: usize,
}
impl Eq for Entry {}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on (level, age): lowest first, FIFO among equal levels.
        other
            .level
            .total_cmp(&self.level)
            .then(other.age.cmp(&self.age))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The flooding front: the priority queue and which pixels have entered it.
struct Flood {
    heap: BinaryHeap<Entry>,
    queued: Vec<bool>,
    /// Entries pushed so far (the FIFO tie-break).
    age: u64,
}

impl Flood {
    /// Queues, at their elevation, the neighbours that are unlabelled mask pixels not queued yet.
    fn offer(
        &mut self,
        neighbours: [Option<usize>; 4],
        labels: &[u32],
        elev: &[f32],
        inside: impl Fn(usize) -> bool,
    ) {
        for j in neighbours.into_iter().flatten() {
            if labels[j] == 0 && !self.queued[j] && inside(j) {
                self.queued[j] = true;
                self.heap.push(Entry {
                    level: elev[j],
                    age: self.age,
                    index: j,
                });
                self.age += 1;
            }
        }
    }
}

/// Marker-controlled watershed by Meyer's flooding algorithm (F. Meyer, "Topographic distance and watershed
/// lines", Signal Processing 38, 1994), on the relief `elevation`, restricted to the nonzero pixels of `mask`.
///
/// Every marker floods its 4-neighbourhood in order of increasing elevation (FIFO among equal levels). A pixel
/// reached by two different basins becomes a watershed line ([`WATERSHED_LINE`]) and stops the flood there.
/// Mask pixels no marker reaches keep label 0. For CFPG the relief is `−D`, so basins grow from the cores
/// outward and meet where touching objects narrow.
///
/// # Complexity
/// `O(N log N)` for `N` mask pixels.
///
/// # Examples
/// ```
/// use image::GrayImage;
/// use pslg_cfpg::{watershed, FloatMap, LabelMap, WATERSHED_LINE};
/// // Two basins at both ends of a ridge.
/// let relief = FloatMap::from_raw(5, 1, vec![0.0, 1.0, 2.0, 1.0, 0.0]).unwrap();
/// let markers = LabelMap::from_raw(5, 1, vec![1, 0, 0, 0, 2]).unwrap();
/// let mask = GrayImage::from_raw(5, 1, vec![255; 5]).unwrap();
/// let ws = watershed(&relief, &markers, &mask);
/// assert_eq!(ws.as_raw(), &vec![1, 1, WATERSHED_LINE, 2, 2]);
/// ```
pub fn watershed(elevation: &FloatMap, markers: &LabelMap, mask: &GrayImage) -> LabelMap {
    let (w, h) = markers.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let n = wu * hu;
    let elev = elevation.as_raw();
    let inside = |i: usize| mask.as_raw().get(i).is_some_and(|&v| v != 0);
    let mut labels: Vec<u32> = markers
        .as_raw()
        .iter()
        .enumerate()
        .map(|(i, &l)| if inside(i) { l } else { 0 })
        .collect();
    let mut flood = Flood {
        heap: BinaryHeap::new(),
        queued: vec![false; n],
        age: 0,
    };
    let neighbours = |i: usize| {
        let (x, y) = (i % wu, i / wu);
        [
            (x > 0).then(|| i - 1),
            (x + 1 < wu).then(|| i + 1),
            (y > 0).then(|| i - wu),
            (y + 1 < hu).then(|| i + wu),
        ]
    };
    for i in 0..n {
        if labels[i] != 0 {
            flood.queued[i] = true;
            flood.offer(neighbours(i), &labels, elev, inside);
        }
    }
    while let Some(Entry { index: i, .. }) = flood.heap.pop() {
        let mut label = 0;
        for j in neighbours(i).into_iter().flatten() {
            let l = labels[j];
            if l != 0 && l != WATERSHED_LINE {
                if label == 0 {
                    label = l;
                } else if label != l {
                    label = WATERSHED_LINE;
                    break;
                }
            }
        }
        labels[i] = label;
        if label == WATERSHED_LINE || label == 0 {
            continue;
        }
        flood.offer(neighbours(i), &labels, elev, inside);
    }
    LabelMap::from_raw(w, h, labels).unwrap_or_else(|| LabelMap::new(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_two_touching_discs() {
        // Two overlapping discs of radius 6 whose centres are 11 px apart.
        let (w, h) = (30u32, 16u32);
        let mask = GrayImage::from_fn(w, h, |x, y| {
            let d1 = (x as f32 - 8.5).powi(2) + (y as f32 - 7.5).powi(2);
            let d2 = (x as f32 - 19.5).powi(2) + (y as f32 - 7.5).powi(2);
            Luma([if d1 < 36.0 || d2 < 36.0 { 255 } else { 0 }])
        });
        let d = crate::euclidean_distance_transform(&mask);
        let markers = distance_markers(&d, 0.7);
        assert_eq!(markers.as_raw().iter().copied().max(), Some(2));
        let relief = FloatMap::from_fn(w, h, |x, y| Luma([-d.get_pixel(x, y)[0]]));
        let ws = watershed(&relief, &markers, &mask);
        // Every mask pixel is labelled 1, 2 or line; the two centres differ; a line separates them.
        for (x, y, p) in ws.enumerate_pixels() {
            assert_eq!(p[0] != 0, mask.get_pixel(x, y)[0] != 0, "at ({x},{y})");
        }
        assert_ne!(ws.get_pixel(8, 7)[0], ws.get_pixel(19, 7)[0]);
        assert!((9..19).any(|x| ws.get_pixel(x, 7)[0] == WATERSHED_LINE));
    }

    #[test]
    fn empty_inputs() {
        let ws = watershed(
            &FloatMap::new(0, 0),
            &LabelMap::new(0, 0),
            &GrayImage::new(0, 0),
        );
        assert!(ws.as_raw().is_empty());
        let m = distance_markers(&FloatMap::new(3, 3), 0.5);
        assert!(m.as_raw().iter().all(|&l| l == 0));
    }
}
