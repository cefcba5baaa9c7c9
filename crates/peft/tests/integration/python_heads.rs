//! BERT/RoBERTa token classification and question answering with LoRA adapters written by the
//! Python library (`fixtures/gen_heads.py`), directly and through `AutoModel`.

use crate::common;

use common::cases::{assert_close, check_case};
use common::fixtures::{Case, root};
use peft::PeftModel;
use peft::models::auto::{AutoInputs, AutoModel};
use peft::models::bert::{BertForTokenClassification, RobertaForQuestionAnswering};

#[test]
fn bert_token_classification() {
    let device = common::device();
    let load = || BertForTokenClassification::from_pretrained(root().join("models/bert_token_cls"), &device).expect("model");
    check_case("heads_bert_token_cls", load, |m, ids, mask| m.forward(ids, Some(mask), None));
}

#[test]
fn roberta_question_answering() {
    let device = common::device();
    let load = || RobertaForQuestionAnswering::from_pretrained(root().join("models/roberta_qa"), &device).expect("model");
    check_case("heads_roberta_qa", load, |m, ids, mask| m.forward(ids, Some(mask), None));
}

#[test]
fn auto_model_picks_the_heads_from_the_adapters_task() {
    let device = common::device();
    for name in ["heads_bert_token_cls", "heads_roberta_qa"] {
        let case = Case::load(name);
        let peft = PeftModel::<AutoModel>::from_pretrained_auto(case.adapter(), &device).expect("loads");
        let inputs = AutoInputs {
            input_ids: Some(case.ints("input_ids", &device)),
            attention_mask: Some(case.ints("attention_mask", &device)),
            ..Default::default()
        };
        assert_close(&case, "adapted", peft.model().forward(&inputs).expect("runs").into_data(), name);
    }
}
