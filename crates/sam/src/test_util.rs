//! Helpers shared by the unit tests.

/// The largest absolute difference between two equally long slices.
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}
