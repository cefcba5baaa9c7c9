//! Classification metrics: accuracy, per-class precision / recall / F1, confusion matrix.

/// How predictions compare with the true classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Class names, in id order.
    pub labels: Vec<String>,
    /// `confusion[t][p]`: rows whose true class is `t` and predicted class is `p`.
    pub confusion: Vec<Vec<usize>>,
}

/// One class's scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    /// Of the rows predicted as the class, the share that are: `tp / (tp + fp)` (0 when none).
    pub precision: f64,
    /// Of the rows of the class, the share predicted as it: `tp / (tp + fn)` (0 when none).
    pub recall: f64,
    /// `2 p r / (p + r)` (0 when both are 0).
    pub f1: f64,
    /// Rows of the class.
    pub support: usize,
}

impl Report {
    /// Counts `(true, predicted)` class pairs over `labels.len()` classes.
    pub fn new(labels: Vec<String>, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let n = labels.len();
        let mut confusion = vec![vec![0; n]; n];
        for (t, p) in pairs {
            if t < n && p < n {
                confusion[t][p] += 1;
            }
        }
        Report { labels, confusion }
    }

    /// Rows counted.
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// The share of rows predicted right.
    pub fn accuracy(&self) -> f64 {
        let right: usize = (0..self.labels.len()).map(|i| self.confusion[i][i]).sum();
        right as f64 / self.total().max(1) as f64
    }

    /// Precision, recall, F1 and support of class `c`.
    pub fn class(&self, c: usize) -> ClassScores {
        let tp = self.confusion[c][c] as f64;
        let predicted: usize = self.confusion.iter().map(|row| row[c]).sum();
        let support: usize = self.confusion[c].iter().sum();
        let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
        let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        ClassScores { precision, recall, f1, support }
    }

    /// The mean F1 over the classes present in the data (macro F1).
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<f64> = (0..self.labels.len()).map(|c| self.class(c)).filter(|s| s.support > 0).map(|s| s.f1).collect();
        present.iter().sum::<f64>() / present.len().max(1) as f64
    }

    /// The report as text: accuracy, a table of the classes, the confusion matrix.
    pub fn text(&self) -> String {
        let width = self.labels.iter().map(String::len).max().unwrap_or(5).max(9);
        let mut out = format!("accuracy: {:.4} ({} rows)   macro F1: {:.4}\n\n", self.accuracy(), self.total(), self.macro_f1());
        out += &format!("{:<width$} {:>9} {:>9} {:>9} {:>9}\n", "class", "precision", "recall", "f1", "support");
        for (c, name) in self.labels.iter().enumerate() {
            let s = self.class(c);
            out += &format!("{name:<width$} {:>9.4} {:>9.4} {:>9.4} {:>9}\n", s.precision, s.recall, s.f1, s.support);
        }
        out += "\nconfusion matrix (rows: true class, columns: predicted)\n";
        let cell = self.labels.iter().map(String::len).max().unwrap_or(1).max(self.total().to_string().len());
        out += &format!("{:<width$} {}\n", "", self.labels.iter().map(|l| format!("{l:>cell$}")).collect::<Vec<_>>().join(" "));
        for (name, row) in self.labels.iter().zip(&self.confusion) {
            out += &format!("{name:<width$} {}\n", row.iter().map(|v| format!("{v:>cell$}")).collect::<Vec<_>>().join(" "));
        }
        out
    }

    /// The report as JSON: `accuracy`, `macro_f1`, `rows`, `classes` (name → precision, recall,
    /// f1, support), `labels` and `confusion_matrix` (rows: true class).
    pub fn json(&self) -> serde_json::Value {
        let classes: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let s = self.class(c);
                (name.clone(), serde_json::json!({ "precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support }))
            })
            .collect();
        serde_json::json!({
            "accuracy": self.accuracy(),
            "macro_f1": self.macro_f1(),
            "rows": self.total(),
            "classes": classes,
            "labels": self.labels,
            "confusion_matrix": self.confusion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_a_known_confusion_matrix() {
        // true a: predicted a, a, b; true b: predicted b; true c: predicted a.
        let r = Report::new(vec!["a".into(), "b".into(), "c".into()], [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0)]);
        assert_eq!(r.confusion, vec![vec![2, 1, 0], vec![0, 1, 0], vec![1, 0, 0]]);
        assert!((r.accuracy() - 0.6).abs() < 1e-12);
        let a = r.class(0);
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12 && (a.recall - 2.0 / 3.0).abs() < 1e-12 && a.support == 3);
        let b = r.class(1);
        assert!((b.precision - 0.5).abs() < 1e-12 && (b.recall - 1.0).abs() < 1e-12);
        assert!((b.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.class(2).f1, 0.0);
        assert!((r.macro_f1() - (2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!(r.text().contains("accuracy: 0.6000 (5 rows)"));
        assert_eq!(r.json()["confusion_matrix"][0][1], 1);
    }
}
