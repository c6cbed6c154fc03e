//! `.npy` files (NumPy's format) of `f32` and `u8` arrays, through the `npyz` crate: the image embedding,
//! low-resolution masks and IoU predictions the CLI writes, and the mask inputs it reads.

use crate::SamError;
use std::path::Path;

fn err(path: &Path, reason: impl std::fmt::Display) -> SamError {
    SamError::Npy {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads a C-order `float32` (or `float64`, converted) array: values and shape.
///
/// # Errors
/// [`SamError::Npy`] when the file cannot be read, is not `.npy`, or holds another dtype.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>), SamError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let npy =
        npyz::NpyFile::new(&bytes[..]).map_err(|e| err(path, format!("not a .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(err(
            path,
            "Fortran-order arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let descr = dtype.descr();
    let values = match descr.trim_matches('\'') {
        "<f4" => npy.into_vec::<f32>().map_err(|e| err(path, e))?,
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(|e| err(path, e))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => return Err(err(path, format!("dtype {other} is not float32/float64"))),
    };
    Ok((values, shape))
}

/// Reads a C-order `uint8` array: values and shape.
///
/// # Errors
/// [`SamError::Npy`] when the file cannot be read, is not `.npy`, or holds another dtype.
pub fn read_u8(path: &Path) -> Result<(Vec<u8>, Vec<usize>), SamError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let npy =
        npyz::NpyFile::new(&bytes[..]).map_err(|e| err(path, format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.dtype().descr().trim_matches('\'') != "|u1" {
        return Err(err(
            path,
            format!("dtype {} is not uint8", npy.dtype().descr()),
        ));
    }
    Ok((npy.into_vec::<u8>().map_err(|e| err(path, e))?, shape))
}

/// Writes a C-order `float32` array of `shape`.
///
/// # Errors
/// [`SamError::Npy`] when the file cannot be written or `values` does not fill `shape`.
pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) -> Result<(), SamError> {
    if shape.iter().product::<usize>() != values.len() {
        return Err(err(
            path,
            format!("{} values do not fill shape {shape:?}", values.len()),
        ));
    }
    let file = std::fs::File::create(path).map_err(|e| err(path, e))?;
    let mut buf = std::io::BufWriter::new(file);
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    use npyz::WriterBuilder as _;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape64)
        .writer(&mut buf)
        .begin_nd()
        .map_err(|e| err(path, e))?;
    w.extend(values.iter().copied()).map_err(|e| err(path, e))?;
    w.finish().map_err(|e| err(path, e))?;
    Ok(())
}
