//! BERT and RoBERTa with LoRA adapters written by the Python library (`fixtures/cases/*`).

use crate::common;

use burn::module::{Flag, Module, ModuleMapper, Param};
use burn::tensor::{Int, Tensor, TensorData};
use common::cases::{assert_loss_and_gradients, check_case};
use common::fixtures::{Case, root};
use peft::PeftModel;
use peft::models::bert::{BertForSequenceClassification, BertModel, RobertaForSequenceClassification};

#[test]
fn bert_sequence_classification() {
    let device = common::device();
    let load = || BertForSequenceClassification::from_pretrained(root().join("models/bert"), &device).expect("bert");
    check_case("bert_seq_cls", load, |m, ids, mask| m.forward(ids, Some(mask), None));
}

#[test]
fn roberta_sequence_classification() {
    let device = common::device();
    let load = || RobertaForSequenceClassification::from_pretrained(root().join("models/roberta"), &device).expect("roberta");
    check_case("roberta_seq_cls", load, |m, ids, mask| m.forward(ids, Some(mask), None));
}

#[test]
fn bert_feature_extraction() {
    let device = common::device();
    let load = || BertModel::from_pretrained(root().join("models/bert"), &device).expect("bert");
    check_case("bert_features", load, |m, ids, mask| m.forward(ids, Some(mask), None));
}

#[test]
fn bert_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("bert_seq_cls");
    let base = BertForSequenceClassification::from_pretrained(root().join("models/bert"), &device).expect("bert");
    // The fixture's gradients were taken with the base model's dropout off.
    let base = base.map(&mut DropoutOff);
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let (_, loss) = model.model().forward_with_loss(ids, Some(mask), None, labels);
    let compared = assert_loss_and_gradients(&case, &model, loss);
    assert_eq!(compared, 10, "LoRA factors and the classifier copy");
}

/// Switches every module flag (dropout's training switch) off.
struct DropoutOff;

impl ModuleMapper for DropoutOff {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}
