//! Which parameters train, and the counts `print_trainable_parameters` shows.
//!
//! Trainable, by parameter identity: the parameters of the active adapters (unless their config
//! is in inference mode) at every site and at the model level, plus the base biases their `bias`
//! mode names. Everything else is frozen with `require_grad = false`, so Burn's autodiff neither
//! computes nor keeps anything for it. Dropout flags are left alone (`freeze()` would switch the
//! adapters' dropout off too).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use peft_core::{AdapterSites, Bias, SiteKind};
use std::collections::HashSet;

use crate::bias::{bias_mode, path_under};
use crate::model::PeftModel;

/// Sets `require_grad` by membership in a set of parameter ids.
struct RequireGrad<'a> {
    trainable: &'a HashSet<ParamId>,
}

impl ModuleMapper for RequireGrad<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let trains = self.trainable.contains(&param.id);
        param.set_require_grad(trains)
    }
}

/// Counts parameters, and collects base biases, by path.
#[derive(Default)]
pub(crate) struct PathParams<'a> {
    path: Vec<String>,
    /// What trains, by id.
    trainable_ids: Option<&'a HashSet<ParamId>>,
    /// Every adapter parameter (of any adapter), so base biases are told apart from them.
    adapter_ids: Option<&'a HashSet<ParamId>>,
    /// Keys of tied copies, left out of the counts.
    tied_copies: Vec<String>,
    pub(crate) total: usize,
    pub(crate) trainable: usize,
    /// Base biases outside adapters: module path without `base_layer`, id, value.
    pub(crate) biases: Vec<(String, ParamId, TensorData)>,
    /// Whether to read the biases' values (for saving) or only their ids.
    read_values: bool,
}

impl ModuleVisitor for PathParams<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        enter(&mut self.path, name, container);
    }
    fn exit_module(&mut self, name: &str, container: &str) {
        exit(&mut self.path, name, container);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        let is_adapter = self.adapter_ids.is_some_and(|ids| ids.contains(&param.id));
        if D == 1 && !is_adapter && self.path.last().is_some_and(|s| s == "bias") {
            let module: Vec<&str> =
                self.path[..self.path.len() - 1].iter().map(String::as_str).filter(|s| *s != "base_layer").collect();
            let value = if self.read_values { param.val().into_data() } else { TensorData::new(Vec::<f32>::new(), [0]) };
            self.biases.push((module.join("."), param.id, value));
        }
        if !self.tied_copies.is_empty() {
            let key: Vec<&str> = self.path.iter().map(String::as_str).filter(|s| *s != "base_layer").collect();
            if self.tied_copies.contains(&key.join(".")) {
                return;
            }
        }
        self.total += n;
        if self.trainable_ids.is_some_and(|ids| ids.contains(&param.id)) {
            self.trainable += n;
        }
    }
}

impl<M: AdapterSites> PeftModel<M> {
    /// The active adapters that train (not in inference mode).
    fn training_adapters(&self) -> Vec<String> {
        self.registry
            .active
            .iter()
            .filter(|n| self.registry.entries.get(*n).is_some_and(|e| !e.config.inference_mode()))
            .cloned()
            .collect()
    }

    /// Every parameter of the adapters named, at the sites and at the model level.
    pub(crate) fn adapter_param_ids(&self, names: &[String]) -> HashSet<ParamId> {
        let mut ids: HashSet<ParamId> = HashSet::new();
        self.base_model.visit_sites(&mut |_, site| {
            for name in names {
                ids.extend(site.adapter_param_ids(name));
            }
        });
        for name in names {
            ids.extend(self.model_adapters.param_ids(name));
        }
        ids
    }

    /// The ids of every parameter that trains now.
    fn trainable_ids(&self) -> HashSet<ParamId> {
        let training = self.training_adapters();
        let mut ids = self.adapter_param_ids(&training);
        let modes: Vec<(Bias, &[String])> = training
            .iter()
            .filter_map(|n| self.registry.entries.get(n))
            .map(|e| (bias_mode(&e.config), e.targeted.as_slice()))
            .collect();
        if modes.iter().any(|(m, _)| *m == Bias::All) {
            let all_adapters = self.adapter_param_ids(&self.adapter_names());
            let mut collector = PathParams { adapter_ids: Some(&all_adapters), ..Default::default() };
            self.base_model.visit(&mut collector);
            // The Python library freezes the original of a module copied for `modules_to_save`
            // (the copy's bias trains with the adapter instead).
            let frozen = self.copied_base_biases();
            ids.extend(collector.biases.into_iter().map(|(_, id, _)| id).filter(|id| !frozen.contains(id)));
        }
        let lora_only: Vec<&String> = modes.iter().filter(|(m, _)| *m == Bias::LoraOnly).flat_map(|(_, t)| t.iter()).collect();
        if !lora_only.is_empty() {
            self.base_model.visit_sites(&mut |path, site| {
                // `lora_only` covers linear sites only, the biases its adapter files carry.
                if site.kind() == SiteKind::Linear
                    && lora_only.iter().any(|p| *p == path)
                    && let Some(id) = site.base_bias_id()
                {
                    ids.insert(id);
                }
            });
        }
        ids
    }

    /// Ids of the base biases of sites that any adapter copied for `modules_to_save`.
    fn copied_base_biases(&self) -> HashSet<ParamId> {
        let copied: Vec<&String> = self.registry.entries.values().flat_map(|e| &e.saved).collect();
        let mut out = HashSet::new();
        if copied.is_empty() {
            return out;
        }
        self.base_model.visit_sites(&mut |path, site| {
            if !copied.iter().any(|m| path_under(m, path).is_some()) {
                return;
            }
            let id = site.base_bias_id();
            out.extend(id);
        });
        out
    }

    /// Re-applies `require_grad` after the active adapters changed.
    pub(crate) fn refresh_trainable(&mut self) {
        let trainable = self.trainable_ids();
        let mut mapper = RequireGrad { trainable: &trainable };
        self.base_model = self.base_model.clone().map(&mut mapper);
        self.model_adapters = self.model_adapters.clone().map(&mut mapper);
    }

    /// `(trainable, all)` parameter counts, as the Python library's `get_nb_trainable_parameters`.
    pub fn trainable_parameters(&self) -> (usize, usize) {
        let tied_copies = self.base_model.tied_weights().into_iter().map(|(copy, _)| copy).collect();
        let trainable = self.trainable_ids();
        let mut counter = PathParams { trainable_ids: Some(&trainable), tied_copies, ..Default::default() };
        self.base_model.visit(&mut counter);
        self.model_adapters.visit(&mut counter);
        (counter.trainable, counter.total)
    }

    /// The line the Python library prints:
    /// `trainable params: 2,359,296 || all params: 1,231,940,608 || trainable%: 0.1915`.
    pub fn trainable_parameters_line(&self) -> String {
        let (trainable, all) = self.trainable_parameters();
        let percent = if all == 0 { 0.0 } else { 100.0 * trainable as f64 / all as f64 };
        format!(
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(trainable),
            thousands(all),
            percent
        )
    }

    /// Prints [`PeftModel::trainable_parameters_line`] to standard output.
    pub fn print_trainable_parameters(&self) {
        println!("{}", self.trainable_parameters_line());
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn enter(path: &mut Vec<String>, name: &str, container: &str) {
    // Enum variants (`AutoModel::Llama`) are module levels in Burn but not in transformers' names.
    if !peft_io::weights::is_variant(container) {
        path.push(name.to_string());
    }
}

pub(crate) fn exit(path: &mut Vec<String>, _name: &str, container: &str) {
    if !peft_io::weights::is_variant(container) {
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_by_three() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(2_359_296), "2,359,296");
        assert_eq!(super::thousands(1_231_940_608), "1,231,940,608");
    }
}
