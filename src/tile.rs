//! Large scenes in tiles: a fixed grid of overlapping tiles (the model-input windows), one box prompt handled
//! in one tile when its context fits, otherwise in every tile it crosses with the parts merged along the tile
//! cores so no seam shows.
//!
//! Memory is bounded by the tile, not the scene: each tile is read on its own (from a TIFF only the chunks it
//! touches, see [`crate::io::load_rgb_window`]) and dropped before the next; what grows with the scene is
//! the output mask only, one byte per scene pixel.

use crate::{BoxMask, BoxSegmenter, PslgError};
use image::{GrayImage, RgbImage};
use pslg_cfpg::{PixelBox, Roi};

/// One tile of a [`TileGrid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Column of the tile in the grid (0-based).
    pub col: u32,
    /// Row of the tile in the grid (0-based).
    pub row: u32,
    /// The pixels the tile reads, in scene pixels.
    pub roi: Roi,
    /// The part of the scene this tile is responsible for when several tiles' results are merged: the tile
    /// minus half of each overlap with a neighbour. The cores of a grid partition the scene.
    pub core: Roi,
}

/// A grid of `size × size` tiles over a `width × height` scene, neighbours overlapping by `overlap` pixels
/// (the last tile of a row or column is moved back to end at the scene's edge, so it may overlap more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    width: u32,
    height: u32,
    size: u32,
    overlap: u32,
}

/// How a box prompt is handled on a [`TileGrid`] ([`TileGrid::plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TilePlan {
    /// The box and the context MBO needs around it fit in this tile: it is segmented there, once.
    Single(Tile),
    /// The box crosses tiles: each of these tiles segments the box's part inside it, and each contributes
    /// its core.
    Split(Vec<Tile>),
}

/// Result of [`segment_tiled`].
#[derive(Debug, Clone)]
pub struct TiledMask {
    /// The merged mask, 0/255, the scene's size.
    pub mask: GrayImage,
    /// The tiles used, with each tile's own result (in tile pixels).
    pub parts: Vec<(Tile, BoxMask)>,
}

/// Tile starts along one axis of length `len`.
fn starts(len: u32, size: u32, overlap: u32) -> Vec<u32> {
    if len <= size {
        return vec![0];
    }
    let stride = size - overlap;
    let mut v: Vec<u32> = (0..)
        .map(|i| i * stride)
        .take_while(|&s| s + size < len)
        .collect();
    v.push(len - size);
    v
}

impl TileGrid {
    /// A grid of `size`-pixel tiles overlapping by `overlap` pixels over a `width × height` scene.
    ///
    /// # Errors
    /// [`PslgError::InvalidParam`] when `size` is 0 or `overlap ≥ size`, or the scene is empty.
    pub fn new(width: u32, height: u32, size: u32, overlap: u32) -> Result<Self, PslgError> {
        if size == 0 {
            return Err(PslgError::InvalidParam {
                name: "tile size",
                value: "0 (give a positive number of pixels)".into(),
            });
        }
        if overlap >= size {
            return Err(PslgError::InvalidParam {
                name: "tile overlap",
                value: format!("{overlap} (must be smaller than the tile size {size})"),
            });
        }
        if width == 0 || height == 0 {
            return Err(PslgError::InvalidParam {
                name: "scene size",
                value: format!("{width}x{height}"),
            });
        }
        Ok(Self {
            width,
            height,
            size,
            overlap,
        })
    }

    /// Number of tile columns and rows.
    pub fn dims(&self) -> (u32, u32) {
        (
            starts(self.width, self.size, self.overlap).len() as u32,
            starts(self.height, self.size, self.overlap).len() as u32,
        )
    }

    /// All tiles, row by row.
    pub fn tiles(&self) -> Vec<Tile> {
        let xs = starts(self.width, self.size, self.overlap);
        let ys = starts(self.height, self.size, self.overlap);
        // Core bounds along an axis: 0, the middle of each overlap, len.
        let cores = |s: &[u32], len: u32| -> Vec<(u32, u32)> {
            let end = |i: usize| (s[i] + self.size).min(len);
            (0..s.len())
                .map(|i| {
                    let a = if i == 0 { 0 } else { (s[i] + end(i - 1)) / 2 };
                    let b = if i + 1 == s.len() {
                        len
                    } else {
                        (s[i + 1] + end(i)) / 2
                    };
                    (a, b)
                })
                .collect()
        };
        let (cx, cy) = (cores(&xs, self.width), cores(&ys, self.height));
        let mut out = Vec::with_capacity(xs.len() * ys.len());
        for (row, &y) in ys.iter().enumerate() {
            for (col, &x) in xs.iter().enumerate() {
                out.push(Tile {
                    col: col as u32,
                    row: row as u32,
                    roi: Roi {
                        x,
                        y,
                        width: self.size.min(self.width - x),
                        height: self.size.min(self.height - y),
                    },
                    core: Roi {
                        x: cx[col].0,
                        y: cy[row].0,
                        width: cx[col].1 - cx[col].0,
                        height: cy[row].1 - cy[row].0,
                    },
                });
            }
        }
        out
    }

    /// How `bbox` (scene pixels, clamped to the scene) is handled when MBO needs `margin` pixels of context
    /// around it: in the one tile holding box and context (the one whose centre is nearest the box's), else
    /// split over the tiles whose cores the box touches.
    ///
    /// # Errors
    /// [`PslgError::Cfpg`] when the box lies outside the scene or is empty.
    pub fn plan(&self, bbox: PixelBox, margin: u32) -> Result<TilePlan, PslgError> {
        let b = pslg_cfpg::clamp_box(bbox, self.width, self.height)?;
        let m = margin;
        let (x0, y0) = (b.x.saturating_sub(m), b.y.saturating_sub(m));
        let x1 = (b.x + b.width).saturating_add(m).min(self.width);
        let y1 = (b.y + b.height).saturating_add(m).min(self.height);
        let centre = (
            f64::from(b.x) + f64::from(b.width) / 2.0,
            f64::from(b.y) + f64::from(b.height) / 2.0,
        );
        let tiles = self.tiles();
        let holds = |t: &Tile| {
            t.roi.x <= x0
                && t.roi.y <= y0
                && t.roi.x + t.roi.width >= x1
                && t.roi.y + t.roi.height >= y1
        };
        let dist = |t: &Tile| {
            let dx = f64::from(t.roi.x) + f64::from(t.roi.width) / 2.0 - centre.0;
            let dy = f64::from(t.roi.y) + f64::from(t.roi.height) / 2.0 - centre.1;
            dx * dx + dy * dy
        };
        if let Some(t) = tiles
            .iter()
            .filter(|t| holds(t))
            .min_by(|a, c| dist(a).total_cmp(&dist(c)))
        {
            return Ok(TilePlan::Single(*t));
        }
        let touches = |r: &Roi| {
            r.x < b.x + b.width
                && b.x < r.x + r.width
                && r.y < b.y + b.height
                && b.y < r.y + r.height
        };
        Ok(TilePlan::Split(
            tiles.into_iter().filter(|t| touches(&t.core)).collect(),
        ))
    }
}

/// Segments `bbox` (scene pixels) on a tiled scene: `load` reads one tile's pixels (its `roi`, scene
/// coordinates) and is called once per tile used, one tile in memory at a time. A box whose context fits one
/// tile is segmented there once; a box crossing tiles is segmented in each tile it crosses (the box clipped to
/// the tile, so the cut edges lie on the tile's border and are not forced to background) and the parts are
/// merged by the tiles' cores, each of which has at least half the overlap of context beyond it.
///
/// # Errors
/// What `load` returns, and [`BoxSegmenter::segment`]'s errors.
pub fn segment_tiled<F>(
    seg: &BoxSegmenter,
    grid: &TileGrid,
    bbox: PixelBox,
    load: F,
) -> Result<TiledMask, PslgError>
where
    F: FnMut(Roi) -> Result<RgbImage, PslgError>,
{
    segment_tiled_with(
        grid,
        bbox,
        |side| seg.context_margin(side),
        load,
        |img, b| seg.segment(img, b),
    )
}

/// [`segment_tiled`] with any box segmenter: `margin(side)` is the context it needs around a box whose longer
/// side is `side` pixels, `segment(tile, box)` segments a box (tile pixels) in a tile's pixels — e.g. a
/// [`crate::SamSegmenter`] that encodes each tile before segmenting.
///
/// # Errors
/// What `load` or `segment` return; [`PslgError::Cfpg`] for a box outside the scene.
pub fn segment_tiled_with<F, M, S>(
    grid: &TileGrid,
    bbox: PixelBox,
    margin: M,
    mut load: F,
    mut segment: S,
) -> Result<TiledMask, PslgError>
where
    F: FnMut(Roi) -> Result<RgbImage, PslgError>,
    M: Fn(u32) -> u32,
    S: FnMut(&RgbImage, PixelBox) -> Result<BoxMask, PslgError>,
{
    let b = pslg_cfpg::clamp_box(bbox, grid.width, grid.height)?;
    let margin = margin(b.width.max(b.height));
    let plan = grid.plan(bbox, margin)?;
    let mut mask = GrayImage::new(grid.width, grid.height);
    let mut parts = Vec::new();
    let (single, tiles) = match plan {
        TilePlan::Single(t) => (true, vec![t]),
        TilePlan::Split(v) => (false, v),
    };
    for t in tiles {
        let image = load(t.roi)?;
        if image.dimensions() != (t.roi.width, t.roi.height) {
            return Err(PslgError::InvalidParam {
                name: "tile image size",
                value: format!(
                    "{:?} read for a {}x{} tile",
                    image.dimensions(),
                    t.roi.width,
                    t.roi.height
                ),
            });
        }
        // The box in tile pixels, clipped to the tile.
        let (tx, ty) = (i64::from(t.roi.x), i64::from(t.roi.y));
        let local = PixelBox::new(
            (i64::from(b.x) - tx).max(0),
            (i64::from(b.y) - ty).max(0),
            (i64::from(b.x + b.width) - tx).min(i64::from(t.roi.width)),
            (i64::from(b.y + b.height) - ty).min(i64::from(t.roi.height)),
        );
        let out = segment(&image, local)?;
        drop(image);
        // A single tile writes all of its result; split parts write their cores only.
        let keep = if single { t.roi } else { t.core };
        for y in keep.y..keep.y + keep.height {
            for x in keep.x..keep.x + keep.width {
                let v = out.mask.get_pixel(x - t.roi.x, y - t.roi.y)[0];
                if v != 0 {
                    mask.put_pixel(x, y, image::Luma([255]));
                }
            }
        }
        parts.push((t, out));
    }
    Ok(TiledMask { mask, parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_partition_the_scene_and_tiles_cover_it() {
        for &(w, h, size, overlap) in &[
            (1000, 700, 256, 64),
            (256, 256, 256, 32),
            (100, 50, 256, 32),
            (513, 257, 256, 0),
            (900, 500, 300, 250),
        ] {
            let g = TileGrid::new(w, h, size, overlap).unwrap();
            let mut owners = vec![0u8; (w * h) as usize];
            let mut seen = vec![false; (w * h) as usize];
            for t in g.tiles() {
                assert!(t.roi.x + t.roi.width <= w && t.roi.y + t.roi.height <= h);
                assert!(t.roi.width <= size && t.roi.height <= size);
                // The core lies inside the tile.
                assert!(t.core.x >= t.roi.x && t.core.x + t.core.width <= t.roi.x + t.roi.width);
                assert!(t.core.y >= t.roi.y && t.core.y + t.core.height <= t.roi.y + t.roi.height);
                for y in t.core.y..t.core.y + t.core.height {
                    for x in t.core.x..t.core.x + t.core.width {
                        owners[(y * w + x) as usize] += 1;
                    }
                }
                for y in t.roi.y..t.roi.y + t.roi.height {
                    for x in t.roi.x..t.roi.x + t.roi.width {
                        seen[(y * w + x) as usize] = true;
                    }
                }
            }
            assert!(owners.iter().all(|&c| c == 1), "{w}x{h} {size}/{overlap}");
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn neighbours_overlap_by_at_least_the_overlap() {
        let g = TileGrid::new(1000, 300, 256, 64).unwrap();
        let row: Vec<Tile> = g.tiles().into_iter().filter(|t| t.row == 0).collect();
        assert_eq!(g.dims(), (5, 2));
        for p in row.windows(2) {
            let shared = p[0].roi.x + p[0].roi.width - p[1].roi.x;
            assert!(shared >= 64, "{shared}");
        }
        assert_eq!(row.last().unwrap().roi.x + 256, 1000);
    }

    #[test]
    fn a_box_with_context_inside_one_tile_is_handled_once() {
        let g = TileGrid::new(1000, 1000, 256, 64).unwrap();
        // Box 200..240 with 16 px of context: 184..256 fits tile 0 (0..256) and tile 1 (192..448) only
        // partially: tile 0 holds it.
        match g.plan(PixelBox::new(200, 20, 240, 60), 16).unwrap() {
            TilePlan::Single(t) => assert_eq!((t.col, t.row), (0, 0)),
            other => panic!("{other:?}"),
        }
        // A box straddling the seam with too much context for either tile.
        match g.plan(PixelBox::new(150, 20, 300, 60), 75).unwrap() {
            TilePlan::Split(v) => {
                let cols: Vec<u32> = v.iter().map(|t| t.col).collect();
                assert_eq!(cols, vec![0, 1]);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A textured scene with one elliptic object straddling the seam between tiles 0 and 1.
    fn scene() -> (RgbImage, GrayImage) {
        let (w, h) = (600, 256);
        let mut rng = 12345u32;
        let mut noise = move || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            (rng % 41) as i32 - 20
        };
        let mut truth = GrayImage::new(w, h);
        let image = RgbImage::from_fn(w, h, |x, y| {
            let (dx, dy) = ((f64::from(x) - 224.5) / 60.0, (f64::from(y) - 128.5) / 40.0);
            let inside = dx * dx + dy * dy <= 1.0;
            let base: [i32; 3] = if inside {
                truth.put_pixel(x, y, image::Luma([255]));
                [200, 70, 60]
            } else {
                [70, 120, 80]
            };
            image::Rgb(base.map(|c| (c + noise()).clamp(0, 255) as u8))
        });
        (image, truth)
    }

    fn iou(a: &GrayImage, b: &GrayImage) -> f64 {
        let fg = |v: &u8| *v != 0;
        pslg_metrics::mask_stats_by(a.as_raw(), b.as_raw(), fg, fg)
            .expect("same size")
            .iou()
    }

    #[test]
    fn an_object_across_a_seam_is_merged_without_a_seam() {
        let (image, truth) = scene();
        let seg = BoxSegmenter::new(crate::BoxSegmenterParams::default()).unwrap();
        let grid = TileGrid::new(600, 256, 256, 64).unwrap();
        let bbox = PixelBox::new(160, 86, 290, 172);
        let mut reads = Vec::new();
        let tiled = segment_tiled(&seg, &grid, bbox, |r| {
            reads.push(r);
            Ok(image::imageops::crop_imm(&image, r.x, r.y, r.width, r.height).to_image())
        })
        .unwrap();
        // Split over the two tiles whose cores the box touches (the seam is at x = 224), each read once.
        assert_eq!(reads.len(), 2, "{reads:?}");
        assert_eq!(tiled.parts.len(), 2);
        assert!(tiled.parts.iter().all(|(t, _)| t.core.y == 0 && t.row == 0));
        let whole = seg.segment(&image, bbox).unwrap().mask;
        let (to_truth, to_whole) = (iou(&tiled.mask, &truth), iou(&tiled.mask, &whole));
        assert!(to_truth > 0.95, "IoU with the truth {to_truth}");
        assert!(to_whole > 0.97, "IoU with the untiled result {to_whole}");
        // No seam: the columns either side of the core boundary hold as many object pixels as the truth.
        let column =
            |m: &GrayImage, x: u32| (0..256).filter(|&y| m.get_pixel(x, y)[0] != 0).count();
        for x in 220..229 {
            let (got, want) = (column(&tiled.mask, x), column(&truth, x));
            assert!(got.abs_diff(want) <= 3, "column {x}: {got} vs {want}");
        }
    }

    #[test]
    fn an_object_inside_one_tile_matches_the_untiled_result() {
        let (image, _) = scene();
        let seg = BoxSegmenter::new(crate::BoxSegmenterParams::default()).unwrap();
        // Tiles of 400 px: the box and its context fit the first tile.
        let grid = TileGrid::new(600, 256, 400, 100).unwrap();
        let bbox = PixelBox::new(160, 86, 290, 172);
        let tiled = segment_tiled(&seg, &grid, bbox, |r| {
            Ok(image::imageops::crop_imm(&image, r.x, r.y, r.width, r.height).to_image())
        })
        .unwrap();
        assert_eq!(tiled.parts.len(), 1);
        let whole = seg.segment(&image, bbox).unwrap().mask;
        assert_eq!(iou(&tiled.mask, &whole), 1.0);
    }

    #[test]
    fn bad_grids_are_errors() {
        assert!(TileGrid::new(10, 10, 0, 0).is_err());
        assert!(TileGrid::new(10, 10, 8, 8).is_err());
        assert!(TileGrid::new(0, 10, 8, 2).is_err());
        let g = TileGrid::new(100, 100, 64, 8).unwrap();
        assert!(g.plan(PixelBox::new(200, 200, 300, 300), 4).is_err());
    }
}
