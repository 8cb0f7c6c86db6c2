//! The review sheet: every generation with its target prompt, its automatic category and an
//! empty `human_label` column, as RFC 4180 CSV.

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

/// The review sheet of `results` with the categories of its rows.
pub(crate) fn review_csv(results: &Results, classified: &[Classified]) -> String {
    let records = results.rows.iter().zip(classified).map(|(row, c)| {
        let prompt = results
            .prompts
            .target(&item_of(row))
            .map_or("", |t| t.text.as_str());
        [
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
        ]
    });
    crate::csv_text(&COLUMNS, records)
}
