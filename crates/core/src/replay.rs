//! Replaying a prompt set (DESIGN §1, "prompt sets are data"): the `prompts.jsonl` a sweep
//! writes, read back into the plan's items, so that a study can be rerun exactly, on other
//! checkpoints or with other plugins, and compared with another tool's run on the same
//! prompts. The token ids in the file are used as they are (never re-tokenized).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use xlpatch_concepts::Lang;

use crate::Error;
use crate::config::Setting;
use crate::pairs::ConceptPair;
use crate::prompt::{Prompt, PromptKind, Tokenized, WordEnd};
use crate::sweep::{Item, Planned};

/// One line of `prompts.jsonl`.
#[derive(Debug, Deserialize)]
struct Record {
    item: String,
    role: String,
    setting: Option<Setting>,
    kind: String,
    concept: String,
    in_lang: String,
    out_lang: String,
    word: String,
    answer: String,
    demos: Vec<String>,
    text: String,
    word_span: [usize; 2],
    ids: Vec<u32>,
    word_end: usize,
    merged: bool,
    #[serde(default)]
    prefix: usize,
    #[serde(default)]
    prefix_len: usize,
}

fn lang(code: &str, what: &str) -> Result<Lang, String> {
    Lang::from_code(code).ok_or_else(|| format!("unknown {what} language {code:?}"))
}

impl Record {
    fn planned(self) -> Result<Planned, String> {
        let kind = match self.kind.as_str() {
            "translation" => PromptKind::Translation,
            "cut" => PromptKind::Cut,
            other => return Err(format!("unknown prompt kind {other:?}")),
        };
        let [start, end] = self.word_span;
        if self.text.get(start..end) != Some(self.word.as_str()) {
            return Err(format!(
                "word_span {start}..{end} does not hold the word {:?} in the text",
                self.word
            ));
        }
        if self.word_end >= self.ids.len() || self.prefix > self.word_end {
            return Err(format!(
                "word_end {} and prefix {} do not fit {} token ids",
                self.word_end,
                self.prefix,
                self.ids.len()
            ));
        }
        if self.prefix_len > self.text.len() || !self.text.is_char_boundary(self.prefix_len) {
            return Err(format!(
                "prefix_len {} is not inside the text",
                self.prefix_len
            ));
        }
        Ok(Planned {
            prompt: Prompt {
                text: self.text,
                kind,
                concept: self.concept,
                in_lang: lang(&self.in_lang, "input")?,
                out_lang: lang(&self.out_lang, "output")?,
                word: self.word,
                answer: self.answer,
                word_span: start..end,
                demos: self.demos,
                prefix_len: self.prefix_len,
            },
            tokens: Tokenized {
                ids: self.ids,
                word_end: WordEnd {
                    token: self.word_end,
                    merged: self.merged,
                },
                prefix: self.prefix,
            },
        })
    }
}

/// The items of the prompt set in `path`, in the order of their target records, with the
/// source prompts of `settings`. Every item needs one target record, a key
/// `<in>-<out>/<source>><target>` agreeing with it, and source prompts of C_S for every
/// setting that takes them.
pub(crate) fn read_items(path: &Path, settings: &[Setting]) -> Result<Vec<Item>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Results {
        path: path.to_path_buf(),
        what: format!("cannot read the prompt set: {e}"),
    })?;
    let at = |line: usize, what: String| Error::Results {
        path: path.to_path_buf(),
        what: format!("line {line}: {what}"),
    };
    let mut order: Vec<String> = Vec::new();
    let mut targets: BTreeMap<String, (usize, Planned)> = BTreeMap::new();
    let mut sources: BTreeMap<String, BTreeMap<Setting, Vec<(usize, Planned)>>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let n = i + 1;
        let record: Record = serde_json::from_str(line).map_err(|e| at(n, e.to_string()))?;
        let item = record.item.clone();
        match (record.role.as_str(), record.setting) {
            ("target", _) => {
                let planned = record.planned().map_err(|e| at(n, e))?;
                if targets.insert(item.clone(), (n, planned)).is_some() {
                    return Err(at(n, format!("a second target prompt for item {item:?}")));
                }
                order.push(item);
            }
            ("source", Some(setting)) => {
                let planned = record.planned().map_err(|e| at(n, e))?;
                sources
                    .entry(item)
                    .or_default()
                    .entry(setting)
                    .or_default()
                    .push((n, planned));
            }
            (role, setting) => {
                return Err(at(
                    n,
                    format!(
                        "role {role:?} with setting {setting:?}: expected a target, or a source with its setting"
                    ),
                ));
            }
        }
    }
    if let Some(item) = sources.keys().find(|k| !targets.contains_key(*k)) {
        return Err(Error::Results {
            path: path.to_path_buf(),
            what: format!("item {item:?} has source prompts but no target prompt"),
        });
    }
    let mut items = Vec::with_capacity(order.len());
    for key in order {
        let (n, target) = targets
            .remove(&key)
            .expect("every ordered item has a target");
        let pair = key
            .split_once('/')
            .and_then(|(_, p)| p.split_once('>'))
            .map(|(s, t)| ConceptPair {
                source: s.to_string(),
                target: t.to_string(),
            })
            .ok_or_else(|| {
                at(
                    n,
                    format!("item {key:?} is not <in>-<out>/<source>><target>"),
                )
            })?;
        if target.prompt.concept != pair.target {
            return Err(at(
                n,
                format!(
                    "item {key:?}: the target prompt asks for {:?}",
                    target.prompt.concept
                ),
            ));
        }
        let mut by_setting = sources.remove(&key).unwrap_or_default();
        let mut kept = BTreeMap::new();
        for &setting in settings {
            let list = by_setting.remove(&setting).unwrap_or_default();
            if let Some((n, p)) = list.iter().find(|(_, p)| p.prompt.concept != pair.source) {
                return Err(at(
                    *n,
                    format!(
                        "item {key:?}: a source prompt asks for {:?}",
                        p.prompt.concept
                    ),
                ));
            }
            let needs_sources = !matches!(setting, Setting::Unpatched | Setting::TgtTgt);
            if needs_sources && list.is_empty() {
                return Err(Error::Results {
                    path: path.to_path_buf(),
                    what: format!(
                        "item {key:?} has no source prompt of setting {}",
                        setting.name()
                    ),
                });
            }
            kept.insert(setting, list.into_iter().map(|(_, p)| p).collect());
        }
        items.push(Item {
            in_lang: target.prompt.in_lang,
            out_lang: target.prompt.out_lang,
            pair,
            target,
            sources: kept,
        });
    }
    if items.is_empty() {
        return Err(Error::Results {
            path: path.to_path_buf(),
            what: "the prompt set has no target prompt".into(),
        });
    }
    Ok(items)
}
