//! Visual-grounding datasets: DIOR-RSVG (VOC XML with an expression per object, split files of global
//! object indices) and RSVG-HR (`image,x1,y1,x2,y2,expression` lines).

use crate::DatasetError;
use std::path::{Path, PathBuf};

/// One referring expression with its ground-truth box.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundingSample {
    /// The image file.
    pub image: PathBuf,
    /// Ground-truth box `[x1, y1, x2, y2]` in image pixels.
    pub box_xyxy: [f32; 4],
    /// The referring expression as written in the annotation (normalise with
    /// `pslg_grounding::normalise_caption` before tokenising, as the official loaders do).
    pub text: String,
    /// The object's category (`name` in DIOR-RSVG; the file-name suffix in RSVG-HR, e.g. `sport_swimming`).
    pub category: Option<String>,
    /// The sample's global index in the dataset's enumeration order (what split files refer to).
    pub index: usize,
}

/// In which order DIOR-RSVG's XML files are enumerated to number the objects.
///
/// The official loader numbers objects file by file in `os.walk` order over `Annotations/`, objects in
/// document order, and the split files list those numbers. `os.walk` does not sort: it returns the
/// directory's listing order, which depends on the file system. So the released split files match the order
/// of the machine they were made on; [`XmlOrder::Sorted`] is reproducible everywhere,
/// [`XmlOrder::Directory`] is what the official loader sees on this machine, and [`XmlOrder::List`] follows
/// a file naming the XML files one per line (e.g. a listing saved where the splits were made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlOrder {
    /// File names in byte order.
    Sorted,
    /// The directory's listing order (`std::fs::read_dir`, as Python's `os.scandir`).
    Directory,
    /// The order of the names in this file.
    List(PathBuf),
}

impl std::str::FromStr for XmlOrder {
    type Err = std::convert::Infallible;

    /// `sorted`, `directory`, or else the path of a list file.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "sorted" => Self::Sorted,
            "directory" => Self::Directory,
            file => Self::List(PathBuf::from(file)),
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn dataset_err(path: &Path, line: usize, reason: impl Into<String>) -> DatasetError {
    DatasetError::Annotation {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// DIOR-RSVG: `root/Annotations/*.xml`, `root/JPEGImages/`, split files `root/{train,val,test}.txt`.
#[derive(Debug, Clone)]
pub struct DiorRsvg {
    /// Every object with an expression, in enumeration order (`index` = position).
    pub samples: Vec<GroundingSample>,
}

impl DiorRsvg {
    /// Reads every annotation under `root/Annotations` in `order`.
    ///
    /// # Errors
    /// [`DatasetError::Io`] for a missing folder or file; [`DatasetError::Annotation`] naming the file and
    /// line of a malformed XML file or object (no `filename`, no `bndbox`, a non-numeric coordinate, no
    /// `description`).
    pub fn open(root: impl AsRef<Path>, order: &XmlOrder) -> Result<Self, DatasetError> {
        let root = root.as_ref();
        let ann = root.join("Annotations");
        let mut files: Vec<PathBuf> = match order {
            XmlOrder::List(list) => {
                let text = std::fs::read_to_string(list).map_err(io_err(list))?;
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| ann.join(l))
                    .collect()
            }
            _ => std::fs::read_dir(&ann)
                .map_err(io_err(&ann))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "xml"))
                .collect(),
        };
        if *order == XmlOrder::Sorted {
            files.sort();
        }
        let images = root.join("JPEGImages");
        let mut samples = Vec::new();
        for file in &files {
            read_voc(file, &images, &mut samples)?;
        }
        Ok(Self { samples })
    }

    /// The samples a split file selects (one global object index per line, in the file's order).
    ///
    /// # Errors
    /// [`DatasetError::Io`] for a missing file; [`DatasetError::Annotation`] naming the line of a
    /// non-numeric or out-of-range index.
    pub fn split(
        &self,
        split_file: impl AsRef<Path>,
    ) -> Result<Vec<GroundingSample>, DatasetError> {
        let path = split_file.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let index: usize = line.parse().map_err(|_| {
                dataset_err(path, i + 1, format!("`{line}` is not an object index"))
            })?;
            let sample = self.samples.get(index).ok_or_else(|| {
                dataset_err(
                    path,
                    i + 1,
                    format!(
                        "object index {index} but the annotations hold {} objects; is the XML order the one \
                         the split was made with (see XmlOrder)?",
                        self.samples.len()
                    ),
                )
            })?;
            out.push(sample.clone());
        }
        Ok(out)
    }
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.has_tag_name(tag))
}

fn read_voc(
    file: &Path,
    images: &Path,
    samples: &mut Vec<GroundingSample>,
) -> Result<(), DatasetError> {
    let text = std::fs::read_to_string(file).map_err(io_err(file))?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| {
        dataset_err(
            file,
            e.pos().row as usize,
            format!("not well-formed XML: {e}"),
        )
    })?;
    let line_of = |n: roxmltree::Node| doc.text_pos_at(n.range().start).row as usize;
    let root = doc.root_element();
    let filename = child(root, "filename")
        .and_then(|n| n.text())
        .map(str::trim)
        .ok_or_else(|| dataset_err(file, line_of(root), "no <filename>"))?;
    for obj in root.children().filter(|c| c.has_tag_name("object")) {
        let line = line_of(obj);
        let bnd = child(obj, "bndbox")
            .ok_or_else(|| dataset_err(file, line, "object without <bndbox>"))?;
        let mut b = [0f32; 4];
        for (k, tag) in ["xmin", "ymin", "xmax", "ymax"].iter().enumerate() {
            let v = child(bnd, tag)
                .and_then(|n| n.text())
                .map(str::trim)
                .ok_or_else(|| {
                    dataset_err(file, line_of(bnd), format!("<bndbox> without <{tag}>"))
                })?;
            // The official loader reads the coordinates with int().
            b[k] = v.parse::<i64>().map(|x| x as f32).map_err(|_| {
                dataset_err(
                    file,
                    line_of(bnd),
                    format!("<{tag}> `{v}` is not an integer"),
                )
            })?;
        }
        let text = child(obj, "description")
            .and_then(|n| n.text())
            .ok_or_else(|| {
                dataset_err(file, line, "object without <description> (its expression)")
            })?;
        samples.push(GroundingSample {
            image: images.join(filename),
            box_xyxy: b,
            text: text.to_string(),
            category: child(obj, "name")
                .and_then(|n| n.text())
                .map(|s| s.trim().to_string()),
            index: samples.len(),
        });
    }
    Ok(())
}

/// RSVG-HR: lines `image,x1,y1,x2,y2,expression`. Only the first five commas separate fields: the
/// expression keeps its own commas (the official loader keeps only the text after the last comma, which
/// truncates such expressions).
///
/// # Errors
/// [`DatasetError::Io`] for a missing file; [`DatasetError::Annotation`] naming the line with fewer than six
/// fields, a non-numeric coordinate or an empty expression.
pub fn read_rsvg_hr(
    annotations: impl AsRef<Path>,
    images: impl AsRef<Path>,
) -> Result<Vec<GroundingSample>, DatasetError> {
    let path = annotations.as_ref();
    let images = images.as_ref();
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.splitn(6, ',').collect();
        if fields.len() < 6 {
            return Err(dataset_err(
                path,
                i + 1,
                format!(
                    "expected `image,x1,y1,x2,y2,expression`, found {} field(s)",
                    fields.len()
                ),
            ));
        }
        let mut b = [0f32; 4];
        for k in 0..4 {
            b[k] = fields[k + 1].trim().parse().map_err(|_| {
                dataset_err(
                    path,
                    i + 1,
                    format!("coordinate `{}` is not a number", fields[k + 1]),
                )
            })?;
        }
        let expression = fields[5].trim();
        if expression.is_empty() {
            return Err(dataset_err(path, i + 1, "empty expression"));
        }
        let name = fields[0].trim();
        // File names end in the category, e.g. `…_32617_sport_swimming.jpg`.
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        let parts: Vec<&str> = stem.split('_').collect();
        let category = (parts.len() >= 5).then(|| parts[4..].join("_"));
        out.push(GroundingSample {
            image: images.join(name),
            box_xyxy: b,
            text: expression.to_string(),
            category,
            index: out.len(),
        });
    }
    Ok(out)
}
