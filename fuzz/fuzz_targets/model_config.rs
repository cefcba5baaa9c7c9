//! A model's `config.json`: the architecture detection and every family's config parse to a
//! value or a typed error, and a config that validates answers its size questions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peft_models::{auto::ModelInfo, bert, bloom, gpt2, llama, segformer, t5, vit, whisper};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("config.json");
    if let Ok(info) = ModelInfo::from_json(text, path) {
        let _ = info.head(None);
    }
    if let Ok(c) = llama::LlamaConfig::from_json(text, path) {
        let _ = (c.head_dim(), c.num_key_value_heads(), c.eos_token_ids(), c.sliding_window_for_layer(0), c.rope());
    }
    if let Ok(c) = gpt2::Gpt2Config::from_json(text, path) {
        let _ = (c.head_dim(), c.inner_dim(), c.eos_token_ids(), c.classifier_dropout_prob());
    }
    if let Ok(c) = bloom::BloomConfig::from_json(text, path) {
        let _ = (c.head_dim(), c.eos_token_ids());
    }
    if let Ok(c) = bert::BertConfig::from_json(text, path) {
        let _ = c.head_dim();
    }
    if let Ok(c) = t5::T5Config::from_json(text, path) {
        let _ = (c.feed_forward(), c.num_decoder_layers(), c.decoder_start(), c.num_labels());
    }
    if let Ok(c) = whisper::WhisperConfig::from_json(text, path) {
        let _ = (c.input_frames(), c.eos_token_ids());
    }
    if let Ok(c) = vit::ViTConfig::from_json(text, path) {
        let _ = (c.num_patches(), c.pooler_size());
    }
    if let Ok(c) = segformer::SegformerConfig::from_json(text, path) {
        let _ = (0..c.num_encoder_blocks).map(|s| c.mlp_width(s)).max();
    }
});
