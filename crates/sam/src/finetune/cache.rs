//! The image-embedding cache and the examples a run trains on.

use super::FinetuneError;
use crate::{Prompt, Sam, SamPredictor};
use burn::tensor::backend::Backend;
use image::RgbImage;
use pslg_core::{PixelBox, Roi, clamp_box, mask_box};
use pslg_datasets::{DatasetError, rrsis::RefSample};
use std::path::{Path, PathBuf};

/// One training or validation example: a sample, its cached image embedding and its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderExample {
    /// The dataset sample (its mask is read on demand).
    pub sample: RefSample,
    /// The cached embedding file.
    pub embedding: PathBuf,
    /// The box prompt, clamped to the image.
    pub roi: Roi,
    /// The SAM prompt (box, and the CFPG point when CFPG found one).
    pub prompt: Prompt,
}

/// Image embeddings on disk, one `.npy` (+ `.json` sizes) per image, named after the image file and a hash
/// of its path: computed once, reused by every epoch and every later run on the same model.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

impl EmbeddingCache {
    /// A cache in `dir` (created when needed). Use one folder per SAM checkpoint.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache file of `image`.
    pub fn path_for(&self, image: &Path) -> PathBuf {
        // FNV-1a over the path: stable across runs and Rust versions (unlike std's hasher).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in image.to_string_lossy().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let stem: String = image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        self.dir.join(format!("{stem}-{h:016x}.npy"))
    }

    /// Builds the examples of `samples`: encodes every image not yet cached with `sam` (each once), and
    /// asks `point` for each sample's foreground point prompt given the image and the ground-truth box (the
    /// CFPG point of inference; `Ok(None)` prompts with the box alone). `progress` is called after each
    /// sample.
    ///
    /// # Errors
    /// [`FinetuneError::Raster`] / [`FinetuneError::Dataset`] for unreadable data or a mask of another size
    /// than its image, [`FinetuneError::Sam`] when the cache cannot be written, [`FinetuneError::Point`] when
    /// `point` fails; a sample with an empty mask has no box and is an error too ([`FinetuneError::Dataset`]).
    pub fn prepare<B: Backend, E>(
        &self,
        sam: &Sam<B>,
        device: &B::Device,
        samples: &[RefSample],
        mut point: impl FnMut(&RgbImage, PixelBox) -> Result<Option<[f32; 2]>, E>,
        mut progress: impl FnMut(),
    ) -> Result<Vec<DecoderExample>, FinetuneError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        std::fs::create_dir_all(&self.dir).map_err(|e| FinetuneError::Files {
            path: self.dir.clone(),
            reason: format!("cannot create the embedding cache: {e}"),
        })?;
        let mut predictor = SamPredictor::new(sam.clone(), device.clone());
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by(|&a, &b| samples[a].image.cmp(&samples[b].image));
        let mut out: Vec<Option<DecoderExample>> = vec![None; samples.len()];
        let mut current: Option<(PathBuf, RgbImage)> = None;
        for i in order {
            let s = &samples[i];
            let file = self.path_for(&s.image);
            let need_image = current.as_ref().is_none_or(|(p, _)| p != &s.image);
            if need_image {
                let image = pslg_geo::raster::load_rgb(&s.image)?;
                if !file.is_file() {
                    predictor.set_image(&image)?;
                    predictor.embedding()?.save(&file)?;
                }
                current = Some((s.image.clone(), image));
            }
            let Some((_, image)) = current.as_ref() else {
                continue;
            };
            let gt = s.mask()?;
            let dataset_err = |reason: String| {
                FinetuneError::Dataset(DatasetError::Dataset {
                    path: s.image.clone(),
                    record: s.id.clone(),
                    reason,
                })
            };
            if gt.dimensions() != image.dimensions() {
                return Err(dataset_err(format!(
                    "the mask is {:?} but the image is {:?} (width, height)",
                    gt.dimensions(),
                    image.dimensions()
                )));
            }
            let bbox = mask_box(&gt).ok_or_else(|| {
                dataset_err("the ground-truth mask is empty: no box to prompt".into())
            })?;
            let roi = clamp_box(bbox, image.width(), image.height())?;
            let xy = point(image, bbox).map_err(|e| FinetuneError::Point(e.into()))?;
            out[i] = Some(DecoderExample {
                sample: s.clone(),
                embedding: file,
                roi,
                prompt: Prompt::for_region(roi, xy),
            });
            progress();
        }
        Ok(out.into_iter().flatten().collect())
    }
}
