//! Adapters written before transformers 5 renamed modules (ViT's and SegFormer's
//! `attention.attention.query` is `attention.q_proj` now): their file keys and the PEFT guides'
//! `target_modules` names (`["query", "value"]`) map to today's modules, with a note instead of
//! an error. The model says what its older names were ([`AdapterSites::legacy_path`]).

use peft_core::{AdapterSites, PeftConfig, TargetModules};
use peft_io::tensors::TensorMap;

/// Renames the keys of `tensors` written with older module names to today's, noting it once.
pub(crate) fn upgrade_keys<M: AdapterSites>(tensors: &mut TensorMap, model: &M) {
    let renames: Vec<(String, String)> = tensors.keys().filter_map(|k| model.legacy_path(k).map(|new| (k.clone(), new))).collect();
    let Some((first_old, first_new)) = renames.first().cloned() else { return };
    for (old, new) in &renames {
        if let Some(value) = tensors.shift_remove(old) {
            tensors.insert(new.clone(), value);
        }
    }
    log::warn!(
        "the adapter file uses the module names of an older transformers version ({} tensors, e.g. `{first_old}`); they were loaded as today's (`{first_new}`)",
        renames.len()
    );
}

/// Replaces `target_modules` (and IA3's `feedforward_modules`) names that match no module of
/// `model` but are its older names by today's, noting each.
pub(crate) fn upgrade_targets<M: AdapterSites>(config: &mut PeftConfig, model: &M) {
    let lists: Vec<&mut TargetModules> = match config {
        PeftConfig::Lora(c) => vec![&mut c.target_modules],
        PeftConfig::AdaLora(c) => vec![&mut c.target_modules],
        PeftConfig::Ia3(c) => vec![&mut c.target_modules, &mut c.feedforward_modules],
        _ => return,
    };
    let mut paths: Option<Vec<String>> = None;
    for list in lists {
        let TargetModules::Names(names) = list else { continue };
        // Most models have no older names: walk the sites only when a name could be one.
        if names.iter().all(|n| model.legacy_target_names(n).is_empty()) {
            continue;
        }
        let paths = paths.get_or_insert_with(|| model.site_paths().into_iter().map(|(p, _)| p).collect());
        let matches = |name: &str| paths.iter().any(|p| p == name || p.ends_with(&format!(".{name}")));
        let mut upgraded: Vec<String> = Vec::with_capacity(names.len());
        for name in names.iter() {
            let today = if matches(name) { Vec::new() } else { model.legacy_target_names(name) };
            if today.is_empty() {
                upgraded.push(name.clone());
            } else {
                log::warn!("target module `{name}` is the name an older transformers version gave; adapting today's `{}`", today.join("`, `"));
                for t in today {
                    if !names.contains(&t) && !upgraded.contains(&t) {
                        upgraded.push(t);
                    }
                }
            }
        }
        *names = upgraded;
    }
}
