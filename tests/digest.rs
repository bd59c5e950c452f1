//! The model digest: a fixed value for the real model (so a change to the
//! digest's definition cannot pass unnoticed: every node in a network must
//! compute the same identity), descriptive `general.*` keys excluded,
//! everything that affects compute included.

mod common;

use strata::gguf::{GgufFile, Value};
use strata::quant::GgmlType;
use strata::shard::digest::model_digest;
use strata::synth::{synth_model, SynthSpec};

/// The digest of SmolLM2-135M-Instruct.Q4_1.gguf (sha256 b179c952…),
/// computed once and fixed here.
const SMOLLM2_DIGEST: &str = "d4b9d2fc57218e63108f04dd8442679216e99a8e509ea6f256bf02bdd6a95a50";

#[test]
fn real_model_digest_is_fixed() {
    let file = GgufFile::open(common::smollm2()).unwrap();
    assert_eq!(model_digest(&file).to_hex(), SMOLLM2_DIGEST);
}

fn digest_of(edit: impl FnOnce(&mut strata::gguf::GgufWriter<'static>)) -> String {
    let mut w = synth_model(&SynthSpec::tiny(GgmlType::Q8_0), None).unwrap();
    edit(&mut w);
    model_digest(&GgufFile::from_bytes(w.to_bytes()).unwrap()).to_hex()
}

#[test]
fn descriptive_keys_are_excluded_and_compute_keys_included() {
    let base = digest_of(|_| {});
    assert_eq!(base, digest_of(|_| {}), "the digest is deterministic");
    for key in ["general.name", "general.description", "general.license"] {
        assert_eq!(
            base,
            digest_of(|w| w.set(key, Value::String("renamed".into()))),
            "{key} must not change the digest"
        );
    }
    assert_eq!(
        base,
        digest_of(|w| w.set("strata.shard.note", Value::String("x".into()))),
        "strata.shard.* keys must not change the digest"
    );
    for (key, value) in [
        ("general.architecture", Value::String("qwen2".into())),
        ("llama.rope.freq_base", Value::F32(12345.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-3)),
        ("tokenizer.ggml.bos_token_id", Value::U32(7)),
    ] {
        assert_ne!(
            base,
            digest_of(|w| w.set(key, value)),
            "{key} must change the digest"
        );
    }
}
