//! Parsing token ids from the command line.

use anyhow::{Result, bail};

/// A batch of token ids, right-padded with `pad`, and its attention mask (1 real, 0 padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch * tokens]` ids, row-major.
    pub ids: Vec<i64>,
    /// `[batch * tokens]` mask, row-major.
    pub mask: Vec<i64>,
    /// `[batch, tokens]`.
    pub shape: [usize; 2],
}

/// Parses `5,6,7;8,9` (rows separated by `;`, ids by `,`).
pub fn parse_ids(text: &str, pad: i64) -> Result<Batch> {
    let rows: Vec<Vec<i64>> = text
        .split(';')
        .map(|row| {
            row.split(',')
                .map(|id| id.trim().parse::<i64>().map_err(|_| anyhow::anyhow!("`{id}` is not a token id; write ids like 5,6,7;8,9,10")))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let tokens = rows.iter().map(Vec::len).max().unwrap_or(0);
    if tokens == 0 || rows.iter().any(Vec::is_empty) {
        bail!("every row of --input-ids needs at least one id (rows are separated by `;`)");
    }
    if let Some(bad) = rows.iter().flatten().find(|id| **id < 0) {
        bail!("token ids are non-negative, got {bad}");
    }
    let mut ids = Vec::with_capacity(rows.len() * tokens);
    let mut mask = Vec::with_capacity(rows.len() * tokens);
    for row in &rows {
        ids.extend(row.iter().copied().chain(std::iter::repeat_n(pad, tokens - row.len())));
        mask.extend(std::iter::repeat_n(1, row.len()).chain(std::iter::repeat_n(0, tokens - row.len())));
    }
    Ok(Batch { ids, mask, shape: [rows.len(), tokens] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_rows_are_right_padded_with_a_mask() {
        let b = parse_ids("5,6,7;8,9", 0).expect("parses");
        assert_eq!(b.shape, [2, 3]);
        assert_eq!(b.ids, vec![5, 6, 7, 8, 9, 0]);
        assert_eq!(b.mask, vec![1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn bad_ids_say_how_to_write_them() {
        assert!(parse_ids("5,x", 0).expect_err("x").to_string().contains("5,6,7"));
        assert!(parse_ids("5;", 0).is_err());
        assert!(parse_ids("-1", 0).is_err());
    }
}
