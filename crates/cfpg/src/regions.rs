//! Connected regions, convex hull, convexity (Eq. 7), region selection (Eq. 8) and centroid (Eq. 9).

use crate::{LabelMap, WATERSHED_LINE};
use image::Luma;
use imageproc::point::Point;

/// Pixel connectivity for [`label_components`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Connectivity {
    /// N, S, E, W neighbours.
    Four,
    /// All eight neighbours.
    Eight,
}

/// Connected-component labelling of a `u32` map: two neighbouring pixels are connected when they hold the
/// same nonzero value. Components are numbered 1, 2, … in raster order of their first pixel; 0 stays 0.
///
/// Written here rather than taken from imageproc because `imageproc::region_labelling::connected_components`
/// 0.27 panics (`assertion failed: i < self.count` in its union-find) on some small label maps that the
/// property test below generates. One stack-based flood fill per component, `O(N)`.
///
/// # Examples
/// ```
/// use pslg_cfpg::{label_components, Connectivity, LabelMap};
/// let m = LabelMap::from_raw(4, 2, vec![1, 1, 0, 2,
///                                       0, 1, 2, 2]).unwrap();
/// let c = label_components(&m, Connectivity::Four);
/// assert_eq!(c.as_raw(), &vec![1, 1, 0, 2, 0, 1, 2, 2]);
/// ```
pub fn label_components(map: &LabelMap, connectivity: Connectivity) -> LabelMap {
    let (w, h) = map.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let src = map.as_raw();
    let mut out = vec![0u32; src.len()];
    let mut next = 0u32;
    let mut stack = Vec::new();
    let offsets: &[(isize, isize)] = match connectivity {
        Connectivity::Four => &[(-1, 0), (1, 0), (0, -1), (0, 1)],
        Connectivity::Eight => &[
            (-1, 0),
            (1, 0),
            (0, -1),
            (0, 1),
            (-1, -1),
            (1, -1),
            (-1, 1),
            (1, 1),
        ],
    };
    for start in 0..src.len() {
        if src[start] == 0 || out[start] != 0 {
            continue;
        }
        next += 1;
        out[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % wu) as isize, (i / wu) as isize);
            for &(dx, dy) in offsets {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= wu as isize || ny >= hu as isize {
                    continue;
                }
                let j = ny as usize * wu + nx as usize;
                if out[j] == 0 && src[j] == src[i] {
                    out[j] = next;
                    stack.push(j);
                }
            }
        }
    }
    LabelMap::from_raw(w, h, out).unwrap_or_else(|| LabelMap::new(w, h))
}

/// Connected components of the watershed partition inside `mask` (the cleaned binary map): two 4-neighbours
/// belong to the same component when they carry the same watershed label; watershed lines and pixels outside
/// the mask separate components. Mask pixels that no marker reached (label 0) form components of their own.
/// Labels are 1, 2, …; 0 elsewhere.
pub fn mask_components(watershed: &LabelMap, mask: &image::GrayImage) -> LabelMap {
    let unreached = watershed
        .as_raw()
        .iter()
        .filter(|&&l| l != WATERSHED_LINE)
        .copied()
        .max()
        .unwrap_or(0)
        + 1;
    let (w, h) = watershed.dimensions();
    let regions = LabelMap::from_fn(w, h, |x, y| {
        let inside = mask.get_pixel_checked(x, y).is_some_and(|p| p[0] != 0);
        Luma([match watershed.get_pixel(x, y)[0] {
            _ if !inside => 0,
            WATERSHED_LINE => 0,
            0 => unreached,
            l => l,
        }])
    });
    label_components(&regions, Connectivity::Four)
}

/// Per-component measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Component label in the component map.
    pub label: u32,
    /// Area `A` in pixels.
    pub area: usize,
    /// Area of the convex hull of the region's pixel squares.
    pub hull_area: f64,
    /// Convexity `κ = A / A_hull` (Eq. 7), in (0, 1].
    pub convexity: f64,
    /// Centroid `(x̄, ȳ)` of the pixel centres, in ROI coordinates (Eq. 9).
    pub centroid: (f64, f64),
}

/// Convex hull of a set of pixels, each taken as the unit square `[x, x+1] × [y, y+1]`, so that the hull area
/// is never below the pixel count (a single pixel has hull area 1). Only the extreme pixels of each row can lie
/// on the hull, so `rows` gives, for each row `y`, the first and last column of the region in that row.
/// Graham scan from imageproc.
pub fn pixel_hull(rows: &[(u32, u32, u32)]) -> Vec<Point<i64>> {
    let mut pts = Vec::with_capacity(rows.len() * 4);
    for &(y, x0, x1) in rows {
        let (y, x0, x1) = (i64::from(y), i64::from(x0), i64::from(x1) + 1);
        pts.extend([
            Point::new(x0, y),
            Point::new(x0, y + 1),
            Point::new(x1, y),
            Point::new(x1, y + 1),
        ]);
    }
    imageproc::geometry::convex_hull(pts)
}

/// Area of a simple polygon by the shoelace formula (imageproc).
pub fn polygon_area(points: &[Point<i64>]) -> f64 {
    imageproc::geometry::contour_area(points)
}

/// Eq. (7): convexity `κ = A / A_hull`. Returns 0 when the hull is empty.
pub fn convexity(area: usize, hull_area: f64) -> f64 {
    if hull_area <= 0.0 {
        0.0
    } else {
        (area as f64 / hull_area).min(1.0)
    }
}

/// Measures every component of `components` (labels 1..): area, convex hull, convexity and centroid.
pub fn measure_regions(components: &LabelMap) -> Vec<Region> {
    let n = components.as_raw().iter().copied().max().unwrap_or(0) as usize;
    let mut area = vec![0usize; n + 1];
    let mut sum = vec![(0.0f64, 0.0f64); n + 1];
    // Per label: list of (row, first col, last col) runs merged per row.
    let mut rows: Vec<Vec<(u32, u32, u32)>> = vec![Vec::new(); n + 1];
    for (x, y, p) in components.enumerate_pixels() {
        let l = p[0] as usize;
        if l == 0 {
            continue;
        }
        area[l] += 1;
        sum[l].0 += f64::from(x) + 0.5;
        sum[l].1 += f64::from(y) + 0.5;
        match rows[l].last_mut() {
            Some(r) if r.0 == y => r.2 = x,
            _ => rows[l].push((y, x, x)),
        }
    }
    (1..=n)
        .filter(|&l| area[l] > 0)
        .map(|l| {
            let hull_area = polygon_area(&pixel_hull(&rows[l]));
            Region {
                label: l as u32,
                area: area[l],
                hull_area,
                convexity: convexity(area[l], hull_area),
                centroid: (sum[l].0 / area[l] as f64, sum[l].1 / area[l] as f64),
            }
        })
        .collect()
}

/// Eq. (8): among regions with area ≥ `min_area`, the one of highest convexity (ties: the larger area).
pub fn select_region(regions: &[Region], min_area: usize) -> Option<&Region> {
    regions
        .iter()
        .filter(|r| r.area >= min_area)
        .max_by(|a, b| {
            a.convexity
                .total_cmp(&b.convexity)
                .then(a.area.cmp(&b.area))
        })
}

/// Eq. (9): the foreground point — the region's centroid. When the centroid pixel is not in the region (a
/// crescent or ring), the region pixel nearest to it is returned instead, so the point always lies on the
/// region; the flag says whether that happened. Coordinates are pixel centres in ROI space.
pub fn region_point(components: &LabelMap, region: &Region) -> ((f64, f64), bool) {
    let (cx, cy) = region.centroid;
    let (px, py) = (cx.floor().max(0.0) as u32, cy.floor().max(0.0) as u32);
    if components
        .get_pixel_checked(px, py)
        .is_some_and(|p| p[0] == region.label)
    {
        return ((cx, cy), false);
    }
    let mut best = (f64::INFINITY, (cx, cy));
    for (x, y, p) in components.enumerate_pixels() {
        if p[0] == region.label {
            let (qx, qy) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
            let d = (qx - cx).powi(2) + (qy - cy).powi(2);
            if d < best.0 {
                best = (d, (qx, qy));
            }
        }
    }
    (best.1, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows_of(pixels: &[(u32, u32)]) -> Vec<(u32, u32, u32)> {
        let mut sorted = pixels.to_vec();
        sorted.sort_by_key(|&(x, y)| (y, x));
        let mut rows: Vec<(u32, u32, u32)> = Vec::new();
        for (x, y) in sorted {
            match rows.last_mut() {
                Some(r) if r.0 == y => r.2 = x,
                _ => rows.push((y, x, x)),
            }
        }
        rows
    }

    #[test]
    fn rectangle_is_fully_convex() {
        let px: Vec<(u32, u32)> = (0..4)
            .flat_map(|y| (0..6).map(move |x| (x + 2, y + 1)))
            .collect();
        let hull = pixel_hull(&rows_of(&px));
        assert_eq!(polygon_area(&hull), 24.0);
        assert_eq!(convexity(24, 24.0), 1.0);
        assert_eq!(polygon_area(&pixel_hull(&rows_of(&[(3, 3)]))), 1.0);
    }

    #[test]
    fn l_shape_is_less_convex() {
        // 3×3 L: column x=0 and row y=2 → 5 pixels, hull of squares has area 7.
        let px = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)];
        let hull_area = polygon_area(&pixel_hull(&rows_of(&px)));
        assert_eq!(hull_area, 7.0);
    }

    #[test]
    fn select_prefers_convex_and_respects_area() {
        let r = |label, area, convexity| Region {
            label,
            area,
            hull_area: 1.0,
            convexity,
            centroid: (0.0, 0.0),
        };
        let regions = [r(1, 100, 0.6), r(2, 50, 0.9), r(3, 5, 1.0)];
        assert_eq!(select_region(&regions, 10).map(|r| r.label), Some(2));
        assert_eq!(select_region(&regions, 1000), None);
    }

    /// Brute-force hull area: the hull of all four corners of every pixel, by gift wrapping on exact integers.
    fn hull_area_reference(pixels: &[(u32, u32)]) -> f64 {
        let mut pts: Vec<(i64, i64)> = pixels
            .iter()
            .flat_map(|&(x, y)| {
                let (x, y) = (i64::from(x), i64::from(y));
                [(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)]
            })
            .collect();
        pts.sort();
        pts.dedup();
        // Andrew's monotone chain.
        let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| {
            (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
        };
        let mut lower: Vec<(i64, i64)> = Vec::new();
        for &p in &pts {
            while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0
            {
                lower.pop();
            }
            lower.push(p);
        }
        let mut upper: Vec<(i64, i64)> = Vec::new();
        for &p in pts.iter().rev() {
            while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0
            {
                upper.pop();
            }
            upper.push(p);
        }
        lower.pop();
        upper.pop();
        lower.extend(upper);
        let mut a2 = 0i64;
        for i in 0..lower.len() {
            let (p, q) = (lower[i], lower[(i + 1) % lower.len()]);
            a2 += p.0 * q.1 - q.0 * p.1;
        }
        a2.abs() as f64 / 2.0
    }

    proptest! {
        #[test]
        fn hull_area_matches_reference(pixels in proptest::collection::btree_set((0u32..12, 0u32..12), 1..40)) {
            let pixels: Vec<(u32, u32)> = pixels.into_iter().collect();
            let fast = polygon_area(&pixel_hull(&rows_of(&pixels)));
            let slow = hull_area_reference(&pixels);
            prop_assert!((fast - slow).abs() < 1e-9, "{fast} vs {slow}");
            prop_assert!(fast >= pixels.len() as f64);
        }

        #[test]
        fn components_match_flood_fill(w in 1u32..12, h in 1u32..12, bits in proptest::collection::vec(0u32..3, 144)) {
            // Random watershed-like labels (0 = background, 1/2 = basins) — components must be exactly the
            // 4-connected sets of equal nonzero labels.
            let ws = LabelMap::from_fn(w, h, |x, y| Luma([bits[(y * 12 + x) as usize]]));
            let mask = image::GrayImage::from_fn(w, h, |x, y| Luma([if ws.get_pixel(x, y)[0] != 0 { 255 } else { 0 }]));
            let comps = mask_components(&ws, &mask);
            let (wu, hu) = (w as usize, h as usize);
            let get = |m: &LabelMap, x: usize, y: usize| m.get_pixel(x as u32, y as u32)[0];
            for y in 0..hu {
                for x in 0..wu {
                    prop_assert_eq!(get(&comps, x, y) == 0, get(&ws, x, y) == 0);
                    for (nx, ny) in [(x + 1, y), (x, y + 1)] {
                        if nx < wu && ny < hu && get(&ws, x, y) != 0 {
                            let same_ws = get(&ws, x, y) == get(&ws, nx, ny);
                            let same_comp = get(&comps, x, y) == get(&comps, nx, ny);
                            prop_assert!(!same_ws || same_comp);
                        }
                    }
                }
            }
            // Flood fill from every pixel: component labels are constant on, and unique to, each flood.
            let mut seen = vec![false; wu * hu];
            let mut used = std::collections::HashSet::new();
            for s in 0..wu * hu {
                let (sx, sy) = (s % wu, s / wu);
                if seen[s] || get(&ws, sx, sy) == 0 { continue; }
                let (v, c) = (get(&ws, sx, sy), get(&comps, sx, sy));
                prop_assert!(used.insert(c));
                let mut stack = vec![s];
                seen[s] = true;
                while let Some(i) = stack.pop() {
                    let (x, y) = (i % wu, i / wu);
                    prop_assert_eq!(get(&comps, x, y), c);
                    let nbrs = [(x.wrapping_sub(1), y), (x + 1, y), (x, y.wrapping_sub(1)), (x, y + 1)];
                    for (nx, ny) in nbrs {
                        if nx < wu && ny < hu && !seen[ny * wu + nx] && get(&ws, nx, ny) == v {
                            seen[ny * wu + nx] = true;
                            stack.push(ny * wu + nx);
                        }
                    }
                }
            }
        }
    }
}
