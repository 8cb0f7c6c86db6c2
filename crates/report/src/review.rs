//! The review sheet: every generation once (an unpatched one with an empty `start_layer`:
//! it is the same at every start layer) with its target prompt, its automatic category and an
//! empty `human_label` column, as RFC 4180 CSV.

use xlpatch_results::Setting;

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

/// The review sheet of the rows `which` of `results`, with their categories.
pub(crate) fn review_csv(results: &Results, which: &[usize], classified: &[Classified]) -> String {
    let rows = which.iter().map(|&i| &results.rows[i]);
    let records = rows.zip(classified).map(|(row, c)| {
        let prompt = results
            .prompts
            .target(&item_of(row))
            .map_or("", |t| t.text.as_str());
        [
            row.checkpoint.clone(),
            row.step.map_or(String::new(), |s| s.to_string()),
            row.setting.to_string(),
            if row.setting == Setting::Unpatched {
                String::new()
            } else {
                row.start_layer.to_string()
            },
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
