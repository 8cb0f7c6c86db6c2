//! `prompts.jsonl`: every prompt of a sweep, one JSON record a line, with its token ids and,
//! for target prompts, the token sets behind every probability column. The engine writes it
//! and replays it (a prompt set is data: rerun it on other checkpoints, or hand it to another
//! tool); the report reads the texts behind each row from it.
//!
//! Fields are declared in alphabetical order: the file's bytes are then those earlier versions
//! wrote (from a sorted JSON map), so an existing results directory still resumes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kinds::{PromptKind, Role, Setting};
use crate::{Error, io_err};

/// One record of `prompts.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// The expected answer of a translation prompt (the word in the output language).
    pub answer: String,
    /// The query concept's id.
    pub concept: String,
    /// The demonstrations' concept ids, in prompt order.
    pub demos: Vec<String>,
    /// The prompt's token ids (used as they are on replay, never re-tokenized).
    pub ids: Vec<u32>,
    /// The query's input language (ISO code).
    pub in_lang: String,
    /// The item (`<in>-<out>/<source>><target>`) the prompt belongs to.
    pub item: String,
    /// Where the prompt ends.
    pub kind: PromptKind,
    /// Whether the word's last token also holds text after the word.
    pub merged: bool,
    /// Target prompts: the token ids each probability column sums over, by column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_ids: Option<BTreeMap<String, Vec<u32>>>,
    /// The query's output language (ISO code).
    pub out_lang: String,
    /// How many leading tokens are the demonstrations alone (a shared few-shot prefix).
    #[serde(default)]
    pub prefix: usize,
    /// How many leading bytes of the text are the demonstrations alone.
    #[serde(default)]
    pub prefix_len: usize,
    /// Target or source.
    pub role: Role,
    /// A source prompt's setting (none for a target).
    pub setting: Option<Setting>,
    /// The prompt text.
    pub text: String,
    /// The SHA-256 of the `tokenizer.json` that made `ids` (as the checkpoints' manifests
    /// record it); a replay onto a series with another tokenizer is refused. Files without it
    /// (older ones, other tools') replay with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// The query word.
    pub word: String,
    /// The token index of the query word's last token.
    pub word_end: usize,
    /// The query word's byte range in the text.
    pub word_span: [usize; 2],
}

/// The prompt set as the text of `prompts.jsonl`.
pub fn prompts_text(records: &[PromptRecord]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).expect("prompt records serialize"));
        out.push('\n');
    }
    out
}

/// The records of the prompt set in `path`, each with its line number (blank lines skipped).
/// A source prompt must name its setting, a target prompt must not.
pub fn read_prompts(path: &Path) -> Result<Vec<(usize, PromptRecord)>, Error> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let record: PromptRecord = serde_json::from_str(line).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        if (record.role == Role::Source) != record.setting.is_some() {
            return Err(Error::PromptRole {
                path: path.to_path_buf(),
                line: line_no,
                role: record.role,
                setting: record.setting,
            });
        }
        out.push((line_no, record));
    }
    Ok(out)
}
