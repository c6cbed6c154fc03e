//! Box → mask case files (`cases.jsonl`): one JSON object per line.

use crate::DatasetError;
use pslg_core::PixelBox;
use std::path::{Path, PathBuf};

/// One case: an image, a box prompt or a sentence, and optionally its ground-truth mask and category.
///
/// On disk: `{"id": "nwpu_271", "image": "images/nwpu_030.jpg", "box": [63, 350, 121, 408],
/// "mask": "masks/nwpu_271.png", "category": "airplane"}` — paths relative to the case file, box in pixels with
/// `x2`, `y2` exclusive. Instead of `"box"`, a case may carry `"text": "the white tank at the bottom left"`,
/// grounded to a box by the grounding model (`pslg batch --grounding`); with both, the box is the prompt.
/// Other fields are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Unique id; predictions are written as `<id>.png`.
    pub id: String,
    /// 1-based line of the case file (for error messages).
    pub line: usize,
    /// Image path, resolved against the case file's folder.
    pub image: PathBuf,
    /// Box prompt (`None` for a sentence-only case).
    pub bbox: Option<PixelBox>,
    /// Referring sentence, when given.
    pub text: Option<String>,
    /// Ground-truth mask path, resolved, when given.
    pub mask: Option<PathBuf>,
    /// Category, when given.
    pub category: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawCase {
    id: String,
    image: String,
    #[serde(rename = "box")]
    bbox: Option<[f64; 4]>,
    text: Option<String>,
    mask: Option<String>,
    category: Option<String>,
}

/// Reads a `cases.jsonl` file. Blank lines are skipped. Fails on the first malformed line (`--strict`);
/// [`read_cases_lenient`] collects them instead.
///
/// # Errors
/// [`DatasetError::ReadCases`] when the file cannot be read, [`DatasetError::BadCase`] naming the line for malformed
/// JSON, a missing field, non-integer or non-finite box coordinates, an id unusable as a file name, or a
/// duplicate id.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, DatasetError> {
    let file = read_cases_lenient(path)?;
    match file.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(file.cases),
    }
}

/// A case file read leniently: its well-formed cases, and one [`DatasetError::BadCase`] per malformed line,
/// so that a long batch runs the rest and reports those.
#[derive(Debug)]
pub struct CaseFile {
    /// The well-formed cases, in file order.
    pub cases: Vec<Case>,
    /// The malformed lines, in file order (each a [`DatasetError::BadCase`] naming its line).
    pub errors: Vec<DatasetError>,
}

/// Reads a `cases.jsonl` file, keeping going past malformed lines (see [`CaseFile`]). A second line with an
/// id already seen is malformed; the first one stays.
///
/// # Errors
/// [`DatasetError::ReadCases`] when the file cannot be read at all.
pub fn read_cases_lenient(path: &Path) -> Result<CaseFile, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::ReadCases {
        path: path.to_path_buf(),
        source,
    })?;
    let root = path.parent().unwrap_or(Path::new("."));
    let mut file = CaseFile {
        cases: Vec::new(),
        errors: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_case(root, line, i + 1, &mut seen) {
            Ok(c) => file.cases.push(c),
            Err(reason) => file.errors.push(DatasetError::BadCase {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            }),
        }
    }
    Ok(file)
}

/// One line of a case file (`line` 1-based), or what is wrong with it.
fn parse_case(
    root: &Path,
    text: &str,
    line: usize,
    seen: &mut std::collections::HashSet<String>,
) -> Result<Case, String> {
    let raw: RawCase = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if raw.id.is_empty() || raw.id.contains(['/', '\\']) || raw.id == "." || raw.id == ".." {
        return Err(format!("id {:?} cannot be used as a file name", raw.id));
    }
    if seen.contains(&raw.id) {
        return Err(format!("duplicate id {:?}", raw.id));
    }
    let bbox = match raw.bbox {
        Some(rb) => {
            let mut b = [0i64; 4];
            for (dst, &v) in b.iter_mut().zip(&rb) {
                if !v.is_finite() || v.fract() != 0.0 || v.abs() > 1e12 {
                    return Err(format!("box {rb:?} must hold integer pixel coordinates"));
                }
                *dst = v as i64;
            }
            Some(PixelBox::new(b[0], b[1], b[2], b[3]))
        }
        None => None,
    };
    if bbox.is_none() && raw.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err("give a \"box\" [x1, y1, x2, y2] or a non-empty \"text\" to ground".into());
    }
    seen.insert(raw.id.clone());
    Ok(Case {
        id: raw.id,
        line,
        image: root.join(raw.image),
        bbox,
        text: raw.text,
        mask: raw.mask.map(|m| root.join(m)),
        category: raw.category,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pslg-cases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_the_shared_format() {
        let p = write(
            "ok.jsonl",
            "{\"id\": \"a\", \"image\": \"images/x.jpg\", \"box\": [1, 2, 3, 4], \"mask\": \"masks/a.png\", \"category\": \"ship\", \"source\": \"s\"}\n\n{\"id\": \"b\", \"image\": \"y.png\", \"box\": [0, 0, 5.0, 5]}\n",
        );
        let c = read_cases(&p).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].bbox, Some(PixelBox::new(1, 2, 3, 4)));
        assert_eq!(c[0].image, p.parent().unwrap().join("images/x.jpg"));
        assert_eq!(c[0].category.as_deref(), Some("ship"));
        assert_eq!(c[1].mask, None);
        let p = write(
            "text.jsonl",
            "{\"id\": \"t\", \"image\": \"y.png\", \"text\": \"the white tank\"}\n",
        );
        let c = read_cases(&p).unwrap();
        assert_eq!(
            (c[0].bbox, c[0].text.as_deref()),
            (None, Some("the white tank"))
        );
    }

    #[test]
    fn bad_lines_name_the_line() {
        for (text, needle) in [
            (
                "{\"id\": \"a\", \"image\": \"x\", \"box\": [1, 2, 3]}",
                "line 1",
            ),
            ("\n{\"id\": \"a\", \"image\": \"x\"}", "line 2"),
            (
                "{\"id\": \"a\", \"image\": \"x\", \"box\": [1.5, 2, 3, 4]}",
                "integer",
            ),
            (
                "{\"id\": \"../a\", \"image\": \"x\", \"box\": [1, 2, 3, 4]}",
                "file name",
            ),
            (
                "{\"id\": \"a\", \"image\": \"x\", \"box\": [1, 2, 3, 4]}\n{\"id\": \"a\", \"image\": \"x\", \"box\": [1, 2, 3, 4]}",
                "duplicate",
            ),
            ("not json", "line 1"),
            (
                "{\"id\": \"a\", \"image\": \"x\", \"text\": \"  \"}",
                "non-empty \"text\"",
            ),
        ] {
            let err = read_cases(&write("bad.jsonl", text))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn lenient_reading_keeps_the_good_lines_and_names_the_bad_ones() {
        let p = write(
            "mixed.jsonl",
            "{\"id\": \"a\", \"image\": \"x.png\", \"box\": [1, 2, 3, 4]}\nnot json\n\n{\"id\": \"a\", \"image\": \"y.png\", \"box\": [1, 2, 3, 4]}\n{\"id\": \"b\", \"image\": \"y.png\", \"box\": [1, 2, 3.5, 4]}\n{\"id\": \"c\", \"image\": \"y.png\", \"box\": [0, 0, 9, 9]}\n",
        );
        let f = read_cases_lenient(&p).unwrap();
        let ids: Vec<(&str, usize)> = f.cases.iter().map(|c| (c.id.as_str(), c.line)).collect();
        assert_eq!(ids, [("a", 1), ("c", 6)]);
        let lines: Vec<usize> = f
            .errors
            .iter()
            .map(|e| match e {
                DatasetError::BadCase { line, .. } => *line,
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(lines, [2, 4, 5]);
        assert!(f.errors[1].to_string().contains("duplicate id"));
        // Strict reading stops at the first.
        assert!(read_cases(&p).unwrap_err().to_string().contains("line 2"));
    }
}
