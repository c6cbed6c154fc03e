//! Real pretrained weights: all-MiniLM-L6-v2 (BERT architecture) loaded from its HuggingFace safetensors and
//! tokenised with its tokenizer.json must give the last hidden states of HuggingFace `transformers`
//! (`scripts/minilm_reference.py` wrote the committed reference) within 1e-4 relative.

use crate::common;

use burn_ndarray::NdArray;
use pslg_grounding::{
    GroundingError, TextConfig, TextEncoder, TextFamily, TextTokenizer, TokenBatch,
};
use std::path::Path;

type B = NdArray<f32>;

fn fixture() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm/cases.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("cases.json")).expect("json")
}

#[test]
fn minilm_matches_transformers() {
    let Some(dir) = common::minilm_dir() else {
        return;
    };
    let config = TextConfig::from_hf_json(dir.join("config.json")).expect("config");
    assert_eq!(config.family, TextFamily::Bert);
    assert_eq!(config.layer_norm_eps, 1e-12);
    let device = Default::default();
    let encoder =
        TextEncoder::<B>::load(dir.join("model.safetensors"), &config, &device).expect("load");
    let tokenizer = TextTokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    let pad = tokenizer.pad_id().expect("pad id");
    let fx = fixture();
    for case in fx["cases"].as_array().expect("cases") {
        let sentences: Vec<&str> = case["sentences"]
            .as_array()
            .expect("sentences")
            .iter()
            .map(|s| s.as_str().expect("str"))
            .collect();
        let ids: Vec<Vec<u32>> = sentences
            .iter()
            .map(|s| tokenizer.encode(s).expect("encode"))
            .collect();
        let batch = TokenBatch::pad(&ids, pad).expect("pad");
        let want_ids: Vec<u32> = case["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| v.as_u64().expect("id") as u32)
            })
            .collect();
        assert_eq!(
            batch.ids, want_ids,
            "token ids differ from transformers for {sentences:?}"
        );
        let want_mask: Vec<bool> = case["attention_mask"]
            .as_array()
            .expect("mask")
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| v.as_u64() == Some(1))
            })
            .collect();
        assert_eq!(batch.attention, want_mask);
        batch.check(&config).expect("fits");
        let hidden = encoder.forward(&batch, &device);
        let (shape, want) = common::read_npy(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/minilm")
                .join(case["hidden"].as_str().expect("file")),
        );
        assert_eq!(hidden.dims().to_vec(), shape);
        let got = hidden.into_data().to_vec::<f32>().expect("f32");
        // Compare real tokens only: transformers leaves padded positions' states meaningless but finite.
        let h = config.hidden_size;
        let (mut g, mut w) = (Vec::new(), Vec::new());
        for (t, &real) in batch.attention.iter().enumerate() {
            if real {
                g.extend_from_slice(&got[t * h..(t + 1) * h]);
                w.extend_from_slice(&want[t * h..(t + 1) * h]);
            }
        }
        let err = common::rel_err(&g, &w);
        eprintln!("MiniLM {sentences:?}: worst relative error {err:.2e}");
        assert!(err < 1e-4, "relative error {err} for {sentences:?}");
    }
}

#[test]
fn minilm_wrong_config_and_bad_text_are_typed_errors() {
    let Some(dir) = common::minilm_dir() else {
        return;
    };
    let mut config = TextConfig::from_hf_json(dir.join("config.json")).expect("config");
    config.num_layers = 5;
    let device = Default::default();
    let err = TextEncoder::<B>::load(dir.join("model.safetensors"), &config, &device).unwrap_err();
    assert!(matches!(err, GroundingError::Config(_)), "{err}");
    let tokenizer = TextTokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    assert!(matches!(
        tokenizer.encode("   "),
        Err(GroundingError::Text(_))
    ));
    let long: Vec<u32> = vec![101; 600];
    let batch = TokenBatch::pad(&[long], 0).expect("pad");
    config.num_layers = 6;
    assert!(matches!(batch.check(&config), Err(GroundingError::Text(_))));
    let out_of_vocab = TokenBatch::pad(&[vec![101, 40_000, 102]], 0).expect("pad");
    assert!(matches!(
        out_of_vocab.check(&config),
        Err(GroundingError::Text(_))
    ));
}

#[test]
fn config_json_errors_and_roberta_positions() {
    assert!(matches!(
        TextConfig::from_hf_json_str("{\"model_type\": \"gpt2\"}"),
        Err(GroundingError::Config(_))
    ));
    assert!(matches!(
        TextConfig::from_hf_json("/nonexistent/config.json"),
        Err(GroundingError::Io { .. })
    ));
    // RoBERTa: positions count real tokens from pad + 1; padding keeps the pad position.
    let batch = TokenBatch::pad(&[vec![0, 5, 6, 2], vec![0, 7, 2]], 1).expect("pad");
    assert_eq!(
        batch.position_ids(TextFamily::Roberta, 1),
        vec![2, 3, 4, 5, 2, 3, 4, 1]
    );
    assert_eq!(
        batch.position_ids(TextFamily::Bert, 1),
        vec![0, 1, 2, 3, 0, 1, 2, 3]
    );
    assert!(TokenBatch::pad(&[], 1).is_err());
    assert!(TokenBatch::pad(&[vec![]], 1).is_err());
}
