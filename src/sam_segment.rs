//! The full stage 2 of PSLG-SAM: box → CFPG point → SAM (box + point prompt) → MBO refinement of SAM's mask.

use crate::segment::PointMemo;
use crate::{BoxMask, BoxSegmenter, PslgError, StageTimings};
use burn::tensor::backend::Backend;
use image::RgbImage;
use pslg_cfpg::{ForegroundPoint, PixelBox, Roi, clamp_box};
use pslg_core::paste_in_box;
use pslg_sam::{Prediction, Prompt, Sam, SamPredictor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Parameters of [`SamSegmenter`] besides the CFPG / MBO ones (which come from a [`BoxSegmenter`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamSegmenterParams {
    /// MBO's confident interior: SAM's mask eroded by this many pixels (L∞) starts as probable foreground
    /// core; `0` keeps the whole mask.
    pub erode_radius: u8,
    /// Pixels farther than this outside SAM's mask are fixed background; the band in between may flip.
    pub band_radius: u8,
    /// Give SAM the CFPG point as a foreground point besides the box (the PSLG-SAM prompt). `false`: box
    /// only (ablation).
    pub point_prompt: bool,
}

impl Default for SamSegmenterParams {
    fn default() -> Self {
        Self {
            erode_radius: 2,
            band_radius: 6,
            point_prompt: true,
        }
    }
}

/// Box → mask with SAM: [`SamSegmenter::set_image`] encodes an image once, then each
/// [`SamSegmenter::segment`] call runs CFPG on the box, prompts SAM with the box and the CFPG point, keeps
/// SAM's best mask inside the box and — when the [`BoxSegmenter`] has MBO — refines it with MBO initialised
/// from it (`Trimap::from_mask`, outside the box fixed background, the CFPG point's disk fixed foreground).
/// When MBO keeps less than `min_keep_fraction` of SAM's mask, SAM's mask is returned
/// ([`BoxMask::collapsed`]); when SAM's mask is empty, the weight-free box path runs instead.
#[derive(Debug)]
pub struct SamSegmenter<B: Backend> {
    predictor: SamPredictor<B>,
    stages: BoxSegmenter,
    params: SamSegmenterParams,
    image_size: Option<(u32, u32)>,
    decodes: AtomicU64,
}

impl<B: Backend> SamSegmenter<B> {
    /// Combines a loaded SAM with the CFPG / MBO stages of `stages`.
    pub fn new(
        sam: Sam<B>,
        device: B::Device,
        stages: BoxSegmenter,
        params: SamSegmenterParams,
    ) -> Self {
        Self {
            predictor: SamPredictor::new(sam, device),
            stages,
            params,
            image_size: None,
            decodes: AtomicU64::new(0),
        }
    }

    /// The CFPG / MBO stages.
    pub fn stages(&self) -> &BoxSegmenter {
        &self.stages
    }

    /// Encodes `image` (SAM's image encoder, the expensive part); every following [`SamSegmenter::segment`]
    /// call must pass the same image.
    ///
    /// # Errors
    /// [`PslgError::Sam`] for an empty image.
    pub fn set_image(&mut self, image: &RgbImage) -> Result<(), PslgError> {
        self.predictor.set_image(image)?;
        self.image_size = Some(image.dimensions());
        Ok(())
    }

    /// Segments the object in `bbox` (pixels, `x2`/`y2` exclusive) of the image last given to
    /// [`SamSegmenter::set_image`].
    ///
    /// # Errors
    /// [`PslgError::Sam`] when no image (or another size) was set; [`PslgError::Cfpg`] for a degenerate or
    /// outside box; [`PslgError::Mbo`] from the refinement.
    pub fn segment(&self, image: &RgbImage, bbox: PixelBox) -> Result<BoxMask, PslgError> {
        self.segment_with(image, bbox, &self.stages)
    }

    /// [`SamSegmenter::segment`] with other CFPG / MBO stages on the same image encoding: the ablation of
    /// `pslg eval-rrsis --ablation` (`stages` without CFPG prompts SAM with the box alone; without MBO, SAM's
    /// mask inside the box is the result).
    ///
    /// # Errors
    /// As [`SamSegmenter::segment`].
    pub fn segment_with(
        &self,
        image: &RgbImage,
        bbox: PixelBox,
        stages: &BoxSegmenter,
    ) -> Result<BoxMask, PslgError> {
        let roi = self.region(image, bbox)?;
        let (point, mut timings) = stages.cfpg_step(image, bbox)?;
        let t = Instant::now();
        let prediction = self.predict(roi, self.prompt_point(point.as_ref()))?;
        timings.sam = t.elapsed();
        self.refine(image, roi, point, prediction, stages, timings)
    }

    /// Each of `cells` (e.g. the CFPG × MBO ablation grid, `pslg eval-rrsis --ablation`) on the same box, as
    /// [`SamSegmenter::segment_with`] of each would give, but each distinct CFPG configuration runs once and
    /// each distinct SAM prompt is decoded once: the four cells of the grid have two prompts (the box alone,
    /// the box and the CFPG point), one when CFPG falls back to the box centre. Reused steps report zero time.
    pub fn segment_cells(
        &self,
        image: &RgbImage,
        bbox: PixelBox,
        cells: &[BoxSegmenter],
    ) -> Vec<Result<BoxMask, PslgError>> {
        let mut points = PointMemo::default();
        let mut predictions: Vec<(Option<[f32; 2]>, Prediction)> = Vec::new();
        cells
            .iter()
            .map(|stages| -> Result<BoxMask, PslgError> {
                let roi = self.region(image, bbox)?;
                let (point, cfpg) = points.point(stages.cfpg.as_ref(), image, bbox)?;
                let mut timings = StageTimings {
                    cfpg,
                    ..StageTimings::default()
                };
                let key = self.prompt_point(point.as_ref());
                let prediction = match predictions.iter().find(|(k, _)| *k == key) {
                    Some((_, p)) => p.clone(),
                    None => {
                        let t = Instant::now();
                        let p = self.predict(roi, key)?;
                        timings.sam = t.elapsed();
                        predictions.push((key, p.clone()));
                        p
                    }
                };
                self.refine(image, roi, point, prediction, stages, timings)
            })
            .collect()
    }

    /// SAM decoder runs so far (every [`SamSegmenter::segment`] / `segment_with` call, each distinct prompt
    /// of a [`SamSegmenter::segment_cells`] call): for speed reports.
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    /// The box clamped to the encoded image, after checking that `image` is the one encoded.
    fn region(&self, image: &RgbImage, bbox: PixelBox) -> Result<Roi, PslgError> {
        let (w, h) = image.dimensions();
        match self.image_size {
            None => return Err(PslgError::Sam(pslg_sam::SamError::NoImage)),
            Some(encoded) if encoded != (w, h) => {
                return Err(PslgError::Sam(pslg_sam::SamError::ImageMismatch {
                    encoded,
                    given: (w, h),
                }));
            }
            Some(_) => {}
        }
        Ok(clamp_box(bbox, w, h)?)
    }

    /// The point SAM is prompted with: the CFPG point when the point prompt is on and CFPG did not fall back.
    fn prompt_point(&self, point: Option<&ForegroundPoint>) -> Option<[f32; 2]> {
        point
            .filter(|_| self.params.point_prompt)
            .and_then(ForegroundPoint::prompt_xy)
    }

    /// One decoder run: the box of `roi` and `point`.
    fn predict(&self, roi: Roi, point: Option<[f32; 2]>) -> Result<Prediction, PslgError> {
        self.decodes.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .predictor
            .predict(&Prompt::for_region(roi, point), false)?)
    }

    /// SAM's mask inside the box, then MBO from it when `stages` has MBO (SAM's mask when MBO collapses, the
    /// box path when SAM found nothing).
    fn refine(
        &self,
        image: &RgbImage,
        roi: Roi,
        point: Option<ForegroundPoint>,
        prediction: Prediction,
        stages: &BoxSegmenter,
        mut timings: StageTimings,
    ) -> Result<BoxMask, PslgError> {
        let (w, h) = image.dimensions();
        let t = Instant::now();
        // SAM's mask inside the box (the referring box bounds the object, as in the box path).
        let (sam_mask, sam_area) = paste_in_box(&prediction.best_mask(), (0, 0), roi, (w, h));
        timings.sam += t.elapsed();

        let Some(refiner) = &stages.mbo else {
            return Ok(BoxMask {
                sam: Some(prediction),
                mask: sam_mask,
                roi,
                point,
                refinement: None,
                collapsed: false,
                choice: None,
                timings,
            });
        };
        if sam_area == 0 {
            // SAM found nothing: the weight-free path from the box (with the CFPG point already found).
            let mut out = stages.segment_at(image, roi, point, timings)?;
            out.sam = Some(prediction);
            return Ok(out);
        }
        let t = Instant::now();
        let init = (&sam_mask, self.params.erode_radius, self.params.band_radius);
        let refined = stages.refine_in_context(refiner, image, roi, point.as_ref(), Some(init))?;
        timings.mbo = t.elapsed();
        // MBO collapsing far below SAM's mask (inside the box) is GrabCut's failure mode: keep SAM's mask.
        Ok(refined.keep_or_fallback(
            stages.params().min_keep_fraction,
            sam_area,
            || sam_mask,
            point,
            Some(prediction),
            timings,
        ))
    }
}
