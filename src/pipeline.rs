//! The PSLG-SAM pipeline end to end: sentence → box (LQVG) → CFPG point → SAM (box + point) → MBO.

use crate::{
    BoxMask, BoxSegmenter, BoxSegmenterParams, PslgError, SamSegmenter, SamSegmenterParams,
};
use burn::tensor::backend::Backend;
use image::RgbImage;
use pslg_cfpg::PixelBox;
use pslg_grounding::{Grounder, Grounding};
use pslg_sam::Sam;
use std::time::{Duration, Instant};

/// Builds a [`Pipeline`]: every stage is optional except the box → mask core (CFPG and MBO can be turned
/// off; without SAM the weight-free path runs; without grounding the caller gives boxes).
pub struct PipelineBuilder<B: Backend> {
    device: B::Device,
    grounder: Option<Grounder<B>>,
    sam: Option<(Sam<B>, SamSegmenterParams)>,
    params: BoxSegmenterParams,
}

impl<B: Backend> PipelineBuilder<B> {
    /// Default CFPG and MBO parameters, no grounding, no SAM, on `device`.
    pub fn new(device: B::Device) -> Self {
        Self {
            device,
            grounder: None,
            sam: None,
            params: BoxSegmenterParams::default(),
        }
    }

    /// Stage 1: a grounding model (sentence → box).
    pub fn grounding(mut self, grounder: Grounder<B>) -> Self {
        self.grounder = Some(grounder);
        self
    }

    /// SAM between CFPG and MBO.
    pub fn sam(mut self, sam: Sam<B>, params: SamSegmenterParams) -> Self {
        self.sam = Some((sam, params));
        self
    }

    /// CFPG and MBO parameters (`cfpg: None` / `mbo: None` turn the stages off).
    pub fn params(mut self, params: BoxSegmenterParams) -> Self {
        self.params = params;
        self
    }

    /// Validates the parameters and assembles the pipeline.
    ///
    /// # Errors
    /// [`PslgError`] for invalid CFPG / MBO parameters.
    pub fn build(self) -> Result<Pipeline<B>, PslgError> {
        let stages = BoxSegmenter::new(self.params)?;
        let sam = self
            .sam
            .map(|(sam, p)| SamSegmenter::new(sam, self.device.clone(), stages.clone(), p));
        Ok(Pipeline {
            grounder: self.grounder,
            sam,
            stages,
            image: None,
        })
    }
}

/// Everything one referring expression produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOutput {
    /// The grounding (box in image pixels, score, every query).
    pub grounding: Grounding,
    /// The grounding box as whole pixels (`x2`/`y2` exclusive) clamped to the image: the box prompt.
    pub bbox: PixelBox,
    /// Stage 2's result: mask, CFPG point, SAM prediction, MBO refinement, per-stage timings.
    pub mask: BoxMask,
    /// Time of the grounding forward pass.
    pub grounding_time: Duration,
}

/// Sentence (or box) → mask. [`Pipeline::set_image`] encodes an image once for SAM; then
/// [`Pipeline::segment_text`] / [`Pipeline::segment_box`] serve any number of expressions on it.
pub struct Pipeline<B: Backend> {
    grounder: Option<Grounder<B>>,
    sam: Option<SamSegmenter<B>>,
    stages: BoxSegmenter,
    image: Option<(u32, u32)>,
}

impl<B: Backend> Pipeline<B> {
    /// Starts a builder.
    pub fn builder(device: B::Device) -> PipelineBuilder<B> {
        PipelineBuilder::new(device)
    }

    /// Whether SAM runs in stage 2.
    pub fn has_sam(&self) -> bool {
        self.sam.is_some()
    }

    /// Prepares `image` for the following calls: SAM's image encoding (the expensive part), once per image.
    /// Returns the time it took (zero without SAM).
    ///
    /// # Errors
    /// [`PslgError::Sam`] for an empty image.
    pub fn set_image(&mut self, image: &RgbImage) -> Result<Duration, PslgError> {
        let t = Instant::now();
        if let Some(sam) = self.sam.as_mut() {
            sam.set_image(image)?;
        }
        self.image = Some(image.dimensions());
        Ok(t.elapsed())
    }

    /// Stage 1 alone: the grounding of `text` and its box as whole pixels clamped to the image.
    ///
    /// # Errors
    /// [`PslgError::NoGrounding`] without a grounding model; [`PslgError::Grounding`] for bad text; a box
    /// entirely outside the image is a [`PslgError::Cfpg`] error.
    pub fn ground(&self, image: &RgbImage, text: &str) -> Result<(Grounding, PixelBox), PslgError> {
        let grounder = self.grounder.as_ref().ok_or(PslgError::NoGrounding)?;
        let g = grounder.predict(image, text)?;
        let bbox = pixel_box(g.box_xyxy, image.width(), image.height());
        pslg_cfpg::clamp_box(bbox, image.width(), image.height())?;
        Ok((g, bbox))
    }

    /// Stage 2 on a box (pixels, `x2`/`y2` exclusive) of the image last given to [`Pipeline::set_image`].
    ///
    /// # Errors
    /// [`PslgError`] from the stages; with SAM, [`PslgError::Sam`] when `image` is not the one set.
    pub fn segment_box(&self, image: &RgbImage, bbox: PixelBox) -> Result<BoxMask, PslgError> {
        match &self.sam {
            Some(sam) => sam.segment(image, bbox),
            None => self.stages.segment(image, bbox),
        }
    }

    /// [`Pipeline::segment_box`] with other CFPG / MBO stages (same image encoding): one cell of the
    /// CFPG × MBO ablation.
    ///
    /// # Errors
    /// As [`Pipeline::segment_box`].
    pub fn segment_box_with(
        &self,
        image: &RgbImage,
        bbox: PixelBox,
        stages: &BoxSegmenter,
    ) -> Result<BoxMask, PslgError> {
        match &self.sam {
            Some(sam) => sam.segment_with(image, bbox, stages),
            None => stages.segment(image, bbox),
        }
    }

    /// Each of `cells` on the same box (the CFPG × MBO ablation grid): [`Pipeline::segment_box_with`] of
    /// each, with the CFPG point and each distinct SAM prompt computed once ([`SamSegmenter::segment_cells`],
    /// [`BoxSegmenter::segment_cells`]).
    pub fn segment_box_cells(
        &self,
        image: &RgbImage,
        bbox: PixelBox,
        cells: &[BoxSegmenter],
    ) -> Vec<Result<BoxMask, PslgError>> {
        match &self.sam {
            Some(sam) => sam.segment_cells(image, bbox, cells),
            None => BoxSegmenter::segment_cells(image, bbox, cells),
        }
    }

    /// Whether a grounding model is set (sentences can be segmented).
    pub fn has_grounding(&self) -> bool {
        self.grounder.is_some()
    }

    /// The CFPG / MBO stages the pipeline was built with.
    pub fn stages(&self) -> &BoxSegmenter {
        &self.stages
    }

    /// Sentence → mask on the image last given to [`Pipeline::set_image`].
    ///
    /// # Errors
    /// As [`Pipeline::ground`] and [`Pipeline::segment_box`].
    pub fn segment_text(&self, image: &RgbImage, text: &str) -> Result<PipelineOutput, PslgError> {
        if self.sam.is_some() {
            match self.image {
                None => return Err(PslgError::Sam(pslg_sam::SamError::NoImage)),
                Some(encoded) if encoded != image.dimensions() => {
                    return Err(PslgError::Sam(pslg_sam::SamError::ImageMismatch {
                        encoded,
                        given: image.dimensions(),
                    }));
                }
                Some(_) => {}
            }
        }
        let t = Instant::now();
        let (grounding, bbox) = self.ground(image, text)?;
        let grounding_time = t.elapsed();
        let mask = self.segment_box(image, bbox)?;
        Ok(PipelineOutput {
            grounding,
            bbox,
            mask,
            grounding_time,
        })
    }
}

/// A box in float pixels (corners, as grounding outputs) → whole pixels covering it, clamped to the image
/// (`x2`/`y2` exclusive). Non-finite coordinates give an empty box at the origin.
pub fn pixel_box(b: [f32; 4], width: u32, height: u32) -> PixelBox {
    PixelBox::covering(b, width, height)
}
