//! Which modules an adapter attaches to, with the Python library's matching rules.
//!
//! A module is named by its dotted path in the model (`model.layers.3.self_attn.q_proj`), exactly
//! as transformers names it. The rules, as PEFT applies them:
//! - a list of names matches a path equal to a name or ending in `.name`;
//! - a single string is a regular expression that must match the whole path;
//! - `"all-linear"` matches every linear layer except the model's output head;
//! - `exclude_modules` removes paths with the same rules;
//! - `layers_to_transform` keeps only paths whose layer index (the number after `layers_pattern`,
//!   or after any segment when no pattern is given) is in the list.

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `target_modules` (and `exclude_modules`): names, one regular expression, or `all-linear`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TargetModules {
    /// No modules (`null` in JSON).
    #[default]
    None,
    /// Names matched as the path itself or its dotted suffix.
    Names(Vec<String>),
    /// A regular expression matched against the whole path.
    Regex(String),
    /// Every linear layer but the output head.
    AllLinear,
}

/// The spelling the Python library uses for [`TargetModules::AllLinear`].
pub const ALL_LINEAR: &str = "all-linear";

impl TargetModules {
    /// Whether no module is named.
    pub fn is_none(&self) -> bool {
        matches!(self, TargetModules::None)
    }

    /// Whether `path` is matched by names or the regular expression.
    ///
    /// [`TargetModules::AllLinear`] matches nothing here: whether a path is linear is the model's
    /// knowledge, see [`TargetModules::matches_site`].
    pub fn matches(&self, path: &str) -> bool {
        match self {
            TargetModules::None | TargetModules::AllLinear => false,
            TargetModules::Names(names) => names.iter().any(|name| name_matches(name, path)),
            TargetModules::Regex(pattern) => full_match(pattern, path),
        }
    }

    /// Whether a site at `path` is matched, knowing whether it is linear and whether it is the
    /// model's output head.
    pub fn matches_site(&self, path: &str, is_linear: bool, is_output_head: bool) -> bool {
        match self {
            TargetModules::AllLinear => is_linear && !is_output_head,
            other => other.matches(path),
        }
    }

    /// Checks that a regular expression compiles, so matching never fails later.
    pub fn validate(&self, field: &'static str) -> crate::Result<()> {
        if let TargetModules::Regex(pattern) = self {
            Regex::new(&anchored(pattern))
                .map_err(|e| crate::Error::config(field, pattern, format!("not a valid regular expression: {e}")))?;
        }
        if let TargetModules::Names(names) = self
            && names.iter().any(|n| n.is_empty())
        {
            return Err(crate::Error::config(field, format!("{names:?}"), "module names must not be empty"));
        }
        Ok(())
    }

    /// The value as written in `adapter_config.json`, for messages.
    pub fn describe(&self) -> String {
        match self {
            TargetModules::None => "null".into(),
            TargetModules::Names(n) => format!("{n:?}"),
            TargetModules::Regex(r) => format!("{r:?} (a regular expression)"),
            TargetModules::AllLinear => format!("{ALL_LINEAR:?}"),
        }
    }

    /// The plain names, when given as names.
    pub fn names(&self) -> &[String] {
        match self {
            TargetModules::Names(n) => n,
            _ => &[],
        }
    }
}

impl<S: Into<String>, const N: usize> From<[S; N]> for TargetModules {
    fn from(names: [S; N]) -> Self {
        TargetModules::Names(names.into_iter().map(Into::into).collect())
    }
}

impl From<Vec<String>> for TargetModules {
    fn from(names: Vec<String>) -> Self {
        TargetModules::Names(names)
    }
}

impl From<&str> for TargetModules {
    /// `"all-linear"` or a regular expression, as the Python library reads a single string.
    fn from(s: &str) -> Self {
        if s == ALL_LINEAR { TargetModules::AllLinear } else { TargetModules::Regex(s.to_string()) }
    }
}

impl Serialize for TargetModules {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetModules::None => s.serialize_none(),
            TargetModules::Names(n) => n.serialize(s),
            TargetModules::Regex(r) => s.serialize_str(r),
            TargetModules::AllLinear => s.serialize_str(ALL_LINEAR),
        }
    }
}

impl<'de> Deserialize<'de> for TargetModules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Option::<Raw>::deserialize(d)? {
            None => TargetModules::None,
            Some(Raw::One(s)) => TargetModules::from(s.as_str()),
            Some(Raw::Many(mut names)) => {
                // The Python library writes sets, in no particular order; sort for stable output.
                names.sort();
                TargetModules::Names(names)
            }
        })
    }
}

/// `layers_to_transform`: one layer index or several (`null` for all layers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerIndices {
    /// All layers.
    #[default]
    All,
    /// One layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

impl LayerIndices {
    /// Whether the value is the default (all layers).
    pub fn is_all(&self) -> bool {
        matches!(self, LayerIndices::All)
    }

    fn contains(&self, index: usize) -> bool {
        match self {
            LayerIndices::All => true,
            LayerIndices::One(i) => *i == index,
            LayerIndices::Many(v) => v.contains(&index),
        }
    }
}

/// `layers_pattern`: the name of the layer list (`"layers"`, `"h"`), one or several.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayersPattern {
    /// Any segment before the index.
    #[default]
    Any,
    /// One name.
    One(String),
    /// Several names.
    Many(Vec<String>),
}

impl LayersPattern {
    /// Whether the value is the default (any segment).
    pub fn is_any(&self) -> bool {
        matches!(self, LayersPattern::Any)
    }
}

/// Whether `path` passes `layers_to_transform` / `layers_pattern`.
///
/// A path without a layer index is not transformed when a layer list is given, as in PEFT.
pub fn layer_selected(path: &str, layers: &LayerIndices, pattern: &LayersPattern) -> bool {
    if layers.is_all() {
        return true;
    }
    let patterns: Vec<String> = match pattern {
        LayersPattern::Any => vec![r"[^.]*".to_string()],
        LayersPattern::One(p) => vec![regex::escape(p)],
        LayersPattern::Many(ps) => ps.iter().map(|p| regex::escape(p)).collect(),
    };
    for p in patterns {
        // `.*\.{pattern}\.(\d+)\.` as in PEFT (the last matching layer list), also at the start.
        let Ok(re) = Regex::new(&format!(r"^(?:.*\.)?{p}\.(\d+)\.")) else { continue };
        if let Some(index) = re.captures(path).and_then(|c| c.get(1)).and_then(|m| m.as_str().parse().ok()) {
            return layers.contains(index);
        }
    }
    false
}

/// Whether a config name matches a module path: equal, or a dotted suffix.
pub fn name_matches(name: &str, path: &str) -> bool {
    path == name || (path.len() > name.len() && path.ends_with(name) && path.as_bytes()[path.len() - name.len() - 1] == b'.')
}

/// Whether a `rank_pattern` / `alpha_pattern` key matches a path: PEFT's `(.*\.)?(key)$`.
pub fn pattern_key_matches(key: &str, path: &str) -> bool {
    Regex::new(&format!(r"^(.*\.)?({key})$")).is_ok_and(|re| re.is_match(path))
}

fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn full_match(pattern: &str, path: &str) -> bool {
    Regex::new(&anchored(pattern)).is_ok_and(|re| re.is_match(path))
}

/// The candidate names closest to what was asked for, for "did you mean" messages.
///
/// Compares the last path segment of each candidate with each requested name by edit distance
/// and returns up to `limit` distinct segment names, closest first.
pub fn closest_names<'a>(wanted: &[String], candidates: impl IntoIterator<Item = &'a str>, limit: usize) -> Vec<String> {
    let mut segments: Vec<&str> = candidates.into_iter().map(|p| p.rsplit('.').next().unwrap_or(p)).collect();
    segments.sort_unstable();
    segments.dedup();
    let distance = |s: &str| wanted.iter().map(|w| edit_distance(w, s)).min().unwrap_or(0);
    segments.sort_by_key(|s| (distance(s), s.to_string()));
    segments.into_iter().take(limit).map(str::to_string).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_suffix_only_at_a_dot() {
        let t = TargetModules::from(["q_proj"]);
        assert!(t.matches("model.layers.0.self_attn.q_proj"));
        assert!(t.matches("q_proj"));
        assert!(!t.matches("model.layers.0.self_attn.qq_proj"));
        assert!(!t.matches("model.layers.0.self_attn.q_proj.base"));
    }

    #[test]
    fn a_string_is_a_full_regex() {
        let t = TargetModules::from(r".*\.(q|v)_proj");
        assert!(t.matches("model.layers.0.self_attn.v_proj"));
        assert!(!t.matches("model.layers.0.self_attn.k_proj"));
        // Must match the whole path, not a part of it.
        assert!(!TargetModules::from("q_proj").matches("model.layers.0.self_attn.q_proj"));
    }

    #[test]
    fn all_linear_skips_the_output_head() {
        let t = TargetModules::from(ALL_LINEAR);
        assert!(t.matches_site("model.layers.0.mlp.up_proj", true, false));
        assert!(!t.matches_site("lm_head", true, true));
        assert!(!t.matches_site("model.embed_tokens", false, false));
    }

    #[test]
    fn layers_to_transform_reads_the_index_after_the_pattern() {
        let only = LayerIndices::Many(vec![1]);
        assert!(layer_selected("model.layers.1.self_attn.q_proj", &only, &LayersPattern::Any));
        assert!(!layer_selected("model.layers.0.self_attn.q_proj", &only, &LayersPattern::Any));
        let pattern = LayersPattern::One("layer".into());
        assert!(layer_selected("bert.encoder.layer.1.attention.self.query", &only, &pattern));
        assert!(!layer_selected("bert.encoder.layer.10.attention.self.query", &only, &pattern));
        assert!(!layer_selected("classifier", &only, &pattern));
        assert!(layer_selected("anything", &LayerIndices::All, &pattern));
    }

    #[test]
    fn json_forms_round_trip() {
        for (json, value) in [
            ("null", TargetModules::None),
            (r#"["q_proj","v_proj"]"#, TargetModules::from(["q_proj", "v_proj"])),
            (r#""all-linear""#, TargetModules::AllLinear),
            (r#"".*q_proj""#, TargetModules::Regex(".*q_proj".into())),
        ] {
            let parsed: TargetModules = serde_json::from_str(json).expect("valid JSON");
            assert_eq!(parsed, value);
            assert_eq!(serde_json::to_string(&parsed).expect("serializes"), json);
        }
    }

    #[test]
    fn closest_names_rank_by_edit_distance() {
        let paths = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.mlp.up_proj"];
        let got = closest_names(&["qproj".to_string()], paths, 2);
        assert_eq!(got, vec!["q_proj".to_string(), "k_proj".to_string()]);
    }

    #[test]
    fn pattern_keys_match_a_dotted_suffix() {
        assert!(pattern_key_matches("q_proj", "model.layers.0.self_attn.q_proj"));
        assert!(pattern_key_matches(r"layers\.0\.self_attn\.q_proj", "model.layers.0.self_attn.q_proj"));
        assert!(!pattern_key_matches("q_proj", "model.layers.0.self_attn.k_proj"));
    }
}
