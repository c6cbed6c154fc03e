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

/// Reads a `cases.jsonl` file. Blank lines are skipped.
///
/// # Errors
/// [`DatasetError::ReadCases`] when the file cannot be read, [`DatasetError::BadCase`] naming the line for malformed
/// JSON, a missing field, non-integer or non-finite box coordinates, an id unusable as a file name, or a
/// duplicate id.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::ReadCases {
        path: path.to_path_buf(),
        source,
    })?;
    let root = path.parent().unwrap_or(Path::new("."));
    let mut cases = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DatasetError::BadCase {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let raw: RawCase = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if raw.id.is_empty() || raw.id.contains(['/', '\\']) || raw.id == "." || raw.id == ".." {
            return Err(bad(format!(
                "id {:?} cannot be used as a file name",
                raw.id
            )));
        }
        if !seen.insert(raw.id.clone()) {
            return Err(bad(format!("duplicate id {:?}", raw.id)));
        }
        let bbox = match raw.bbox {
            Some(rb) => {
                let mut b = [0i64; 4];
                for (dst, &v) in b.iter_mut().zip(&rb) {
                    if !v.is_finite() || v.fract() != 0.0 || v.abs() > 1e12 {
                        return Err(bad(format!(
                            "box {rb:?} must hold integer pixel coordinates"
                        )));
                    }
                    *dst = v as i64;
                }
                Some(PixelBox::new(b[0], b[1], b[2], b[3]))
            }
            None => None,
        };
        if bbox.is_none() && raw.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Err(bad(
                "give a \"box\" [x1, y1, x2, y2] or a non-empty \"text\" to ground".into(),
            ));
        }
        cases.push(Case {
            id: raw.id,
            image: root.join(raw.image),
            bbox,
            text: raw.text,
            mask: raw.mask.map(|m| root.join(m)),
            category: raw.category,
        });
    }
    Ok(cases)
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
}
