//! Module names of transformers 4 for the vision models, which transformers 5 renamed
//! (`attention.attention.query` → `attention.q_proj`), so older adapters still find their layers.

/// `path` (a module path or tensor key) renamed by `rename`, when it was written in the old names.
pub(crate) fn renamed(path: &str, rename: impl Fn(&str) -> String) -> Option<String> {
    let new = rename(path);
    (new != path).then_some(new)
}

/// Today's names for an old `target_modules` name: the attention projections (`query`, `key`,
/// `value`, as the PEFT guides write them), the model's own `renames` of single names, and dotted
/// paths through `legacy_path`.
pub(crate) fn target_names(name: &str, renames: &[(&str, &str)], legacy_path: impl Fn(&str) -> Option<String>) -> Vec<String> {
    const ATTENTION: [(&str, &str); 3] = [("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")];
    if name.contains('.') {
        return legacy_path(name).into_iter().collect();
    }
    ATTENTION.iter().chain(renames).find(|(old, _)| *old == name).map(|(_, new)| vec![new.to_string()]).unwrap_or_default()
}
