//! Which parameters train, and the counts `print_trainable_parameters` shows.
//!
//! Trainable: the active adapters' parameters (unless their config is in inference mode), plus the
//! biases their `bias` mode names (under `all`, every bias of the model except the base biases of
//! modules copied for `modules_to_save`: the Python library freezes the original module when it
//! makes the copy, and the copy's bias trains with the adapter). Everything else is frozen with `require_grad = false`, so Burn's
//! autodiff neither computes nor keeps anything for it. Dropout flags are left alone (`freeze()`
//! would switch the adapters' dropout off too).

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use peft_core::{AdapterSites, Bias, PeftConfig, SiteMut};
use std::collections::HashSet;

use crate::bias::{bias_mode, path_under};
use crate::model::PeftModel;

/// What trains, by module path.
#[derive(Clone, Debug, Default)]
struct Rule {
    /// Adapter names whose parameters train.
    adapters: Vec<String>,
    /// Whether every base bias trains.
    all_biases: bool,
    /// Base biases that never train: those of modules copied for `modules_to_save`.
    frozen: HashSet<ParamId>,
}

impl Rule {
    fn trains(&self, path: &[String], id: ParamId) -> bool {
        if let Some(i) = path.iter().position(|s| s == "adapters") {
            return path.get(i + 1).is_some_and(|name| self.adapters.contains(name));
        }
        self.all_biases && path.last().is_some_and(|s| s == "bias") && !self.frozen.contains(&id)
    }
}

struct RequireGrad {
    path: Vec<String>,
    rule: Rule,
}

impl ModuleMapper for RequireGrad {
    fn enter_module(&mut self, name: &str, container: &str) {
        enter(&mut self.path, name, container);
    }
    fn exit_module(&mut self, name: &str, container: &str) {
        exit(&mut self.path, name, container);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let trains = self.rule.trains(&self.path, param.id);
        param.set_require_grad(trains)
    }
}

/// Counts parameters by path.
#[derive(Default)]
struct PathParams {
    path: Vec<String>,
    rule: Rule,
    /// Keys of tied copies, left out of the counts.
    tied_copies: Vec<String>,
    total: usize,
    trainable: usize,
}

impl ModuleVisitor for PathParams {
    fn enter_module(&mut self, name: &str, container: &str) {
        enter(&mut self.path, name, container);
    }
    fn exit_module(&mut self, name: &str, container: &str) {
        exit(&mut self.path, name, container);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        if !self.tied_copies.is_empty() {
            let key: Vec<&str> = self.path.iter().map(String::as_str).filter(|s| *s != "base_layer").collect();
            if self.tied_copies.contains(&key.join(".")) {
                return;
            }
        }
        self.total += n;
        if self.rule.trains(&self.path, param.id) {
            self.trainable += n;
        }
    }
}

fn inference_only(config: &PeftConfig) -> bool {
    config.inference_mode()
}

impl<M: AdapterSites> PeftModel<M> {
    fn rule(&self) -> Rule {
        let live: Vec<&String> = self
            .registry
            .active
            .iter()
            .filter(|n| self.registry.entries.get(*n).is_some_and(|e| !inference_only(&e.config)))
            .collect();
        let all_biases =
            live.iter().any(|n| self.registry.entries.get(*n).is_some_and(|e| bias_mode(&e.config) == Bias::All));
        let frozen = if all_biases { self.copied_base_biases() } else { HashSet::new() };
        Rule { adapters: live.iter().map(|n| n.to_string()).collect(), all_biases, frozen }
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
            let id = match site {
                SiteMut::Linear(s) => s.base_layer.bias.as_ref().map(|b| b.id),
                SiteMut::Conv1d(s) => s.base_layer.bias.as_ref().map(|b| b.id),
                SiteMut::Conv2d(s) => s.base_layer.bias.as_ref().map(|b| b.id),
                SiteMut::BatchNorm2d(s) => Some(s.base_layer.bias.id),
                SiteMut::Embedding(_) => None,
            };
            out.extend(id);
        });
        out
    }

    /// Sites whose base bias trains under `lora_only`.
    fn lora_only_sites(&self) -> Vec<String> {
        let rule = self.rule();
        rule.adapters
            .iter()
            .filter_map(|n| self.registry.entries.get(n))
            .filter(|e| bias_mode(&e.config) == Bias::LoraOnly)
            .flat_map(|e| e.targeted.clone())
            .collect()
    }

    /// Re-applies `require_grad` after the active adapters changed.
    pub(crate) fn refresh_trainable(&mut self) {
        let rule = self.rule();
        let lora_only = self.lora_only_sites();
        let model = self.base_model.clone().map(&mut RequireGrad { path: Vec::new(), rule });
        self.base_model = model;
        if lora_only.is_empty() {
            return;
        }
        self.base_model.visit_sites_mut(&mut |path, site| {
            if let SiteMut::Linear(s) = site
                && lora_only.iter().any(|p| p == path)
            {
                s.base_layer.bias = s.base_layer.bias.take().map(|b| b.set_require_grad(true));
            }
        });
    }

    /// `(trainable, all)` parameter counts, as the Python library's `get_nb_trainable_parameters`.
    pub fn trainable_parameters(&self) -> (usize, usize) {
        let tied_copies = self.base_model.tied_weights().into_iter().map(|(copy, _)| copy).collect();
        let mut counter = PathParams { rule: self.rule(), tied_copies, ..Default::default() };
        self.base_model.visit(&mut counter);
        let lora_only = self.lora_only_sites();
        let mut extra = 0;
        self.base_model.visit_sites(&mut |path, site| {
            if let SiteMut::Linear(s) = site
                && lora_only.iter().any(|p| p == path)
                && let Some(b) = &s.base_layer.bias
            {
                extra += b.lazy_shape().num_elements();
            }
        });
        (counter.trainable + extra, counter.total)
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

/// Enters module level `name` of a visitor's path; enum variants are skipped.
pub(crate) fn enter(path: &mut Vec<String>, name: &str, container: &str) {
    // Enum variants (`AutoModel::Llama`) are module levels in Burn but not in transformers' names.
    if !peft_io::weights::is_variant(container) {
        path.push(name.to_string());
    }
}

/// Leaves a module level entered with [`enter`].
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
