//! The review sheet: every generation with its target prompt, its automatic category and an
//! empty `human_label` column, as RFC 4180 CSV (fields with commas, quotes or line breaks
//! quoted, quotes doubled), which spreadsheets and `pandas.read_csv` read as they are.

use crate::input::{Results, item_of};
use crate::taxonomy::Classified;

/// The header of `review.csv`.
pub(crate) const COLUMNS: [&str; 14] = [
    "checkpoint",
    "step",
    "setting",
    "start_layer",
    "in_lang",
    "out_lang",
    "source",
    "target",
    "prompt",
    "output",
    "answer",
    "auto_category",
    "detail",
    "human_label",
];

/// One CSV field.
pub(crate) fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The review sheet of `results` with the categories of its rows.
pub(crate) fn review_csv(results: &Results, classified: &[Classified]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for (row, c) in results.rows.iter().zip(classified) {
        let prompt = results
            .prompts
            .target(&item_of(row))
            .map_or("", |t| t.text.as_str());
        let cells = [
            row.checkpoint.clone(),
            row.step.map_or(String::new(), |s| s.to_string()),
            row.setting.to_string(),
            row.start_layer.to_string(),
            row.in_lang.clone(),
            row.out_lang.clone(),
            row.source.clone(),
            row.target.clone(),
            prompt.to_string(),
            row.generation.clone(),
            c.answer.clone().unwrap_or_default(),
            c.category.name().to_string(),
            c.detail.clone(),
            String::new(),
        ];
        let cells: Vec<String> = cells.iter().map(|s| field(s)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("Buch"), "Buch");
        assert_eq!(field(""), "");
        assert_eq!(field("Buch\"\n"), "\"Buch\"\"\n\"");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field(" Buch"), "\" Buch\"");
    }
}
