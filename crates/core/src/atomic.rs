//! Crash-safe output files: written under a temporary name in the destination's folder, then renamed into
//! place, so that a reader (or a resumed run) sees either the complete file or none.
//!
//! The temporary name is `.<file name>.partial-<random>`: a process killed mid-write (SIGKILL included)
//! leaves only such a file, which [`remove_partials`] deletes on the next run. The data is not `fsync`ed:
//! the rename makes the file appear whole to every process, and a killed process loses nothing the page
//! cache holds; only a power cut between write-back and rename could leave an empty file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The marker between a file's name and the random suffix of its temporary name.
const PARTIAL: &str = ".partial-";

/// Writes `path` through `write`, which receives a buffered writer on a temporary file in the same folder;
/// the file appears under `path` only once `write` has returned `Ok` and the data is flushed. On error the
/// temporary file is removed and `path` is untouched (an older `path` stays as it was).
///
/// The parent folder must exist.
///
/// # Errors
/// The I/O error of creating, writing, flushing or renaming the file (or the one `write` returns).
pub fn write_atomic<F>(path: &Path, write: F) -> std::io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let prefix = format!(".{}{PARTIAL}", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    // The mode a plain `File::create` gives (0o666 less the umask), not tempfile's private 0o600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let tmp = builder.tempfile_in(dir)?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = BufWriter::new(file);
    // `tmp_path` removes the temporary file when dropped on any early return.
    write(&mut w)?;
    w.flush()?;
    drop(
        w.into_inner()
            .map_err(std::io::IntoInnerError::into_error)?,
    );
    tmp_path.persist(path).map_err(|e| e.error)
}

/// [`write_atomic`] of a byte string.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// The file a temporary name of [`write_atomic`] stands for (`.a.png.partial-Xy12` → `a.png`), or `None`
/// for any other name.
pub fn partial_target(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?;
    let at = rest.rfind(PARTIAL)?;
    Some(&rest[..at]).filter(|t| !t.is_empty())
}

/// Deletes, in folder `dir`, the temporary files [`write_atomic`] left behind for targets `keep` accepts
/// (killed writes); returns how many were removed. A missing folder removes nothing.
///
/// Filter by target when other processes write into the same folder at the same time: each removes only
/// the leftovers of the files it owns.
///
/// # Errors
/// The I/O error of listing the folder or removing a file.
pub fn remove_partials(dir: &Path, mut keep: impl FnMut(&str) -> bool) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(target) = name.to_str().and_then(partial_target) else {
            continue;
        };
        if keep(target) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pslg-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_file_appears_whole_and_nothing_else_remains() {
        let d = dir("whole");
        let p = d.join("a.png");
        write_atomic_bytes(&p, b"complete").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"complete");
        assert_eq!(names(&d), ["a.png"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = d.join("plain");
            std::fs::write(&plain, b"x").unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&p), mode(&plain));
            std::fs::remove_file(plain).unwrap();
        }
        // Overwriting replaces it in one step.
        write_atomic_bytes(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(names(&d), ["a.png"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let d = dir("fail");
        let p = d.join("a.json");
        write_atomic_bytes(&p, b"old").unwrap();
        let err = write_atomic(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(&d), ["a.json"]);
    }

    #[test]
    fn leftovers_of_killed_writes_are_found_by_target() {
        assert_eq!(partial_target(".a.png.partial-Xy12"), Some("a.png"));
        assert_eq!(
            partial_target(".x.partial-y.partial-z"),
            Some("x.partial-y")
        );
        assert_eq!(partial_target("a.png"), None);
        assert_eq!(partial_target(".partial-abc"), None);
        let d = dir("left");
        for n in [".a.png.partial-1", ".b.png.partial-2", "a.png", ".hidden"] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        assert_eq!(remove_partials(&d, |t| t == "a.png").unwrap(), 1);
        assert_eq!(names(&d), [".b.png.partial-2", ".hidden", "a.png"]);
        assert_eq!(remove_partials(&d, |_| true).unwrap(), 1);
        assert_eq!(names(&d), [".hidden", "a.png"]);
        assert_eq!(remove_partials(&d.join("missing"), |_| true).unwrap(), 0);
    }
}
