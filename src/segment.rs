//! The weight-free box → mask path: CFPG point → MBO refinement (stage 2 of PSLG-SAM without SAM).

use crate::PslgError;
use crate::choice::{Attempt, Candidate, Choice, Tightness};
use crate::cleanup::{close_in_box, fill_holes};
use image::{GrayImage, Luma, RgbImage};
use pslg_cfpg::{CfpgParams, ForegroundPoint, ForegroundPointGenerator, PixelBox, Roi, clamp_box};
use pslg_core::paste_in_box;
use pslg_mbo::{MaskRefiner, MboParams, Refinement, Trimap};
use std::time::{Duration, Instant};

/// Parameters of [`BoxSegmenter`]. Defaults were tuned on the box → mask development set only
/// (`docs/quality.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct BoxSegmenterParams {
    /// Foreground point generator parameters, or `None` to skip CFPG (`--no-cfpg`).
    pub cfpg: Option<CfpgParams>,
    /// Boundary optimisation parameters, or `None` to skip MBO (`--no-mbo`: the mask is the box).
    pub mbo: Option<MboParams>,
    /// Background context around the box given to MBO: `max(min_margin, margin_fraction · longer box side)`
    /// pixels on each side, clamped to the image.
    pub margin_fraction: f64,
    /// Smallest context margin in pixels.
    pub min_margin: u32,
    /// Radius of the hard-foreground disk around the CFPG point, as a fraction of the shorter box side
    /// (at least one pixel).
    pub seed_radius_fraction: f64,
    /// The tightness test of the box path ([`crate::choice`]): an MBO attempt is returned when its mask
    /// crosses at least this fraction of the box's rows and of its columns; otherwise the next attempt runs,
    /// and the box itself is returned when none passes. Valid: [0, 1] (0 = always MBO's first attempt).
    pub min_span: f64,
    /// Smoothness weight γ of a second MBO attempt, run when the first fails the tightness test (`None`: no
    /// retry). A weaker smoothness keeps the thin parts (wings, masts, piers) that a strong one cuts away.
    pub retry_gamma: Option<f64>,
    /// Box path: fill the holes of the chosen MBO mask inside the box ([`crate::cleanup::fill_holes`]).
    pub fill_holes: bool,
    /// Box path: close the chosen MBO mask inside the box ([`crate::cleanup::close_in_box`]) with a disk of
    /// radius `close_fraction` · the box's longer side, at most [`BoxSegmenterParams::max_close_radius`]
    /// pixels (rounded; 0 = no closing). Valid: [0, 1].
    pub close_fraction: f64,
    /// Largest radius of the closing disk in pixels, at most 255.
    pub max_close_radius: u32,
    /// SAM path only: when MBO keeps less than this fraction of SAM's mask, SAM's mask is returned instead
    /// (GrabCut's collapse on small, low-contrast objects).
    pub min_keep_fraction: f64,
    /// Boxes with more pixels than this are refined on a context crop downscaled (bilinear) so that the box
    /// has about this many pixels; the mask is upscaled back (bilinear, threshold ½). Bounds the cost of MBO
    /// on large objects, where a one-pixel boundary error at the coarse scale costs little IoU. 0 = never.
    pub max_mbo_box_pixels: usize,
    /// MBO stops its rounds once less than this fraction of its initial foreground (the box, or SAM's mask) is
    /// still foreground (it sets [`MboParams::abandon_below`]): such a mask spans too little of the box to
    /// pass the tightness test, so its remaining rounds are wasted. 0 = never stop early. Valid: [0, 1].
    pub abandon_below: f64,
}

impl Default for BoxSegmenterParams {
    fn default() -> Self {
        Self {
            cfpg: Some(CfpgParams::default()),
            // 4-connected smoothness with γ 30 (then 6) rather than GrabCut's 8-connected γ 50: chosen by
            // cross-validation over the dev set's images together with the tightness test; about the same
            // quality as 8-connected γ 15 (then 3) in 0.7× the time (docs/quality.md).
            mbo: Some(MboParams {
                gamma: 30.0,
                eight_connected: false,
                ..MboParams::default()
            }),
            // The context margin, the seed radius and the tightness threshold were chosen with γ by
            // cross-validation over the dev set's images (docs/quality.md).
            margin_fraction: 0.25,
            min_margin: 16,
            seed_radius_fraction: 0.03,
            // Re-tuned with the closing in place (docs/quality.md, fourth step): both halves pick 0.8; the
            // retry's γ 6 is h0's choice and the best on the whole set and on the SpaceNet scene (a weaker
            // one, 2–4, makes noisy masks on single-band imagery).
            min_span: 0.8,
            retry_gamma: Some(6.0),
            fill_holes: true,
            // Chosen by cross-validation over the dev set's images (docs/quality.md, scripts/tune_closing.py).
            close_fraction: 0.1,
            max_close_radius: 15,
            min_keep_fraction: 0.25,
            max_mbo_box_pixels: 0,
            // Off: at γ 30 few masks collapse, and stopping early saved no time on the dev set.
            abandon_below: 0.0,
        }
    }
}

/// Time spent in each stage of one [`BoxSegmenter::segment`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    /// Foreground point generation.
    pub cfpg: Duration,
    /// Boundary optimisation (trimap, mixtures, cuts).
    pub mbo: Duration,
    /// SAM's prompt encoder, mask decoder and post-processing (the image encoding is done once per image,
    /// outside; see [`crate::SamSegmenter::set_image`]).
    pub sam: Duration,
}

/// Output of [`BoxSegmenter::segment`].
#[derive(Debug, Clone, PartialEq)]
pub struct BoxMask {
    /// The mask, 0/255, the image's size.
    pub mask: GrayImage,
    /// The box clamped to the image.
    pub roi: Roi,
    /// The CFPG point and its intermediate maps (when CFPG ran).
    pub point: Option<ForegroundPoint>,
    /// MBO's result on the context crop (when MBO ran).
    pub refinement: Option<Refinement>,
    /// Whether MBO's result was rejected and the box (box path) or SAM's mask (SAM path) was returned
    /// instead; [`BoxMask::choice`] says why.
    pub collapsed: bool,
    /// Which candidate was returned and why (when MBO ran).
    pub choice: Option<Choice>,
    /// Per-stage timings.
    pub timings: StageTimings,
    /// SAM's prediction (low-resolution and full-size logits, predicted IoU) when SAM ran.
    pub sam: Option<pslg_sam::Prediction>,
}

/// Box prompt → mask without any trained weights: CFPG gives a foreground point; MBO runs GrabCut-style from
/// the box (rect initialisation on a context crop, the point's neighbourhood as hard foreground).
#[derive(Debug, Clone)]
pub struct BoxSegmenter {
    params: BoxSegmenterParams,
    pub(crate) cfpg: Option<ForegroundPointGenerator>,
    pub(crate) mbo: Option<MaskRefiner>,
    /// The box path's second attempt ([`BoxSegmenterParams::retry_gamma`]).
    retry: Option<MaskRefiner>,
}

impl BoxSegmenter {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`PslgError::Cfpg`] / [`PslgError::Mbo`] for invalid stage parameters, [`PslgError::InvalidParam`] for
    /// the others.
    pub fn new(params: BoxSegmenterParams) -> Result<Self, PslgError> {
        let bad = |name: &'static str, value: f64| {
            Err(PslgError::InvalidParam {
                name,
                value: value.to_string(),
            })
        };
        if !(0.0..=4.0).contains(&params.margin_fraction) {
            return bad("margin_fraction", params.margin_fraction);
        }
        if !(0.0..=1.0).contains(&params.seed_radius_fraction) {
            return bad("seed_radius_fraction", params.seed_radius_fraction);
        }
        if !(0.0..=1.0).contains(&params.min_keep_fraction) {
            return bad("min_keep_fraction", params.min_keep_fraction);
        }
        if !(0.0..=1.0).contains(&params.min_span) {
            return bad("min_span", params.min_span);
        }
        if let Some(g) = params.retry_gamma
            && !(g.is_finite() && g >= 0.0)
        {
            return bad("retry_gamma", g);
        }
        if !(0.0..=1.0).contains(&params.close_fraction) {
            return bad("close_fraction", params.close_fraction);
        }
        if params.max_close_radius > u32::from(u8::MAX) {
            return bad("max_close_radius", f64::from(params.max_close_radius));
        }
        let cfpg = params.cfpg.clone().map(CfpgParams::build).transpose()?;
        if !(0.0..=1.0).contains(&params.abandon_below) {
            return bad("abandon_below", params.abandon_below);
        }
        let abandon_below = params.abandon_below;
        let mbo = params
            .mbo
            .clone()
            .map(|m| MboParams { abandon_below, ..m }.build())
            .transpose()?;
        let retry = match (&params.mbo, params.retry_gamma) {
            (Some(m), Some(gamma)) => Some(
                MboParams {
                    gamma,
                    abandon_below,
                    ..m.clone()
                }
                .build()?,
            ),
            _ => None,
        };
        Ok(Self {
            params,
            cfpg,
            mbo,
            retry,
        })
    }

    /// The foreground point prompt SAM gets for `bbox`: the CFPG point, `None` without CFPG or when CFPG
    /// fell back to the box centre (the PSLG-SAM prompt is then the box alone).
    ///
    /// # Errors
    /// [`PslgError::Cfpg`] for a degenerate or outside box.
    pub fn sam_point(
        &self,
        image: &RgbImage,
        bbox: PixelBox,
    ) -> Result<Option<[f32; 2]>, PslgError> {
        Ok(match &self.cfpg {
            Some(g) => g.generate(image, bbox)?.prompt_xy(),
            None => None,
        })
    }

    /// The validated parameters.
    pub fn params(&self) -> &BoxSegmenterParams {
        &self.params
    }

    /// The radius of the closing for a box ([`BoxSegmenterParams::close_fraction`]): rounded, at most
    /// [`BoxSegmenterParams::max_close_radius`].
    pub fn closing_radius(&self, roi: Roi) -> u8 {
        let longer = f64::from(roi.width.max(roi.height));
        let r = (self.params.close_fraction * longer).round();
        // Validation keeps max_close_radius ≤ 255.
        r.min(f64::from(self.params.max_close_radius)) as u8
    }

    /// Background context MBO takes around a box whose longer side is `side` pixels:
    /// `max(min_margin, margin_fraction · side)` on each side (before clamping to the image).
    pub fn context_margin(&self, side: u32) -> u32 {
        ((self.params.margin_fraction * f64::from(side)) as u32).max(self.params.min_margin)
    }

    /// The context crop MBO works on around `roi` in a `w × h` image: [`Self::context_margin`] on each side,
    /// clamped to the image.
    pub(crate) fn context_crop(&self, roi: Roi, w: u32, h: u32) -> Roi {
        let margin = self.context_margin(roi.width.max(roi.height));
        let (x0, y0) = (roi.x.saturating_sub(margin), roi.y.saturating_sub(margin));
        let x1 = (roi.x + roi.width).saturating_add(margin).min(w);
        let y1 = (roi.y + roi.height).saturating_add(margin).min(h);
        Roi {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        }
    }

    /// Segments the object in `bbox` (pixels, `x2`/`y2` exclusive; clamped to the image).
    ///
    /// # Errors
    /// [`PslgError::Cfpg`] for an empty image or a degenerate / outside box.
    pub fn segment(&self, image: &RgbImage, bbox: PixelBox) -> Result<BoxMask, PslgError> {
        let roi = clamp_box(bbox, image.width(), image.height())?;
        let (point, timings) = self.cfpg_step(image, bbox)?;
        self.segment_at(image, roi, point, timings)
    }

    /// CFPG on `bbox` when these stages have it: the point, and the timings with its duration.
    pub(crate) fn cfpg_step(
        &self,
        image: &RgbImage,
        bbox: PixelBox,
    ) -> Result<(Option<ForegroundPoint>, StageTimings), PslgError> {
        let (point, cfpg) = PointMemo::default().point(self.cfpg.as_ref(), image, bbox)?;
        let timings = StageTimings {
            cfpg,
            ..StageTimings::default()
        };
        Ok((point, timings))
    }

    /// Each of `cells` (e.g. the CFPG × MBO ablation grid) on the same box, as [`BoxSegmenter::segment`]
    /// of each would give, but CFPG runs once per distinct CFPG configuration: cells that share one reuse its
    /// point (their `timings.cfpg` is then zero).
    pub fn segment_cells(
        image: &RgbImage,
        bbox: PixelBox,
        cells: &[BoxSegmenter],
    ) -> Vec<Result<BoxMask, PslgError>> {
        let mut points = PointMemo::default();
        cells
            .iter()
            .map(|cell| -> Result<BoxMask, PslgError> {
                let roi = clamp_box(bbox, image.width(), image.height())?;
                let (point, cfpg) = points.point(cell.cfpg.as_ref(), image, bbox)?;
                let timings = StageTimings {
                    cfpg,
                    ..StageTimings::default()
                };
                cell.segment_at(image, roi, point, timings)
            })
            .collect()
    }

    /// The box path after CFPG: the box itself without MBO, else MBO from the box (back to the box when it
    /// collapses).
    pub(crate) fn segment_at(
        &self,
        image: &RgbImage,
        roi: Roi,
        point: Option<ForegroundPoint>,
        mut timings: StageTimings,
    ) -> Result<BoxMask, PslgError> {
        let (w, h) = image.dimensions();
        let box_mask = || {
            let mut m = GrayImage::new(w, h);
            for y in roi.y..roi.y + roi.height {
                for x in roi.x..roi.x + roi.width {
                    m.put_pixel(x, y, Luma([255]));
                }
            }
            m
        };
        let Some(refiner) = &self.mbo else {
            return Ok(BoxMask {
                sam: None,
                mask: box_mask(),
                roi,
                point,
                refinement: None,
                collapsed: false,
                choice: None,
                timings,
            });
        };

        // The tightness test (crate::choice): the first attempt that spans the box, else the box.
        let t = Instant::now();
        let mut attempts = Vec::new();
        let mut attempt = |r: &MaskRefiner| -> Result<(Refined, bool), PslgError> {
            let refined = self.refine_in_context(r, image, roi, point.as_ref(), None)?;
            let tightness = Tightness::of(&refined.mask, roi);
            attempts.push(Attempt {
                gamma: r.params().gamma,
                tightness,
            });
            Ok((refined, tightness.span() >= self.params.min_span))
        };
        let (mut refined, mut passed) = attempt(refiner)?;
        let mut k = 0;
        if let (false, Some(retry)) = (passed, &self.retry) {
            (refined, passed) = attempt(retry)?;
            k = 1;
        }
        if passed && self.params.fill_holes {
            fill_holes(&mut refined.mask, roi);
        }
        let closing_radius = if passed { self.closing_radius(roi) } else { 0 };
        close_in_box(&mut refined.mask, roi, closing_radius);
        timings.mbo = t.elapsed();
        let choice = Choice {
            chosen: if passed {
                Candidate::Mbo(k)
            } else {
                Candidate::Box
            },
            attempts,
            threshold: self.params.min_span,
            closing_radius,
        };
        Ok(refined.into_result((!passed).then(box_mask), point, None, choice, timings))
    }
}

/// The CFPG points of one box under the configurations met so far: cells of an ablation grid that share a
/// CFPG configuration share its point.
#[derive(Debug, Default)]
pub(crate) struct PointMemo<'a> {
    done: Vec<(&'a ForegroundPointGenerator, ForegroundPoint)>,
}

impl<'a> PointMemo<'a> {
    /// The point of `generator` on `bbox` (`None` without CFPG) and the time it took (zero when reused).
    pub(crate) fn point(
        &mut self,
        generator: Option<&'a ForegroundPointGenerator>,
        image: &RgbImage,
        bbox: PixelBox,
    ) -> Result<(Option<ForegroundPoint>, Duration), PslgError> {
        let Some(g) = generator else {
            return Ok((None, Duration::ZERO));
        };
        if let Some((_, p)) = self.done.iter().find(|(h, _)| *h == g) {
            return Ok((Some(p.clone()), Duration::ZERO));
        }
        let t = Instant::now();
        let p = g.generate(image, bbox)?;
        self.done.push((g, p.clone()));
        Ok((Some(p), t.elapsed()))
    }
}

impl BoxSegmenter {
    /// Stage 2's MBO run shared by the box path and the SAM path: MBO on the box's context crop
    /// ([`BoxSegmenter::context_margin`]), downscaled (bilinear) when the box has more than
    /// `max_mbo_box_pixels` pixels, initialised from the box (`init` = `None`: outside the box background,
    /// inside probably foreground) or from a mask of the image (`Some((mask, erode, band))`:
    /// [`Trimap::from_mask`], outside the box background), with the hard-foreground disk at the CFPG
    /// point; the result is upscaled to the crop and pasted inside the box. Returns the image-sized mask, its
    /// foreground pixel count and MBO's refinement (on the possibly downscaled crop).
    pub(crate) fn refine_in_context(
        &self,
        refiner: &MaskRefiner,
        image: &RgbImage,
        roi: Roi,
        point: Option<&ForegroundPoint>,
        init: Option<(&GrayImage, u8, u8)>,
    ) -> Result<Refined, PslgError> {
        let (w, h) = image.dimensions();
        let ctx = self.context_crop(roi, w, h);
        let (cx0, cy0, crop_w, crop_h) = (ctx.x, ctx.y, ctx.width, ctx.height);
        let mut crop = image::imageops::crop_imm(image, cx0, cy0, crop_w, crop_h).to_image();
        let max_px = self.params.max_mbo_box_pixels;
        let scale = if max_px > 0 && roi.area() > max_px {
            (max_px as f64 / roi.area() as f64).sqrt()
        } else {
            1.0
        };
        let sc = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
        if scale < 1.0 {
            crop = image::imageops::resize(
                &crop,
                sc(crop_w),
                sc(crop_h),
                image::imageops::FilterType::Triangle,
            );
        }
        // The box inside the (scaled) crop.
        let inner = Roi {
            x: sc(roi.x - cx0).min(crop.width() - 1),
            y: sc(roi.y - cy0).min(crop.height() - 1),
            width: sc(roi.width),
            height: sc(roi.height),
        };
        let inner = Roi {
            x: if roi.x == cx0 { 0 } else { inner.x },
            y: if roi.y == cy0 { 0 } else { inner.y },
            ..inner
        };
        let mut trimap = match init {
            None => Trimap::from_rect(crop.width(), crop.height(), inner),
            Some((mask, erode, band)) => {
                let mut m = image::imageops::crop_imm(mask, cx0, cy0, crop_w, crop_h).to_image();
                let (mut erode, mut band) = (erode, band);
                if scale < 1.0 {
                    m = image::imageops::resize(
                        &m,
                        crop.width(),
                        crop.height(),
                        image::imageops::FilterType::Nearest,
                    );
                    erode = (f64::from(erode) * scale).round() as u8;
                    band = ((f64::from(band) * scale).round() as u8).max(1);
                }
                let mut t = Trimap::from_mask(&m, erode, band, false);
                // Outside the box is background, as in the box path.
                t.set_background_outside(inner);
                t
            }
        };
        if let Some(p) = point.filter(|p| !p.is_fallback()) {
            let r =
                (self.params.seed_radius_fraction * f64::from(roi.width.min(roi.height)) * scale)
                    .max(1.0);
            trimap.set_foreground_disk(
                (p.x - f64::from(cx0)) * scale,
                (p.y - f64::from(cy0)) * scale,
                r,
            );
        }
        let refinement = refiner.refine(&crop, &trimap)?;
        let (mask, kept) = if scale < 1.0 {
            let mut up = image::imageops::resize(
                &refinement.mask,
                crop_w,
                crop_h,
                image::imageops::FilterType::Triangle,
            );
            for p in up.pixels_mut() {
                p[0] = if p[0] >= 128 { 255 } else { 0 };
            }
            paste_in_box(&up, (cx0, cy0), roi, (w, h))
        } else {
            paste_in_box(&refinement.mask, (cx0, cy0), roi, (w, h))
        };
        Ok(Refined {
            mask,
            kept,
            roi,
            refinement,
            gamma: refiner.params().gamma,
        })
    }
}

/// MBO's result pasted onto the whole image, before the collapse rule.
pub(crate) struct Refined {
    /// MBO's mask inside the box, the image's size.
    mask: GrayImage,
    /// Its foreground pixels.
    kept: usize,
    /// The box clamped to the image.
    roi: Roi,
    /// MBO's result on the context crop.
    refinement: Refinement,
    /// The smoothness weight it ran with.
    gamma: f64,
}

impl Refined {
    /// The stage-2 result: this candidate's mask, or `fallback` (the box, or SAM's mask) when the choice
    /// rejected it ([`BoxMask::collapsed`]).
    pub(crate) fn into_result(
        self,
        fallback: Option<GrayImage>,
        point: Option<ForegroundPoint>,
        sam: Option<pslg_sam::Prediction>,
        choice: Choice,
        timings: StageTimings,
    ) -> BoxMask {
        BoxMask {
            collapsed: fallback.is_some(),
            mask: fallback.unwrap_or(self.mask),
            roi: self.roi,
            point,
            refinement: Some(self.refinement),
            choice: Some(choice),
            timings,
            sam,
        }
    }

    /// The SAM path's rule: MBO's mask, or `fallback()` (SAM's mask) when MBO kept fewer than
    /// `keep_fraction · sam_area` pixels (a collapse).
    pub(crate) fn keep_or_fallback(
        self,
        keep_fraction: f64,
        sam_area: usize,
        fallback: impl FnOnce() -> GrayImage,
        point: Option<ForegroundPoint>,
        sam: Option<pslg_sam::Prediction>,
        timings: StageTimings,
    ) -> BoxMask {
        let attempt = Attempt {
            gamma: self.gamma,
            tightness: Tightness::of(&self.mask, self.roi),
        };
        let kept_enough = (self.kept as f64) >= keep_fraction * sam_area as f64;
        let choice = Choice {
            chosen: if kept_enough {
                Candidate::Mbo(0)
            } else {
                Candidate::SamMask
            },
            attempts: vec![attempt],
            threshold: keep_fraction,
            closing_radius: 0,
        };
        let fallback = (!kept_enough).then(fallback);
        self.into_result(fallback, point, sam, choice, timings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn scene() -> RgbImage {
        RgbImage::from_fn(80, 60, |x, y| {
            let d = (x as f64 - 40.0).powi(2) / 1.5 + (y as f64 - 30.0).powi(2);
            let n = ((x * 5 + y * 3) % 7) as u8;
            if d < 144.0 {
                Rgb([210 + n, 210, 200 + n])
            } else {
                Rgb([60 + n, 70, 50 + n])
            }
        })
    }

    #[test]
    fn segments_an_ellipse_better_than_its_box() {
        let img = scene();
        let seg = BoxSegmenter::new(BoxSegmenterParams::default()).unwrap();
        let out = seg.segment(&img, PixelBox::new(25, 18, 56, 43)).unwrap();
        assert_eq!(out.mask.dimensions(), (80, 60));
        assert!(!out.collapsed);
        let inside = |x: f64, y: f64| (x - 40.0).powi(2) / 1.5 + (y - 30.0).powi(2) < 144.0;
        let (mut i, mut u) = (0, 0);
        for (x, y, p) in out.mask.enumerate_pixels() {
            let g = inside(f64::from(x), f64::from(y));
            i += u32::from(g && p[0] != 0);
            u += u32::from(g || p[0] != 0);
        }
        let iou = f64::from(i) / f64::from(u);
        assert!(iou > 0.9, "IoU {iou}");
    }

    #[test]
    fn ablations_and_bad_boxes() {
        let img = scene();
        let no_mbo = BoxSegmenter::new(BoxSegmenterParams {
            mbo: None,
            ..Default::default()
        })
        .unwrap();
        let out = no_mbo.segment(&img, PixelBox::new(-10, -10, 5, 4)).unwrap();
        assert_eq!(out.mask.pixels().filter(|p| p[0] != 0).count(), 5 * 4);
        let no_cfpg = BoxSegmenter::new(BoxSegmenterParams {
            cfpg: None,
            ..Default::default()
        })
        .unwrap();
        assert!(
            no_cfpg
                .segment(&img, PixelBox::new(25, 18, 56, 43))
                .unwrap()
                .point
                .is_none()
        );
        let seg = BoxSegmenter::new(BoxSegmenterParams::default()).unwrap();
        for b in [
            PixelBox::new(5, 5, 5, 9),
            PixelBox::new(90, 0, 99, 9),
            PixelBox::new(9, 9, 2, 2),
        ] {
            assert!(matches!(seg.segment(&img, b), Err(PslgError::Cfpg(_))));
        }
        for b in [
            PixelBox::new(0, 0, 1, 1),
            PixelBox::new(79, 59, 80, 60),
            PixelBox::new(0, 0, 80, 60),
            PixelBox::new(3, 0, 4, 60),
        ] {
            let out = seg.segment(&img, b).unwrap();
            assert_eq!(out.mask.dimensions(), (80, 60));
        }
        let tiny = RgbImage::from_pixel(1, 7, Rgb([3, 3, 3]));
        assert!(seg.segment(&tiny, PixelBox::new(0, 2, 1, 5)).is_ok());
        assert!(
            BoxSegmenter::new(BoxSegmenterParams {
                min_span: 2.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            BoxSegmenter::new(BoxSegmenterParams {
                abandon_below: -1.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(matches!(
            BoxSegmenter::new(BoxSegmenterParams {
                retry_gamma: Some(f64::NAN),
                ..Default::default()
            }),
            Err(PslgError::InvalidParam {
                name: "retry_gamma",
                ..
            })
        ));
        for (params, name) in [
            (
                BoxSegmenterParams {
                    close_fraction: f64::NAN,
                    ..Default::default()
                },
                "close_fraction",
            ),
            (
                BoxSegmenterParams {
                    max_close_radius: 256,
                    ..Default::default()
                },
                "max_close_radius",
            ),
        ] {
            assert!(matches!(
                BoxSegmenter::new(params),
                Err(PslgError::InvalidParam { name: n, .. }) if n == name
            ));
        }
    }

    #[test]
    fn closing_radius_follows_the_longer_side_up_to_the_cap() {
        let seg = BoxSegmenter::new(BoxSegmenterParams::default()).unwrap();
        let roi = |width, height| Roi {
            x: 0,
            y: 0,
            width,
            height,
        };
        assert_eq!(seg.closing_radius(roi(20, 44)), 4);
        assert_eq!(seg.closing_radius(roi(400, 30)), 15);
        assert_eq!(seg.closing_radius(roi(4, 3)), 0);
    }
}
