//! Dataset readers on small files the tests write.

use pslg_datasets::DatasetError;
use pslg_datasets::grounding::{DiorRsvg, XmlOrder, read_rsvg_hr};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-readers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn voc(filename: &str, objects: &[(&str, [i32; 4], &str)]) -> String {
    let mut s = format!(
        "<annotation>\n  <filename>{filename}</filename>\n  <size><width>800</width></size>\n"
    );
    for (name, b, text) in objects {
        s += &format!(
            "  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n    <bndbox>\n      \
             <xmin>{}</xmin>\n      <ymin>{}</ymin>\n      <xmax>{}</xmax>\n      <ymax>{}</ymax>\n    \
             </bndbox>\n    <description>{text}</description>\n  </object>\n",
            b[0], b[1], b[2], b[3]
        );
    }
    s + "</annotation>\n"
}

#[test]
fn dior_rsvg_numbers_objects_file_by_file_and_splits_select_them() {
    let root = tmp("dior");
    let ann = root.join("Annotations");
    std::fs::create_dir_all(&ann).expect("mkdir");
    std::fs::write(
        ann.join("00002.xml"),
        voc(
            "00002.jpg",
            &[
                ("vehicle", [1, 2, 30, 40], "a vehicle, parked on the left"),
                ("airplane", [5, 6, 70, 80], "The big airplane"),
            ],
        ),
    )
    .expect("write");
    std::fs::write(
        ann.join("00001.xml"),
        voc(
            "00001.jpg",
            &[("storagetank", [10, 20, 30, 40], "the white storage tank")],
        ),
    )
    .expect("write");
    std::fs::write(root.join("test.txt"), "2\n0\n").expect("write");
    let ds = DiorRsvg::open(&root, &XmlOrder::Sorted).expect("open");
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(ds.samples[0].text, "the white storage tank");
    assert_eq!(ds.samples[0].image, root.join("JPEGImages/00001.jpg"));
    assert_eq!(ds.samples[1].box_xyxy, [1.0, 2.0, 30.0, 40.0]);
    assert_eq!(ds.samples[1].text, "a vehicle, parked on the left");
    assert_eq!(ds.samples[2].category.as_deref(), Some("airplane"));
    let test = ds.split(root.join("test.txt")).expect("split");
    assert_eq!(test.iter().map(|s| s.index).collect::<Vec<_>>(), vec![2, 0]);

    // An explicit file order renumbers the objects.
    std::fs::write(root.join("order.txt"), "00002.xml\n00001.xml\n").expect("write");
    let listed = DiorRsvg::open(&root, &XmlOrder::List(root.join("order.txt"))).expect("open");
    assert_eq!(listed.samples[2].text, "the white storage tank");
    let dir = DiorRsvg::open(&root, &XmlOrder::Directory).expect("open");
    assert_eq!(dir.samples.len(), 3);

    // Errors name the file and line.
    std::fs::write(root.join("bad.txt"), "0\nseven\n").expect("write");
    match ds.split(root.join("bad.txt")) {
        Err(DatasetError::Annotation { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    std::fs::write(root.join("far.txt"), "99\n").expect("write");
    let err = ds.split(root.join("far.txt")).unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
    std::fs::write(
        ann.join("00003.xml"),
        "<annotation>\n<filename>3.jpg</filename>\n<object>\n<name>x</name>\n<bndbox><xmin>1</xmin><ymin>a</ymin>\
         <xmax>3</xmax><ymax>4</ymax></bndbox>\n<description>t</description>\n</object>\n</annotation>\n",
    )
    .expect("write");
    match DiorRsvg::open(&root, &XmlOrder::Sorted) {
        Err(DatasetError::Annotation { path, line, reason }) => {
            assert!(path.ends_with("00003.xml"));
            assert_eq!(line, 5);
            assert!(reason.contains("ymin"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(
        ann.join("00003.xml"),
        "<annotation><filename>3.jpg</filename><object>",
    )
    .expect("write");
    assert!(matches!(
        DiorRsvg::open(&root, &XmlOrder::Sorted),
        Err(DatasetError::Annotation { .. })
    ));
    std::fs::write(
        ann.join("00003.xml"),
        "<annotation><filename>3.jpg</filename><object><name>x</name><bndbox><xmin>1</xmin><ymin>2</ymin>\
         <xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>",
    )
    .expect("write");
    let err = DiorRsvg::open(&root, &XmlOrder::Sorted).unwrap_err();
    assert!(err.to_string().contains("description"), "{err}");
    assert!(matches!(
        DiorRsvg::open(root.join("nowhere"), &XmlOrder::Sorted),
        Err(DatasetError::Io { .. })
    ));
}

#[test]
fn rsvg_hr_keeps_commas_inside_expressions() {
    let root = tmp("hr");
    let file = root.join("rsvg_hr_test.txt");
    std::fs::write(
        &file,
        "279083_4582370_512_32617_sport_swimming.jpg,409.0,450.0,447.0,467.0,find a swimming pool in the middle\n\
         434613_3773455_1024_32611_sport_swimming.jpg,497.25,870.0,543.88,921.0,a pool, on the right, near a court\r\n\
         \n",
    )
    .expect("write");
    let s = read_rsvg_hr(&file, root.join("images")).expect("read");
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].text, "a pool, on the right, near a court");
    assert_eq!(s[1].box_xyxy, [497.25, 870.0, 543.88, 921.0]);
    assert_eq!(s[0].category.as_deref(), Some("sport_swimming"));
    assert_eq!(
        s[0].image,
        root.join("images/279083_4582370_512_32617_sport_swimming.jpg")
    );
    std::fs::write(&file, "a.jpg,1,2,3,4,ok\nb.jpg,1,2,3\n").expect("write");
    match read_rsvg_hr(&file, &root) {
        Err(DatasetError::Annotation { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    std::fs::write(&file, "a.jpg,1,x,3,4,ok\n").expect("write");
    assert!(
        read_rsvg_hr(&file, &root)
            .unwrap_err()
            .to_string()
            .contains(":1:")
    );
    std::fs::write(&file, "a.jpg,1,2,3,4,  \n").expect("write");
    assert!(read_rsvg_hr(&file, &root).is_err());
}
