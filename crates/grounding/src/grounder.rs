//! Image + sentence → box: the official LQVG test preprocessing (letterbox to a square with OpenCV's
//! `INTER_AREA`, pad colour, ImageNet normalisation), the model, and the letterbox undone on the box.

use crate::GroundingError;
use crate::cv_resize::resize_inter_area;
use crate::model::{Lqvg, query_scores};
use crate::text::{TextTokenizer, TokenBatch};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::{Rgb, RgbImage};

/// The official pad colour `(123.7, 116.3, 103.5)` as OpenCV stores it in an 8-bit image (rounded half to
/// even).
pub const PAD_COLOUR: [u8; 3] = [124, 116, 104];
/// ImageNet mean (0–1 scale).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (0–1 scale).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The official test input side.
pub const INPUT_SIZE: usize = 800;

/// How an image was letterboxed: `input = original · ratio + (dw, dh)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Scale factor `size / max(w, h)`.
    pub ratio: f64,
    /// Horizontal offset (half the horizontal padding; may be x.5).
    pub dw: f64,
    /// Vertical offset.
    pub dh: f64,
    /// Side of the square input.
    pub size: usize,
}

impl Letterbox {
    /// Maps a box in input pixels back to the original image: `(x − dw) / ratio` (no clipping, as the
    /// official code).
    pub fn undo(&self, b: [f32; 4]) -> [f32; 4] {
        let x = |v: f32| ((f64::from(v) - self.dw) / self.ratio) as f32;
        let y = |v: f32| ((f64::from(v) - self.dh) / self.ratio) as f32;
        [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
    }

    /// Maps a box in original pixels into the input.
    pub fn apply(&self, b: [f32; 4]) -> [f32; 4] {
        let x = |v: f32| (f64::from(v) * self.ratio + self.dw) as f32;
        let y = |v: f32| (f64::from(v) * self.ratio + self.dh) as f32;
        [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
    }
}

/// The official `letterbox`: resize the longer side to `size` (`round(side · ratio)`, Python's
/// half-to-even rounding) with `INTER_AREA`, then pad to a square with [`PAD_COLOUR`] (top/left get
/// `round(d − 0.1)`, bottom/right `round(d + 0.1)`).
///
/// # Errors
/// [`GroundingError::Image`] for an image without pixels.
pub fn letterbox(image: &RgbImage, size: usize) -> Result<(RgbImage, Letterbox), GroundingError> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 || size == 0 {
        return Err(GroundingError::Image(format!(
            "the image is {w}x{h}; it needs at least one pixel"
        )));
    }
    let ratio = size as f64 / w.max(h) as f64;
    let nw = ((w as f64 * ratio).round_ties_even() as usize).clamp(1, size);
    let nh = ((h as f64 * ratio).round_ties_even() as usize).clamp(1, size);
    let dw = (size - nw) as f64 / 2.0;
    let dh = (size - nh) as f64 / 2.0;
    let top = (dh - 0.1).round_ties_even() as u32;
    let left = (dw - 0.1).round_ties_even() as u32;
    let resized = resize_inter_area(image, nw, nh);
    let mut out = RgbImage::from_pixel(size as u32, size as u32, Rgb(PAD_COLOUR));
    image::imageops::replace(&mut out, &resized, i64::from(left), i64::from(top));
    Ok((
        out,
        Letterbox {
            ratio,
            dw,
            dh,
            size,
        },
    ))
}

/// `(1, 3, S, S)`: `(x / 255 − mean) / std` of a letterboxed image.
pub fn normalise<B: Backend>(image: &RgbImage, device: &B::Device) -> Tensor<B, 4> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (x, y, p) in image.enumerate_pixels() {
        for c in 0..3 {
            data[c * w * h + y as usize * w + x as usize] =
                (f32::from(p[c]) / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 3, h, w]), device)
}

/// The official caption normalisation: lower case, whitespace runs collapsed to one space.
pub fn normalise_caption(text: &str) -> String {
    text.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One query's box and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryBox {
    /// `[x1, y1, x2, y2]` in original-image pixels.
    pub box_xyxy: [f32; 4],
    /// Sigmoid of the query's class logit (maximum over classes).
    pub score: f32,
}

/// The grounding of one sentence in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounding {
    /// The chosen query's box `[x1, y1, x2, y2]` in original-image pixels (not clipped to the image).
    pub box_xyxy: [f32; 4],
    /// Its score.
    pub score: f32,
    /// Index of the chosen query (the highest score).
    pub query: usize,
    /// Every query of the last decoder layer.
    pub queries: Vec<QueryBox>,
}

/// LQVG with its tokenizer: [`Grounder::predict`] turns an image and a sentence into a box.
#[derive(Debug)]
pub struct Grounder<B: Backend> {
    model: Lqvg<B>,
    tokenizer: Option<TextTokenizer>,
    device: B::Device,
    input_size: usize,
}

impl<B: Backend> Grounder<B> {
    /// Wraps a loaded model; `tokenizer` is needed for [`Grounder::predict`] (not for
    /// [`Grounder::predict_ids`]).
    pub fn new(model: Lqvg<B>, tokenizer: Option<TextTokenizer>, device: B::Device) -> Self {
        Self {
            model,
            tokenizer,
            device,
            input_size: INPUT_SIZE,
        }
    }

    /// Uses a different square input side than the official 800 (e.g. small test models).
    pub fn with_input_size(mut self, size: usize) -> Self {
        self.input_size = size;
        self
    }

    /// The model.
    pub fn model(&self) -> &Lqvg<B> {
        &self.model
    }

    /// Grounds `text` (normalised as the official dataset code does: lower case, single spaces) in `image`.
    ///
    /// # Errors
    /// [`GroundingError::Text`] for an empty or too long sentence, [`GroundingError::Tokenizer`] without a
    /// tokenizer, [`GroundingError::Image`] for an empty image.
    pub fn predict(&self, image: &RgbImage, text: &str) -> Result<Grounding, GroundingError> {
        let tokenizer = self.tokenizer.as_ref().ok_or_else(|| GroundingError::Tokenizer {
            path: "(none)".into(),
            reason: "no tokenizer was given; pass the tokenizer.json of the text encoder (or token ids)".into(),
        })?;
        let ids = tokenizer.encode(&normalise_caption(text))?;
        self.predict_ids(image, &ids)
    }

    /// Grounds a sentence given as token ids (with the special tokens).
    ///
    /// # Errors
    /// As [`Grounder::predict`].
    pub fn predict_ids(&self, image: &RgbImage, ids: &[u32]) -> Result<Grounding, GroundingError> {
        let pad = self.model.config().text.pad_token_id as u32;
        let tokens = TokenBatch::pad(&[ids.to_vec()], pad)?;
        let (boxed, lb) = letterbox(image, self.input_size)?;
        let input = normalise::<B>(&boxed, &self.device);
        let out = self.model.forward(input, &tokens)?;
        let logits = out
            .logits
            .last()
            .cloned()
            .ok_or_else(|| GroundingError::Config("the model has no decoder layer".into()))?;
        let boxes = out
            .boxes
            .last()
            .cloned()
            .ok_or_else(|| GroundingError::Config("the model has no decoder layer".into()))?;
        let scores = query_scores(logits)
            .into_data()
            .to_vec::<f32>()
            .unwrap_or_default();
        let boxes = boxes.into_data().to_vec::<f32>().unwrap_or_default();
        let s = self.input_size as f32;
        let queries: Vec<QueryBox> = scores
            .iter()
            .zip(boxes.chunks_exact(4))
            .map(|(&score, b)| {
                let (cx, cy, w, h) = (b[0], b[1], b[2], b[3]);
                let xyxy = [
                    (cx - 0.5 * w) * s,
                    (cy - 0.5 * h) * s,
                    (cx + 0.5 * w) * s,
                    (cy + 0.5 * h) * s,
                ];
                QueryBox {
                    box_xyxy: lb.undo(xyxy),
                    score,
                }
            })
            .collect();
        // The first maximum, as torch.max.
        let mut best = 0;
        for (i, q) in queries.iter().enumerate() {
            if q.score > queries[best].score {
                best = i;
            }
        }
        let chosen = queries
            .get(best)
            .copied()
            .ok_or_else(|| GroundingError::Config("the model has no query".into()))?;
        Ok(Grounding {
            box_xyxy: chosen.box_xyxy,
            score: chosen.score,
            query: best,
            queries,
        })
    }
}
