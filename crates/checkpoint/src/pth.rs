//! PyTorch zip checkpoints (`torch.save` since PyTorch 1.6) read straight into place.
//!
//! burn-store's reader opens the archive again for every tensor, copies each storage through an 8 KiB
//! buffer into a byte vector, then converts it value by value into a second vector: about 2 s for LQVG's
//! 666 MB, where `torch.load` takes 0.5 s. Here the pickle is parsed once (candle's reader of torch pickles,
//! which keeps each tensor's storage file, offset and strides), the archive's entries are located once,
//! and each tensor is read with one read of its bytes into the `f32` vector that becomes the
//! Burn tensor's storage: one copy from the page cache, no intermediate buffer. Tensors stay lazy, so
//! only those a model takes are read. A large tensor's read, and the transpose of a large Linear weight, are
//! split over rayon's threads: most of a fresh process's load is faulting in and filling new pages, which
//! two cores do in about half the time of one.
//!
//! Checkpoints this path does not cover (the pre-1.6 tar/legacy formats, compressed entries, dtypes other
//! than `f32` and `i64`, big-endian hosts) return `None`, and the caller reads them through burn-store as
//! before.

use crate::{CheckpointError, Shapes};
use burn::module::ParamId;
use burn::tensor::{DType, Shape, TensorData};
use burn_store::{ModuleAdapter, PyTorchToBurnAdapter, TensorSnapshot, TensorSnapshotError};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
#[cfg(not(unix))]
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Where one tensor's values lie in the file: the absolute byte offset of element 0 of its view, its
/// shape and its strides (in elements), and the bytes its storage entry holds after that offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    offset: u64,
    shape: Vec<usize>,
    strides: Vec<usize>,
    available: u64,
}

impl Placement {
    /// Elements of the view; `None` when the shape's product overflows (a crafted file).
    fn len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Whether the view is the storage's values in row-major order (then one read fills the tensor).
    fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&dim, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if dim > 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(dim);
        }
        true
    }

    /// Elements of the storage the view spans, from its first one (0 for an empty tensor); `None` when
    /// the arithmetic overflows (a crafted file).
    fn span(&self) -> Option<usize> {
        if self.len()? == 0 {
            return Some(0);
        }
        self.shape
            .iter()
            .zip(&self.strides)
            .try_fold(1usize, |n, (&d, &s)| n.checked_add((d - 1).checked_mul(s)?))
    }

    /// The same values with the axes in reverse order: a 2-D weight as its transpose, without moving data.
    fn reversed(&self) -> Self {
        Self {
            shape: self.shape.iter().rev().copied().collect(),
            strides: self.strides.iter().rev().copied().collect(),
            ..self.clone()
        }
    }
}

/// The checkpoint's file and where each tensor lies in it, shared by the snapshots' readers and the
/// adapter; `scratch` holds the storage span of a strided view between its read and its gather, reused
/// from tensor to tensor so it is paged in once.
struct Source {
    file: File,
    scratch: Mutex<Vec<f32>>,
    placements: HashMap<ParamId, (String, Placement, DType)>,
}

/// The element types this reader reads: `f32` weights and `i64` buffers (BatchNorm's counters, position ids).
trait Element: bytemuck::Pod + Default + Send + Sync {}
impl Element for f32 {}
impl Element for i64 {}

impl Source {
    /// The row-major values of `view`, elements of type `E`.
    fn read<E: Element>(&self, view: &Placement) -> std::io::Result<Vec<E>> {
        let size = std::mem::size_of::<E>();
        // Both the storage span read and the tensor written must fit in what the file holds; a view larger
        // than its storage (a broadcast view) or a crafted shape is refused before anything is allocated.
        let bytes_of = |n: Option<usize>| n.and_then(|n| n.checked_mul(size));
        let (Some(span_bytes), Some(len_bytes)) = (bytes_of(view.span()), bytes_of(view.len()))
        else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "its shape and strides overflow",
            ));
        };
        let needed = span_bytes.max(len_bytes);
        if needed as u64 > view.available {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "it needs {needed} bytes of its storage, the file holds {} (a truncated file?)",
                    view.available
                ),
            ));
        }
        let len = len_bytes / size;
        // The lock also keeps the file position to one reader at a time (where reads are not positioned).
        let mut scratch = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if view.is_contiguous() {
            let mut values = vec![E::default(); len];
            read_at(
                &self.file,
                bytemuck::cast_slice_mut(&mut values),
                view.offset,
            )?;
            return Ok(values);
        }
        // A strided view: its storage span into the scratch buffer (reused, so paged in once), then gathered.
        let words = span_bytes.div_ceil(4);
        if scratch.len() < words {
            scratch.resize(words, 0.0);
        }
        let bytes = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut scratch[..words])[..span_bytes];
        read_at(&self.file, bytes, view.offset)?;
        match bytemuck::try_cast_slice::<u8, E>(bytes) {
            Ok(storage) => Ok(gather(storage, len, &view.shape, &view.strides)),
            // The scratch buffer is only 4-byte aligned: an `i64` view is copied out first.
            Err(_) => Ok(gather(
                &bytemuck::pod_collect_to_vec::<u8, E>(bytes),
                len,
                &view.shape,
                &view.strides,
            )),
        }
    }

    /// A lazy reader of the tensor `id` (as stored, or with its axes reversed).
    fn reader(
        self: &Arc<Self>,
        id: ParamId,
        reversed: bool,
    ) -> Rc<dyn Fn() -> Result<TensorData, TensorSnapshotError>> {
        let source = Arc::clone(self);
        Rc::new(move || {
            let Some((name, placement, dtype)) = source.placements.get(&id) else {
                return Err(TensorSnapshotError::DataError("unknown tensor".into()));
            };
            let view = if reversed {
                placement.reversed()
            } else {
                placement.clone()
            };
            let io =
                |e: std::io::Error| TensorSnapshotError::IoError(format!("tensor `{name}`: {e}"));
            Ok(match dtype {
                DType::I64 => TensorData::new(source.read::<i64>(&view).map_err(io)?, view.shape),
                _ => TensorData::new(source.read::<f32>(&view).map_err(io)?, view.shape),
            })
        })
    }
}

/// Bytes at or above which a read, or a transpose, is split over rayon's threads.
const PARALLEL_BYTES: usize = 1 << 20;

/// Fills `buf` from `file` at `offset`: large buffers in chunks of [`PARALLEL_BYTES`] read by rayon's
/// threads with positioned reads (each thread faults in the pages it fills), small ones with one read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        if buf.len() < 2 * PARALLEL_BYTES {
            return file.read_exact_at(buf, offset);
        }
        buf.par_chunks_mut(PARALLEL_BYTES)
            .enumerate()
            .try_for_each(|(i, chunk)| {
                file.read_exact_at(chunk, offset + (i * PARALLEL_BYTES) as u64)
            })
    }
    #[cfg(not(unix))]
    {
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// `out` (`rows × cols`, row-major) = the transpose of `input` (`cols × rows`, row-major), in bands of 16
/// output rows over rayon's threads. A band is the transpose of 16 input columns: their runs are copied
/// into a small contiguous block (cache-resident), which the `transpose` crate's kernel transposes into
/// place. The crate's kernel takes one whole matrix on one thread; the bands let two threads fill fresh
/// pages at once, and writing a band directly would alias every row of it to the same cache sets.
fn transpose_parallel<E: Copy + Default + Send + Sync>(
    input: &[E],
    out: &mut [E],
    rows: usize,
    cols: usize,
) {
    const BAND: usize = 16;
    out.par_chunks_mut(BAND * cols).enumerate().for_each_init(
        Vec::new,
        |columns: &mut Vec<E>, (band, block)| {
            let r0 = band * BAND;
            let width = block.len() / cols;
            columns.clear();
            for c in 0..cols {
                columns.extend_from_slice(&input[c * rows + r0..c * rows + r0 + width]);
            }
            transpose::transpose(columns, block, width, cols);
        },
    );
}

/// The `n` row-major values of a strided view of `storage` (which holds the view's whole span). The
/// transpose of a row-major matrix (a Linear weight read for Burn) goes through the `transpose` crate's
/// cache-blocked kernel, or [`transpose_parallel`] when large; other views index element by element.
fn gather<E: Copy + Default + Send + Sync>(
    storage: &[E],
    n: usize,
    shape: &[usize],
    strides: &[usize],
) -> Vec<E> {
    let mut out = vec![E::default(); n];
    if let ([rows, cols], [1, s1]) = (shape, strides)
        && s1 == rows
    {
        // The view is the transpose of the `cols × rows` row-major matrix at the start of `storage`.
        if n * std::mem::size_of::<E>() >= 2 * PARALLEL_BYTES {
            transpose_parallel(&storage[..n], &mut out, *rows, *cols);
        } else {
            transpose::transpose(&storage[..n], &mut out, *rows, *cols);
        }
        return out;
    }
    let mut index = vec![0usize; shape.len()];
    for slot in &mut out {
        let at: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        *slot = storage[at];
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// burn-store's PyTorch → Burn adapter (norm parameters renamed, Linear weights transposed), except that a
/// Linear weight of this file is read transposed in one pass ([`Placement::reversed`]) instead of being read,
/// then transposed into a new buffer, then copied again to align it.
#[derive(Clone)]
pub(crate) struct InPlaceAdapter(Arc<Source>);

impl ModuleAdapter for InPlaceAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let linear_weight = snapshot.module_type().as_deref() == Some("Struct:Linear")
            && snapshot
                .path_stack
                .as_ref()
                .and_then(|p| p.last())
                .map(String::as_str)
                == Some("weight")
            && snapshot.shape.len() == 2;
        match snapshot.tensor_id {
            Some(id) if linear_weight && self.0.placements.contains_key(&id) => {
                TensorSnapshot::from_closure(
                    self.0.reader(id, true),
                    snapshot.dtype,
                    Shape::from(snapshot.shape.iter().rev().copied().collect::<Vec<_>>()),
                    snapshot.path_stack.clone().unwrap_or_default(),
                    snapshot.container_stack.clone().unwrap_or_default(),
                    id,
                )
            }
            _ => PyTorchToBurnAdapter.adapt(snapshot),
        }
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The tensors of the PyTorch zip checkpoint at `path` as lazy snapshots named by their state-dict keys
/// (under `top_level`, e.g. `"model"`, for a training checkpoint), with the adapter to apply them through;
/// `None` when the file is not one this reader covers (see the module's documentation).
///
/// # Errors
/// [`CheckpointError::Read`] when the file cannot be opened or a storage entry it names is missing.
pub(crate) fn snapshots(
    path: &Path,
    top_level: Option<&str>,
) -> Result<Option<(Vec<TensorSnapshot>, InPlaceAdapter)>, CheckpointError> {
    let read_err = |reason: String| CheckpointError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let Some(infos) = tensor_infos(path, top_level) else {
        return Ok(None);
    };
    // Other dtypes (half-precision exports), and big-endian hosts, go through burn-store's reader.
    let dtype_of = |d: candle_core::DType| match d {
        candle_core::DType::F32 => Some(DType::F32),
        candle_core::DType::I64 => Some(DType::I64),
        _ => None,
    };
    if cfg!(target_endian = "big") || infos.iter().any(|i| dtype_of(i.dtype).is_none()) {
        return Ok(None);
    }
    let file = File::open(path).map_err(|e| read_err(e.to_string()))?;
    let Some(entries) = stored_entries(&file) else {
        return Ok(None);
    };
    let mut placements = HashMap::with_capacity(infos.len());
    let mut named = Vec::with_capacity(infos.len());
    for info in infos {
        let Some(&(start, size)) = entries.get(&info.path) else {
            return Err(read_err(format!(
                "tensor `{}` names storage `{}`, which the archive does not hold",
                info.name, info.path
            )));
        };
        let byte_offset = info.layout.start_offset() as u64;
        let placement = Placement {
            offset: start + byte_offset,
            shape: info.layout.dims().to_vec(),
            strides: info.layout.stride().to_vec(),
            available: size.saturating_sub(byte_offset),
        };
        let id = ParamId::new();
        let dtype = dtype_of(info.dtype).unwrap_or(DType::F32);
        named.push((id, info.name.clone(), placement.shape.clone(), dtype));
        placements.insert(id, (info.name, placement, dtype));
    }
    let source = Arc::new(Source {
        file,
        scratch: Mutex::new(Vec::new()),
        placements,
    });
    let snapshots = named
        .into_iter()
        .map(|(id, name, shape, dtype)| {
            TensorSnapshot::from_closure(
                source.reader(id, false),
                dtype,
                Shape::from(shape),
                name.split('.').map(str::to_string).collect(),
                Vec::new(),
                id,
            )
        })
        .collect();
    Ok(Some((snapshots, InPlaceAdapter(source))))
}

/// The tensors of the state dict in a PyTorch zip checkpoint (under `top_level` when given), as candle's
/// pickle reader finds them; `None` when it cannot read the file or finds no tensor.
fn tensor_infos(
    path: &Path,
    top_level: Option<&str>,
) -> Option<Vec<candle_core::pickle::TensorInfo>> {
    // The pickle reader may panic deep inside on malformed data; keep that a fallback, not a crash.
    match std::panic::catch_unwind(|| {
        candle_core::pickle::read_pth_tensor_info(path, false, top_level)
    }) {
        Ok(Ok(infos)) if !infos.is_empty() => Some(infos),
        _ => None,
    }
}

/// Key → shape of every tensor of a PyTorch zip checkpoint, and the top-level key the state dict sits under
/// (`"model"` in a training checkpoint beside its optimizer state); `None` when this reader does not cover
/// the file. The training layout is tried first, so the other top-level entries are never read as tensors.
pub(crate) fn shapes(path: &Path) -> Option<Shapes> {
    [Some("model"), None].into_iter().find_map(|top| {
        let infos = tensor_infos(path, top)?;
        let tensors = infos
            .into_iter()
            .map(|i| (i.name, i.layout.dims().to_vec()))
            .collect();
        Some(Shapes {
            tensors,
            top_level: top.map(str::to_string),
        })
    })
}

/// Archive entry name → (absolute offset of its data, its size), or `None` when an entry is compressed
/// (torch.save stores every entry uncompressed) or the archive cannot be read.
fn stored_entries(file: &File) -> Option<HashMap<String, (u64, u64)>> {
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).ok()?;
    let mut entries = HashMap::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).ok()?;
        if entry.compression() != zip::CompressionMethod::Stored {
            return None;
        }
        entries.insert(
            entry.name().to_string(),
            (entry.data_start()?, entry.size()),
        );
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_are_gathered_in_row_major_order() {
        // A 2×3 view of a 3×2 storage, transposed (strides 1, 2).
        let storage = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(
            gather(&storage, 6, &[2, 3], &[1, 2]),
            vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
        );
        // The same through the N-d path: a 1×2×3 view.
        assert_eq!(
            gather(&storage, 6, &[1, 2, 3], &[6, 1, 2]),
            vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
        );
        // A transposed 70×45 matrix spans several tiles.
        let m: Vec<f32> = (0..70 * 45).map(|v| v as f32).collect();
        let t = gather(&m, 70 * 45, &[45, 70], &[1, 45]);
        for i in 0..45 {
            for j in 0..70 {
                assert_eq!(t[i * 70 + j], m[j * 45 + i]);
            }
        }
        let p = Placement {
            offset: 0,
            shape: vec![2, 3],
            strides: vec![1, 2],
            available: 24,
        };
        assert!(!p.is_contiguous());
        assert_eq!(p.span(), Some(6));
        assert!(p.reversed().is_contiguous());
        assert_eq!(p.reversed().shape, vec![3, 2]);
        // Size-1 axes may carry any stride.
        let one = Placement {
            shape: vec![1, 3],
            strides: vec![7, 1],
            ..p
        };
        assert!(one.is_contiguous());
        assert_eq!(one.span(), Some(3));
    }

    #[test]
    fn the_parallel_transpose_matches_the_transpose_crate() {
        // Bands and tiles that do not divide the sides, a single column, a single row.
        for (rows, cols) in [(70, 45), (33, 1), (1, 70), (64, 64), (100, 37)] {
            let m: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut expected = vec![0.0; rows * cols];
            transpose::transpose(&m, &mut expected, rows, cols);
            let mut got = vec![0.0; rows * cols];
            transpose_parallel(&m, &mut got, rows, cols);
            assert_eq!(got, expected, "{rows}×{cols}");
        }
    }

    #[test]
    fn large_reads_are_split_into_positioned_chunks() {
        // Three and a half chunks of bytes at an odd offset: every chunk lands where it belongs.
        let n = 3 * PARALLEL_BYTES + PARALLEL_BYTES / 2;
        let data: Vec<u8> = (0..n + 7).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = vec![0u8; n];
        read_at(&file, &mut buf, 7).unwrap();
        assert!(buf == data[7..]);
        // Past the end of the file is an error, not a short buffer.
        let mut past = vec![0u8; n];
        assert!(read_at(&file, &mut past, 8).is_err());
    }

    #[test]
    fn crafted_and_broadcast_views_are_refused_before_allocating() {
        let huge = Placement {
            offset: 0,
            shape: vec![4, 2],
            strides: vec![usize::MAX / 2, 1],
            available: 32,
        };
        assert_eq!(huge.span(), None);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("storage");
        std::fs::write(&path, [0u8; 32]).expect("write");
        let source = Source {
            file: File::open(&path).expect("open"),
            scratch: Mutex::new(Vec::new()),
            placements: HashMap::new(),
        };
        let err = source.read::<f32>(&huge).expect_err("overflowing strides");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        // 2^40 values broadcast from one stored value: far more than the 32 bytes the file holds.
        let broadcast = Placement {
            shape: vec![1 << 40],
            strides: vec![0],
            ..huge.clone()
        };
        let err = source.read::<f32>(&broadcast).expect_err("broadcast view");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        // A view that fits reads.
        let fits = Placement {
            shape: vec![2, 4],
            strides: vec![1, 2],
            ..huge
        };
        assert_eq!(source.read::<f32>(&fits).expect("fits"), vec![0.0; 8]);
    }
}
