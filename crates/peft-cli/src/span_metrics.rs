//! Question-answering scores as SQuAD defines them: exact match and token F1 after normalising
//! both answers (lower case, no punctuation, no articles `a` / `an` / `the`, single spaces).

/// Exact match and F1 summed over the rows scored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanScores {
    exact: f64,
    f1: f64,
    rows: usize,
}

impl SpanScores {
    /// Scores one predicted answer against the expected one.
    pub fn add(&mut self, predicted: &str, expected: &str) {
        let (p, e) = (normalize(predicted), normalize(expected));
        self.exact += f64::from(u8::from(p == e));
        self.f1 += token_f1(&p, &e);
        self.rows += 1;
    }

    /// The share of rows whose normalised answers are equal.
    pub fn exact_match(&self) -> f64 {
        self.exact / self.rows.max(1) as f64
    }

    /// The mean token F1.
    pub fn f1(&self) -> f64 {
        self.f1 / self.rows.max(1) as f64
    }

    /// `exact match 0.750  F1 0.833  (4 rows)`, and a newline.
    pub fn text(&self) -> String {
        format!("exact match {:.3}  F1 {:.3}  ({} rows)\n", self.exact_match(), self.f1(), self.rows)
    }

    /// `{"exact_match": .., "f1": .., "rows": ..}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "exact_match": self.exact_match(), "f1": self.f1(), "rows": self.rows })
    }
}

/// SQuAD's normalisation of an answer.
fn normalize(answer: &str) -> String {
    let lower: String = answer.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    lower.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// F1 of the words two normalised answers share (each shared word counted as often as both
/// have it); 1 when both are empty, 0 when only one is.
fn token_f1(predicted: &str, expected: &str) -> f64 {
    let p: Vec<&str> = predicted.split_whitespace().collect();
    let mut e: Vec<&str> = expected.split_whitespace().collect();
    if p.is_empty() || e.is_empty() {
        return f64::from(u8::from(p.is_empty() && e.is_empty()));
    }
    let (p_len, e_len) = (p.len(), e.len());
    let mut common = 0;
    for word in p {
        if let Some(i) = e.iter().position(|w| *w == word) {
            e.swap_remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p_len as f64;
    let recall = common as f64 / e_len as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_compared_as_squad_compares_them() {
        let mut scores = SpanScores::default();
        scores.add("The Eiffel Tower!", "eiffel tower");
        scores.add("in Paris", "Paris, France");
        scores.add("", "London");
        assert_eq!(scores.exact_match(), 1.0 / 3.0);
        // "in paris" vs "paris france": one shared word of two each.
        assert!((scores.f1() - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12, "{}", scores.f1());
        assert_eq!(scores.json()["rows"], 3);
        assert!(scores.text().starts_with("exact match 0.333  F1 0.500"), "{}", scores.text());
    }
}
