//! The PyTorch reader on a real `torch.save` file (`tests/data/views.pth`, from `scripts/checkpoint_fixture.py`):
//! a training-style checkpoint whose tensors are strided views, offsets into shared storages, a LayerNorm and
//! an int64 buffer. Every value is `arange`-based, so the expectations are written out here.

use burn::module::{Module, Param, ParamId};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use burn_ndarray::NdArray;
use pslg_checkpoint::{
    CheckpointError, KeyMap, check_shapes, expected_shapes, load_into, read_shapes,
};
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    lin: Linear<B>,
    norm: LayerNorm<B>,
    counter: Param<Tensor<B, 1, Int>>,
}

fn tiny(device: &burn::tensor::Device<B>) -> Tiny<B> {
    Tiny {
        lin: LinearConfig::new(4, 3).init(device),
        norm: LayerNormConfig::new(2).init(device),
        counter: Param::initialized(ParamId::new(), Tensor::<B, 1, Int>::zeros([3], device)),
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/views.pth")
}

fn floats(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().to_vec().expect("f32 data")
}

#[test]
fn strided_offset_and_shared_views_load_with_their_values() {
    let device = Default::default();
    let path = fixture();
    let shapes = read_shapes(&path).expect("the fixture reads");
    assert_eq!(shapes.top_level.as_deref(), Some("model"));
    assert_eq!(shapes.tensors.len(), 5, "{:?}", shapes.tensors);
    assert_eq!(shapes.tensors["lin.weight"], vec![3, 4]);
    assert_eq!(shapes.tensors["lin.bias"], vec![3]);
    assert_eq!(shapes.tensors["counter"], vec![3]);

    let model = tiny(&device);
    let expected = expected_shapes::<B, _>(&model, &KeyMap(&[]));
    check_shapes(
        &path,
        &expected,
        &shapes.tensors,
        |_, _| true,
        || "Tiny".into(),
    )
    .expect("the shapes match");
    let model = load_into(model, &path, &shapes, &[], false).expect("the fixture loads");

    // PyTorch's weight is base.t() ([out 3, in 4]); Burn keeps [in, out], which is base = arange(12) as 4×3.
    let weight = model.lin.weight.val();
    assert_eq!(weight.dims(), [4, 3]);
    assert_eq!(
        floats(weight),
        (0..12).map(|v| v as f32).collect::<Vec<_>>()
    );
    let bias = model.lin.bias.expect("bias").val();
    assert_eq!(
        bias.into_data().to_vec::<f32>().expect("f32"),
        vec![102.0, 103.0, 104.0]
    );
    assert_eq!(
        model
            .norm
            .gamma
            .val()
            .into_data()
            .to_vec::<f32>()
            .expect("f32"),
        vec![0.5, 1.5]
    );
    let beta = model.norm.beta.expect("beta").val();
    assert_eq!(
        beta.into_data().to_vec::<f32>().expect("f32"),
        vec![105.0, 106.0]
    );
    let counter = model.counter.val().into_data().convert::<i64>();
    assert_eq!(counter.to_vec::<i64>().expect("i64"), vec![7, -8, 9]);
}

#[test]
fn a_truncated_checkpoint_is_a_read_error() {
    let device = Default::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = std::fs::read(fixture()).expect("fixture");
    for keep in [bytes.len() / 3, bytes.len() - 30] {
        let cut = dir.path().join(format!("cut{keep}.pth"));
        std::fs::write(&cut, &bytes[..keep]).expect("write");
        let result = read_shapes(&cut)
            .and_then(|shapes| load_into(tiny(&device), &cut, &shapes, &[], false).map(|_| ()));
        assert!(
            matches!(result, Err(CheckpointError::Read { .. })),
            "{keep} bytes: {result:?}"
        );
    }
}
