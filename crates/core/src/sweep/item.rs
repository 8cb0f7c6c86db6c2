//! The plan's prompts: a target prompt with its source prompts per setting, each with its
//! tokens, and their records in `prompts.jsonl` (written by a sweep, read back on replay).

use std::collections::BTreeMap;

use xlpatch_concepts::Lang;
use xlpatch_results::{PromptRecord, Role};

use crate::config::Setting;
use crate::pairs::ConceptPair;
use crate::prompt::{Prompt, Tokenized, WordEnd};

/// A prompt of the plan with its tokens.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) prompt: Prompt,
    pub(crate) tokens: Tokenized,
}

/// One target prompt with its source prompts per setting.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) in_lang: Lang,
    pub(crate) out_lang: Lang,
    pub(crate) pair: ConceptPair,
    pub(crate) target: Planned,
    pub(crate) sources: BTreeMap<Setting, Vec<Planned>>,
    /// A replayed target's own token sets by probability column (its record's
    /// `metric_ids`), used instead of the concept table's; none for a planned target.
    pub(crate) metric_ids: Option<BTreeMap<String, Vec<u32>>>,
}

impl Item {
    /// The item's key, `<in>-<out>/<source>><target>`.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}-{}/{}>{}",
            self.in_lang, self.out_lang, self.pair.source, self.pair.target
        )
    }
}

/// Why a prompt record does not make a prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A language code xlpatch does not know.
    #[error("unknown {which} language {code:?}")]
    Lang {
        /// `input` or `output`.
        which: &'static str,
        /// The code.
        code: String,
    },
    /// The word span does not hold the word.
    #[error("word_span {start}..{end} does not hold the word {word:?} in the text")]
    WordSpan {
        /// The span's start.
        start: usize,
        /// Its end.
        end: usize,
        /// The word.
        word: String,
    },
    /// The token positions do not fit the ids.
    #[error("word_end {word_end} and prefix {prefix} do not fit {n_ids} token ids")]
    Tokens {
        /// The word's last token.
        word_end: usize,
        /// The prefix's token count.
        prefix: usize,
        /// How many ids.
        n_ids: usize,
    },
    /// The prefix's byte length is not inside the text.
    #[error("prefix_len {0} is not inside the text")]
    PrefixLen(usize),
}

impl Planned {
    /// The prompt's record in `prompts.jsonl`, under `item`.
    pub(crate) fn record(&self, item: &str, role: Role, setting: Option<Setting>) -> PromptRecord {
        let (p, t) = (&self.prompt, &self.tokens);
        PromptRecord {
            answer: p.answer.clone(),
            concept: p.concept.clone(),
            demos: p.demos.clone(),
            ids: t.ids.clone(),
            in_lang: p.in_lang.code().to_string(),
            item: item.to_string(),
            kind: p.kind,
            merged: t.word_end.merged,
            metric_ids: None,
            out_lang: p.out_lang.code().to_string(),
            prefix: t.prefix,
            prefix_len: p.prefix_len,
            role,
            setting,
            text: p.text.clone(),
            tokenizer: None,
            word: p.word.clone(),
            word_end: t.word_end.token,
            word_span: [p.word_span.start, p.word_span.end],
        }
    }

    /// The prompt of a record, checked for consistency (the ids are used as they are).
    pub(crate) fn from_record(r: PromptRecord) -> Result<Planned, RecordError> {
        let lang = |code: &str, which| {
            Lang::from_code(code).ok_or_else(|| RecordError::Lang {
                which,
                code: code.to_string(),
            })
        };
        let [start, end] = r.word_span;
        if r.text.get(start..end) != Some(r.word.as_str()) {
            return Err(RecordError::WordSpan {
                start,
                end,
                word: r.word,
            });
        }
        if r.word_end >= r.ids.len() || r.prefix > r.word_end {
            return Err(RecordError::Tokens {
                word_end: r.word_end,
                prefix: r.prefix,
                n_ids: r.ids.len(),
            });
        }
        if r.prefix_len > r.text.len() || !r.text.is_char_boundary(r.prefix_len) {
            return Err(RecordError::PrefixLen(r.prefix_len));
        }
        Ok(Planned {
            prompt: Prompt {
                in_lang: lang(&r.in_lang, "input")?,
                out_lang: lang(&r.out_lang, "output")?,
                text: r.text,
                kind: r.kind,
                concept: r.concept,
                word: r.word,
                answer: r.answer,
                word_span: start..end,
                demos: r.demos,
                prefix_len: r.prefix_len,
            },
            tokens: Tokenized {
                ids: r.ids,
                word_end: WordEnd {
                    token: r.word_end,
                    merged: r.merged,
                },
                prefix: r.prefix,
            },
        })
    }
}
