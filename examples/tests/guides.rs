//! Every guide in smoke mode: training must help, and the saved, reloaded and merged models
//! must give the trained model's outputs.

use peft_examples::common::fixtures_dir;
use peft_examples::{
    adalora_tweets, custom_model, dora_smollm2, ia3_minilm, ia3_seq2seq, image_classification, quicktour, semantic_segmentation, whisper_auto,
};

#[test]
fn image_classification_learns_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = image_classification::Options::new(fixtures_dir().join("models/vit"), out.path(), true);
    let report = image_classification::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.loss.1 < report.loss.0, "the loss falls: {:?}", report.loss);
    assert!(report.accuracy_after > report.accuracy_before, "{report:?}");
    assert!(report.adapter_effect > 1e-3, "training changed the outputs: {report:?}");
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-4, "{report:?}");
    assert!(out.path().join("adapter_model.safetensors").is_file());
}

#[test]
fn custom_model_learns_moves_only_the_adapter_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = custom_model::run(&custom_model::Options::new(out.path(), true)).expect("the guide runs");
    eprintln!("{report:?}");
    assert_eq!(report.sites, ["fc1 (Linear)", "fc2 (Linear)", "classifier (Linear)"], "the derive lists the layers, not the activation");
    // LoRA r 8 on fc1 (12x32) and fc2 (32x32), and a trainable copy of the classifier (32x3 + 3).
    let lora = 8 * (12 + 32) + 8 * (32 + 32);
    let head = 32 * 3 + 3;
    let base = (12 * 32 + 32) + (32 * 32 + 32) + head;
    let percent = 100.0 * (lora + head) as f64 / (base + lora + head) as f64;
    let line = format!("trainable params: {} || all params: {} || trainable%: {percent:.4}", lora + head, peft::thousands(base + lora + head));
    assert_eq!(report.trainable, line);
    assert!(report.loss.1 < report.loss.0, "the loss falls: {:?}", report.loss);
    assert!(report.accuracy_after > report.accuracy_before, "{report:?}");
    assert_eq!(report.frozen_change, 0.0, "only the adapter moves");
    assert!(report.adapter_effect > 1e-3, "training changed the outputs: {report:?}");
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-4, "{report:?}");
    assert!(out.path().join("adapter_model.safetensors").is_file());
    assert!(out.path().join("adapter_config.json").is_file());
}

#[test]
fn semantic_segmentation_learns_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = semantic_segmentation::Options::new(fixtures_dir().join("models/segformer"), out.path(), true);
    let report = semantic_segmentation::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.loss.1 < report.loss.0, "the loss falls: {:?}", report.loss);
    assert!(report.after.mean_iou > report.before.mean_iou, "{report:?}");
    assert!(report.after.pixel_accuracy > report.before.pixel_accuracy, "{report:?}");
    assert!(report.adapter_effect > 1e-3, "training changed the outputs: {report:?}");
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-4, "{report:?}");
}

#[test]
fn whisper_adapter_loads_from_its_config_and_generates_pythons_ids() {
    let adapter = fixtures_dir().join("cases/whisper_qv/adapter");
    let report = whisper_auto::run(&whisper_auto::Options::new(&adapter, true)).expect("the guide runs");
    assert_eq!(report.family, "whisper");
    assert!(report.base_dir.ends_with("models/whisper"), "{}", report.base_dir.display());
    let expected = report.expected.clone().expect("the fixture case has greedy_adapted");
    assert_eq!(report.generated, expected);
    assert_eq!(report.matches(), Some(true));
}

/// The fixture adapter copied to a temp dir, its base named by `base` in the config.
fn copied_whisper_adapter(base: &str) -> tempfile::TempDir {
    let case = fixtures_dir().join("cases/whisper_qv/adapter");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(case.join("adapter_model.safetensors"), dir.path().join("adapter_model.safetensors")).expect("copy");
    let config = std::fs::read_to_string(case.join("adapter_config.json")).expect("config");
    let config = config.replace("\"models/whisper\"", &serde_json_string(base));
    std::fs::write(dir.path().join("adapter_config.json"), config).expect("write");
    dir
}

fn serde_json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn whisper_adapter_outside_a_case_generates_without_comparing() {
    let base = fixtures_dir().join("models/whisper");
    let dir = copied_whisper_adapter(&base.to_string_lossy());
    let report = whisper_auto::run(&whisper_auto::Options::new(dir.path(), true)).expect("the guide runs");
    assert_eq!(report.matches(), None);
    assert_eq!(report.generated.len(), 1, "one row of seeded noise");
    assert!(!report.generated[0].is_empty() && report.generated[0].len() <= 4, "{:?}", report.generated);
}

#[test]
fn a_base_that_is_not_here_is_named_in_the_error() {
    let dir = copied_whisper_adapter("models/whisper");
    let err = whisper_auto::run(&whisper_auto::Options::new(dir.path(), true)).expect_err("no base there");
    let err = format!("{err:#}");
    assert!(err.contains("models/whisper") && err.contains("from_pretrained_auto_with_base"), "{err}");
}

#[test]
fn a_non_whisper_adapter_is_refused_by_name() {
    let adapter = fixtures_dir().join("cases/vit_qv/adapter");
    let err = whisper_auto::run(&whisper_auto::Options::new(&adapter, true)).expect_err("not whisper").to_string();
    assert!(err.contains("vit"), "{err}");
}

#[test]
fn quicktour_trains_saves_and_reloads_from_the_adapter_folder_alone() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = quicktour::Options::new(fixtures_dir().join("models/mt5"), out.path().join("adapter"), true);
    let report = quicktour::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.loss.1 < 0.5 * report.loss.0, "the copy task is learned: {:?}", report.loss);
    assert_eq!(report.trained, report.reloaded, "from_pretrained_auto reloads the same adapter");
    assert_ne!(report.trained, report.base, "the adapter changes what is generated");
}

/// The real models and tweets (`cargo xtask assets`): `$PEFT_ASSETS`, else `target/assets`.
fn assets() -> std::path::PathBuf {
    peft_examples::tweets::assets_dir(None)
}

#[test]
fn smollm2_fine_tune_runs_on_the_real_model() {
    let assets = assets();
    let out = tempfile::tempdir().expect("temp dir");
    let options = peft_examples::smollm2_tweets::Options::new(&assets, out.path().join("adapter"), true);
    assert!(options.gguf.is_file(), "{} is missing: run `cargo xtask assets`", options.gguf.display());
    let report = peft_examples::smollm2_tweets::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.loss.0.is_finite() && report.loss.1.is_finite());
    assert!(report.reload_diff < 1e-3, "{report:?}");
    assert!(report.merge_diff.is_some_and(|d| d < 1e-2), "{report:?}");
    assert!(out.path().join("adapter/adapter_model.safetensors").is_file());
}

#[test]
fn ia3_seq2seq_trains_python_s_count_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = ia3_seq2seq::run(&ia3_seq2seq::Options::new(fixtures_dir().join("models/t5"), out.path(), true)).expect("the guide runs");
    eprintln!("{report:?}");
    // The line Python prints for the same config and model (fixtures/cases/ia3_t5).
    let case = std::fs::read_to_string(fixtures_dir().join("cases/ia3_t5/case.json")).expect("case");
    assert!(case.contains(&format!("\"print_trainable_parameters\": \"{}\"", report.trainable)), "{}", report.trainable);
    assert_eq!(report.targets, (vec!["k".to_string(), "v".into(), "wo".into()], vec!["wo".to_string()]));
    assert!(report.loss.1 < report.loss.0, "the loss falls: {:?}", report.loss);
    assert!(report.held_out_loss.1 < report.held_out_loss.0, "and on held-out rows: {:?}", report.held_out_loss);
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-4, "{report:?}");
}

#[test]
fn ia3_seq2seq_runs_on_mt5() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = ia3_seq2seq::run(&ia3_seq2seq::Options::new(fixtures_dir().join("models/mt5"), out.path(), true)).expect("the guide runs");
    eprintln!("{report:?}");
    // Python's IA3 defaults for mT5 (gated feed-forward: wi_0, wi_1, wo) are k, v and the linear
    // branch wi_1, none of them feed-forward (scaled at the output, unlike T5's wo).
    assert_eq!(report.targets, (vec!["k".to_string(), "v".into(), "wi_1".into()], vec![]));
    assert!(report.loss.1 < report.loss.0, "the loss falls: {:?}", report.loss);
    assert!(report.held_out_loss.1 < report.held_out_loss.0, "and on held-out rows: {:?}", report.held_out_loss);
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-4, "{report:?}");
}

#[test]
fn adalora_on_minilm_learns_prunes_to_the_budget_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = adalora_tweets::Options::new(&assets(), out.path(), true);
    let report = adalora_tweets::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    // Python's AdaLoRA defaults for BERT: query and value of the 6 layers, 12 ranks each at the start.
    assert_eq!(report.ranks.len(), 12, "{:?}", report.ranks);
    assert!(report.ranks.iter().all(|(m, _)| m.ends_with("attention.self.query") || m.ends_with("attention.self.value")), "{:?}", report.ranks);
    let kept: usize = report.ranks.iter().map(|(_, k)| k).sum();
    assert_eq!(report.target_budget, 8 * 12);
    assert!(kept <= report.target_budget && kept + 12 > report.target_budget, "pruned to the budget: {kept} of {}", report.target_budget);
    assert!(report.ranks.iter().all(|(_, k)| *k <= 12));
    assert!(report.after.0 < report.before.0, "held-out loss falls: {report:?}");
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-3, "{report:?}");
    let config = std::fs::read_to_string(out.path().join("adapter_config.json")).expect("config");
    assert!(config.contains("\"rank_pattern\"") && config.contains("lora_E"), "the saved config has the pattern: {config}");
}

#[test]
fn ia3_on_minilm_uses_python_s_targets_learns_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = ia3_minilm::run(&ia3_minilm::options(&assets(), out.path(), true)).expect("the guide runs");
    eprintln!("{report:?}");
    assert_eq!(report.targets, (vec!["key".to_string(), "value".into(), "output.dense".into()], vec!["output.dense".to_string()]));
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.after.0 < report.before.0, "held-out loss falls: {report:?}");
    assert!(report.reload_diff < 1e-4 && report.merge_diff < 1e-3, "{report:?}");
}

#[test]
fn dora_fine_tune_runs_on_the_real_model_and_merges() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = dora_smollm2::options(&assets(), out.path().join("adapter"), true);
    assert!(options.method == dora_smollm2::Method::Dora && options.steps <= 2, "{options:?}");
    let report = dora_smollm2::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.loss.0.is_finite() && report.loss.1.is_finite());
    assert!(report.reload_diff < 1e-3 && report.merge_diff.is_some_and(|d| d < 1e-2), "{report:?}");
    let config = std::fs::read_to_string(out.path().join("adapter/adapter_config.json")).expect("config");
    assert!(config.contains("\"use_dora\": true"), "{config}");
}

#[test]
fn prompt_tuning_with_text_init_runs_on_the_real_model() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = peft_examples::prompt_tuning_smollm2::options(&assets(), out.path().join("adapter"), true);
    let report = peft_examples::prompt_tuning_smollm2::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    // Only the table trains: 8 virtual tokens of SmolLM2's width 576.
    assert!(report.trainable.starts_with("trainable params: 4,608 "), "{}", report.trainable);
    assert!(report.loss.0.is_finite() && report.loss.1.is_finite());
    assert!(report.reload_diff < 1e-3 && report.merge_diff.is_none(), "{report:?}");
    let config = std::fs::read_to_string(out.path().join("adapter/adapter_config.json")).expect("config");
    assert!(config.contains("\"prompt_tuning_init\": \"TEXT\"") && config.contains(peft_examples::prompt_tuning_smollm2::INIT_TEXT), "{config}");
}

#[test]
fn llama_adapter_runs_on_the_real_model() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = peft_examples::llama_adapter_smollm2::options(&assets(), out.path().join("adapter"), true);
    let report = peft_examples::llama_adapter_smollm2::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    // 10 prompts of width 576 and one gate in each of 10 layers.
    assert!(report.trainable.starts_with("trainable params: 57,610 "), "{}", report.trainable);
    assert!(report.loss.0.is_finite() && report.loss.1.is_finite());
    assert!(report.reload_diff < 1e-3 && report.merge_diff.is_none(), "{report:?}");
}

#[test]
fn p_tuning_on_minilm_trains_the_prompt_encoder_with_the_head_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = peft_examples::p_tuning_minilm::run(&peft_examples::p_tuning_minilm::options(&assets(), out.path(), true)).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.after.0 < report.before.0, "held-out loss falls: {report:?}");
    // The fresh base's head differs from the trained one: the reload must take the adapter's.
    assert!(report.reload_diff < 1e-4, "{report:?}");
    let config = std::fs::read_to_string(out.path().join("adapter_config.json")).expect("config");
    assert!(config.contains("\"peft_type\": \"P_TUNING\"") && config.contains("\"encoder_hidden_size\": 128"), "{config}");
}

#[test]
fn prefix_tuning_a_tiny_t5_learns_generates_and_round_trips() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = peft_examples::prefix_tuning_seq2seq::Options::new(fixtures_dir().join("models/t5"), out.path(), true);
    let report = peft_examples::prefix_tuning_seq2seq::run(&options).expect("the guide runs");
    eprintln!("{report:?}");
    assert!(report.trainable.starts_with("trainable params: "), "{}", report.trainable);
    assert!(report.loss.1 < report.loss.0 && report.held_out_loss.1 < report.held_out_loss.0, "{report:?}");
    assert!(report.generated.iter().all(|g| !g.is_empty() && g.len() <= 6), "greedy generation through the prefix: {report:?}");
    assert!(report.reload_diff < 1e-4 && report.reload_generates_the_same, "{report:?}");
    let config = std::fs::read_to_string(out.path().join("adapter_config.json")).expect("config");
    assert!(config.contains("\"peft_type\": \"PREFIX_TUNING\""), "{config}");
}

