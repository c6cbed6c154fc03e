//! The official `SamPredictor` workflow: encode an image once, answer many prompts.

use crate::prompt_encoder::EncodedPrompt;
use crate::resize::{apply_coords, apply_image};
use crate::{DecoderImageCache, Sam, SamError};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::{GrayImage, RgbImage};
use std::path::Path;

/// A prompt in original-image pixel coordinates (as the official predictor takes them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    /// Points `(x, y)` with labels: 1 foreground, 0 background.
    pub points: Vec<([f32; 2], i32)>,
    /// One box `x1, y1, x2, y2`.
    pub bbox: Option<[f32; 4]>,
    /// A low-resolution mask input (logits, `4h × 4w` of the embedding grid, e.g. 256 × 256), typically a
    /// previous prediction's [`Prediction::low_res`] mask: values, height, width.
    pub mask_input: Option<(Vec<f32>, usize, usize)>,
}

impl Prompt {
    /// Adds a point with its label (1 foreground, 0 background).
    pub fn with_point(mut self, xy: [f32; 2], label: i32) -> Self {
        self.points.push((xy, label));
        self
    }

    /// Sets the box.
    pub fn with_box(mut self, bbox: [f32; 4]) -> Self {
        self.bbox = Some(bbox);
        self
    }

    /// The PSLG-SAM prompt of a region: the box of `roi` (a clamped box prompt, `x2`/`y2` exclusive) as the
    /// official predictor takes it (its corner pixels, `x2 − 1`, `y2 − 1`), and the foreground point `point`
    /// (`x, y` pixels; the CFPG point) when there is one.
    ///
    /// # Examples
    /// ```
    /// use pslg_core::Roi;
    /// use pslg_sam::Prompt;
    /// let roi = Roi { x: 10, y: 20, width: 30, height: 40 };
    /// let p = Prompt::for_region(roi, Some([25.0, 35.0]));
    /// assert_eq!(p.bbox, Some([10.0, 20.0, 39.0, 59.0]));
    /// assert_eq!(p.points, vec![([25.0, 35.0], 1)]);
    /// ```
    pub fn for_region(roi: pslg_core::Roi, point: Option<[f32; 2]>) -> Self {
        let (x1, y1) = (roi.x as f32, roi.y as f32);
        let (x2, y2) = ((roi.x + roi.width) as f32, (roi.y + roi.height) as f32);
        let prompt = Self::default().with_box([x1, y1, x2 - 1.0, y2 - 1.0]);
        match point {
            Some(xy) => prompt.with_point(xy, 1),
            None => prompt,
        }
    }

    /// Sets the low-resolution mask input.
    pub fn with_mask_input(mut self, values: Vec<f32>, height: usize, width: usize) -> Self {
        self.mask_input = Some((values, height, width));
        self
    }
}

/// Output of [`SamPredictor::predict`].
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Number of masks `M` (1, or the multimask outputs).
    pub num_masks: usize,
    /// Mask logits at the original size, `M × H × W` row-major.
    pub masks: Vec<f32>,
    /// Original image `(height, width)`.
    pub size: (usize, usize),
    /// Low-resolution logits, `M × 4h × 4w`.
    pub low_res: Vec<f32>,
    /// Low-resolution `(height, width)`.
    pub low_res_size: (usize, usize),
    /// Predicted IoU per mask.
    pub iou: Vec<f32>,
}

impl Prediction {
    /// Index of the mask with the highest predicted IoU.
    pub fn best_index(&self) -> usize {
        self.iou
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    }

    /// Mask `i` as 0/255 (logit > 0), the original size.
    pub fn mask(&self, i: usize) -> GrayImage {
        let (h, w) = self.size;
        let plane = &self.masks[i * h * w..(i + 1) * h * w];
        GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([if plane[y as usize * w + x as usize] > 0.0 {
                255
            } else {
                0
            }])
        })
    }

    /// The mask with the highest predicted IoU, 0/255.
    pub fn best_mask(&self) -> GrayImage {
        self.mask(self.best_index())
    }
}

/// An image embedding with the sizes needed to map prompts and masks: can be saved and loaded so that one
/// encoding serves many queries.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEmbedding {
    /// `(1, C, h, w)` values.
    pub values: Vec<f32>,
    /// Its shape.
    pub shape: [usize; 4],
    /// Original image `(height, width)`.
    pub original_size: (usize, usize),
    /// Resized image `(height, width)` inside the square input.
    pub input_size: (usize, usize),
}

impl ImageEmbedding {
    /// Writes the embedding as a `(1, C, h, w)` float32 `.npy` file and the two sizes in a `.json` file
    /// next to it (same stem).
    ///
    /// # Errors
    /// [`SamError::Npy`] when a file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), SamError> {
        crate::npy::write_f32(path, &self.values, &self.shape)?;
        let meta = format!(
            "{{\"original_size\": [{}, {}], \"input_size\": [{}, {}]}}\n",
            self.original_size.0, self.original_size.1, self.input_size.0, self.input_size.1
        );
        std::fs::write(path.with_extension("json"), meta).map_err(|e| SamError::Npy {
            path: path.with_extension("json"),
            reason: e.to_string(),
        })
    }

    /// Reads what [`ImageEmbedding::save`] wrote.
    ///
    /// # Errors
    /// [`SamError::Npy`] for unreadable or inconsistent files.
    pub fn load(path: &Path) -> Result<Self, SamError> {
        let (values, shape) = crate::npy::read_f32(path)?;
        let bad = |reason: String| SamError::Npy {
            path: path.to_path_buf(),
            reason,
        };
        let shape: [usize; 4] = shape
            .try_into()
            .map_err(|s| bad(format!("shape {s:?} is not (1, C, h, w)")))?;
        let meta_path = path.with_extension("json");
        let meta = std::fs::read_to_string(&meta_path).map_err(|e| SamError::Npy {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        let nums: Vec<usize> = meta
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        if nums.len() != 4 {
            return Err(bad(format!(
                "{} does not hold the two sizes",
                meta_path.display()
            )));
        }
        Ok(Self {
            values,
            shape,
            original_size: (nums[0], nums[1]),
            input_size: (nums[2], nums[3]),
        })
    }
}

/// Encodes an image once ([`SamPredictor::set_image`]) and answers prompts on it
/// ([`SamPredictor::predict`]), like the official `SamPredictor`.
#[derive(Debug)]
pub struct SamPredictor<B: Backend> {
    sam: Sam<B>,
    device: B::Device,
    /// The image-grid position encoding, the same for every prompt.
    dense_pe: Tensor<B, 4>,
    state: Option<Encoded<B>>,
}

/// The current image: its embedding, original `(h, w)` and resized `(h, w)`, and the mask decoder's
/// prompt-independent work on it.
type Encoded<B> = (
    Tensor<B, 4>,
    (usize, usize),
    (usize, usize),
    DecoderImageCache<B>,
);

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

impl<B: Backend> SamPredictor<B> {
    /// A predictor over `sam` on `device`.
    pub fn new(sam: Sam<B>, device: B::Device) -> Self {
        let dense_pe = sam.prompt_encoder.dense_pe(&device);
        Self {
            sam,
            device,
            dense_pe,
            state: None,
        }
    }

    /// The model.
    pub fn model(&self) -> &Sam<B> {
        &self.sam
    }

    /// Resizes (longest side to the model's input, Pillow bilinear), normalises, pads and encodes `image`.
    ///
    /// # Errors
    /// [`SamError::Image`] for an empty image.
    pub fn set_image(&mut self, image: &RgbImage) -> Result<(), SamError> {
        if image.width() == 0 || image.height() == 0 {
            return Err(SamError::Image("the image has no pixels".into()));
        }
        let s = self.sam.config().image_size as u32;
        let resized = apply_image(image, s);
        let input = self.sam.preprocess(&resized, &self.device)?;
        let emb = self.sam.encode(input);
        let cache = self.decoder_cache(&emb);
        self.state = Some((
            emb,
            (image.height() as usize, image.width() as usize),
            (resized.height() as usize, resized.width() as usize),
            cache,
        ));
        Ok(())
    }

    /// The decoder's work on `emb` for prompts without a mask input.
    fn decoder_cache(&self, emb: &Tensor<B, 4>) -> DecoderImageCache<B> {
        self.sam.mask_decoder.image_cache(
            emb.clone(),
            self.dense_pe.clone(),
            self.sam.prompt_encoder.no_mask_dense(),
        )
    }

    /// The current image embedding (to save and reuse).
    ///
    /// # Errors
    /// [`SamError::NoImage`] before `set_image`.
    pub fn embedding(&self) -> Result<ImageEmbedding, SamError> {
        let (emb, original, input, _) = self.state.as_ref().ok_or(SamError::NoImage)?;
        Ok(ImageEmbedding {
            values: to_vec(emb.clone()),
            shape: emb.dims(),
            original_size: *original,
            input_size: *input,
        })
    }

    /// Uses a saved embedding instead of encoding an image.
    ///
    /// # Errors
    /// [`SamError::Image`] when its shape is not this model's.
    pub fn set_embedding(&mut self, e: &ImageEmbedding) -> Result<(), SamError> {
        let g = self.sam.config().grid();
        let want = [1, self.sam.config().prompt_dim, g, g];
        if e.shape != want || e.values.len() != want.iter().product::<usize>() {
            return Err(SamError::Image(format!(
                "embedding of shape {:?} does not fit this model ({want:?})",
                e.shape
            )));
        }
        let t = Tensor::from_data(TensorData::new(e.values.clone(), e.shape), &self.device);
        let cache = self.decoder_cache(&t);
        self.state = Some((t, e.original_size, e.input_size, cache));
        Ok(())
    }

    /// The prompt in the encoder input's frame, validated.
    fn encode_prompt(
        &self,
        prompt: &Prompt,
        original: (usize, usize),
    ) -> Result<EncodedPrompt<B>, SamError> {
        let bad = |m: String| Err(SamError::Prompt(m));
        if prompt.points.is_empty() && prompt.bbox.is_none() && prompt.mask_input.is_none() {
            return bad("give at least one point, a box or a mask input".into());
        }
        let s = self.sam.config().image_size as u32;
        let orig = (original.0 as u32, original.1 as u32);
        let mut out = EncodedPrompt::default();
        if !prompt.points.is_empty() {
            let mut xy = Vec::new();
            let mut labels = Vec::new();
            for &(p, l) in &prompt.points {
                if !p.iter().all(|v| v.is_finite()) {
                    return bad(format!("point {p:?} is not finite"));
                }
                if l != 0 && l != 1 {
                    return bad(format!(
                        "point label {l} must be 1 (foreground) or 0 (background)"
                    ));
                }
                xy.extend(apply_coords(p, orig, s));
                labels.push(l);
            }
            let n = labels.len();
            out.points = Some((
                Tensor::<B, 1>::from_floats(xy.as_slice(), &self.device).reshape([1, n, 2]),
                labels,
            ));
        }
        if let Some(b) = prompt.bbox {
            if !b.iter().all(|v| v.is_finite()) {
                return bad(format!("box {b:?} is not finite"));
            }
            let a = apply_coords([b[0], b[1]], orig, s);
            let c = apply_coords([b[2], b[3]], orig, s);
            out.boxes = Some(
                Tensor::<B, 1>::from_floats([a[0], a[1], c[0], c[1]].as_slice(), &self.device)
                    .reshape([1, 4]),
            );
        }
        if let Some((values, h, w)) = &prompt.mask_input {
            let side = 4 * self.sam.config().grid();
            if (*h, *w) != (side, side) || values.len() != side * side {
                return bad(format!(
                    "mask input is {h}x{w} ({} values); this model takes {side}x{side} low-resolution logits",
                    values.len()
                ));
            }
            out.masks = Some(Tensor::from_data(
                TensorData::new(values.clone(), [1, 1, side, side]),
                &self.device,
            ));
        }
        Ok(out)
    }

    /// Sparse `(1, N, C)` and dense `(1, C, h, w)` prompt embeddings (the prompt encoder's output).
    ///
    /// # Errors
    /// As [`SamPredictor::predict`].
    pub fn prompt_embeddings(
        &self,
        prompt: &Prompt,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 4>), SamError> {
        let (_, original, _, _) = self.state.as_ref().ok_or(SamError::NoImage)?;
        let encoded = self.encode_prompt(prompt, *original)?;
        Ok(self.sam.prompt_encoder.forward(&encoded, &self.device))
    }

    /// Masks for `prompt` on the current image: one mask, or the multimask outputs when `multimask`.
    ///
    /// # Errors
    /// [`SamError::NoImage`] before `set_image`; [`SamError::Prompt`] for an empty or invalid prompt.
    pub fn predict(&self, prompt: &Prompt, multimask: bool) -> Result<Prediction, SamError> {
        let (emb, original, input, cache) = self.state.as_ref().ok_or(SamError::NoImage)?;
        let (sparse, dense) = self.prompt_embeddings(prompt)?;
        let decoder = &self.sam.mask_decoder;
        let (low, iou) = if prompt.mask_input.is_some() {
            let cache = decoder.image_cache(emb.clone(), self.dense_pe.clone(), dense);
            decoder.forward_cached(&cache, sparse, multimask)
        } else {
            decoder.forward_cached(cache, sparse, multimask)
        };
        let [_, m, lh, lw] = low.dims();
        let masks = self.sam.postprocess(low.clone(), *input, *original);
        Ok(Prediction {
            num_masks: m,
            masks: to_vec(masks),
            size: *original,
            low_res: to_vec(low),
            low_res_size: (lh, lw),
            iou: to_vec(iou),
        })
    }
}
