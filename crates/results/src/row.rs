//! One result row, and its CSV form.
//!
//! The CSV's columns are the row's JSON keys in the order serde writes them (the fields in
//! declaration order, then the per-language columns sorted), so they cannot drift from
//! [`Row`]. Cells are the JSON values: numbers as the JSON has them (an `f32` in its shortest
//! form), token ids separated by spaces, booleans as `true`/`false`, a missing step empty.
//! Quoting is RFC 4180's (through the `csv` crate): a text with a comma, a quote or a line
//! break is quoted, and a line break inside it is kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kinds::{Setting, Variant};

/// One result row: one (checkpoint, setting, target pair, concept pair, start layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The unit (checkpoint, target pair, concept pair) the row belongs to.
    pub unit: String,
    /// How many rows the unit has.
    pub unit_rows: usize,
    /// The checkpoint's directory name.
    pub checkpoint: String,
    /// Its training step, if the manifest records one.
    pub step: Option<u64>,
    /// The model's content hash.
    pub model_hash: String,
    /// Which patch.
    pub variant: Variant,
    /// The setting.
    pub setting: Setting,
    /// The target's input language.
    pub in_lang: String,
    /// The target's output language.
    pub out_lang: String,
    /// C_S.
    pub source: String,
    /// C_T.
    pub target: String,
    /// The start layer `j`.
    pub start_layer: usize,
    /// How many source prompts were combined (0 when unpatched).
    pub n_sources: usize,
    /// P(C_S in out_T).
    pub p_src_out: f32,
    /// P(C_T in out_T).
    pub p_tgt_out: f32,
    /// P(C_S in in_T).
    pub p_src_in: f32,
    /// P(C_T in in_T).
    pub p_tgt_in: f32,
    /// P(C_S in the other study languages): the union of their token sets.
    pub p_src_other: f32,
    /// P(C_T in the other study languages).
    pub p_tgt_other: f32,
    /// P(C_S in out_T) over the augmented token set (every vocabulary prefix of each form).
    pub p_src_out_aug: f32,
    /// P(C_T in out_T) over the augmented token set.
    pub p_tgt_out_aug: f32,
    /// Rank (1 = most likely) of the best token of C_S in out_T.
    pub rank_src_out: usize,
    /// Rank of the best token of C_T in out_T.
    pub rank_tgt_out: usize,
    /// Whether the generated answer is a form of C_S in out_T.
    pub gen_src: bool,
    /// Whether the generated answer is a form of C_T in out_T.
    pub gen_tgt: bool,
    /// The generated text.
    pub generation: String,
    /// The generated token ids.
    pub generation_ids: Vec<u32>,
    /// P(C_S) and P(C_T) in each study language, as columns `p_src_<code>`, `p_tgt_<code>`.
    #[serde(flatten)]
    pub per_lang: BTreeMap<String, f32>,
}

impl Row {
    /// The first probability column holding NaN or an infinity, with its value.
    pub(crate) fn non_finite(&self) -> Option<(String, f32)> {
        [
            ("p_src_out", self.p_src_out),
            ("p_tgt_out", self.p_tgt_out),
            ("p_src_in", self.p_src_in),
            ("p_tgt_in", self.p_tgt_in),
            ("p_src_other", self.p_src_other),
            ("p_tgt_other", self.p_tgt_other),
            ("p_src_out_aug", self.p_src_out_aug),
            ("p_tgt_out_aug", self.p_tgt_out_aug),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(self.per_lang.iter().map(|(k, v)| (k.clone(), *v)))
        .find(|(_, v)| !v.is_finite())
    }
}

/// The keys of a JSON object in the order of its text.
struct KeysInOrder(Vec<String>);

impl<'de> Deserialize<'de> for KeysInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = KeysInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<KeysInOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, serde::de::IgnoredAny)) = m.next_entry::<String, _>()? {
                    keys.push(k);
                }
                Ok(KeysInOrder(keys))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The CSV columns of rows like `row`: its JSON keys in serde's order.
pub(crate) fn columns(row: &Row) -> Vec<String> {
    let text = serde_json::to_string(row).expect("rows serialize");
    serde_json::from_str::<KeysInOrder>(&text)
        .expect("a row is a JSON object")
        .0
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Some(v) => v.to_string(),
    }
}

/// `rows` (as read back from their JSON text) as CSV records of `cols`, after a header line
/// if `header`.
pub(crate) fn csv_bytes(rows: &[Value], cols: &[String], header: bool) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    if header {
        w.write_record(cols).expect("csv into memory");
    }
    for row in rows {
        w.write_record(cols.iter().map(|c| cell(row.get(c))))
            .expect("csv into memory");
    }
    w.into_inner().expect("csv into memory")
}
