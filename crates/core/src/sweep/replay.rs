//! Replaying a prompt set (docs/method.md, "Prompt sets are data"): the `prompts.jsonl` a
//! sweep writes, read back into the plan's items, so that a study can be rerun exactly, on
//! other checkpoints or with other plugins, and compared with another tool's run on the same
//! prompts. The token ids in the file are used as they are (never re-tokenized), so the file
//! must have been made with the series' tokenizer (its records' `tokenizer` hash is checked),
//! and a target's `metric_ids` are the token sets its probability columns sum over. The
//! format is documented in `docs/prompts.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use xlpatch_results::{Role, read_prompts};

use super::item::{Item, Planned, RecordError};
use crate::Error;
use crate::config::Setting;
use crate::pairs::ConceptPair;

/// Why a prompt set cannot be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A record does not make a prompt.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Two target prompts for one item.
    #[error("a second target prompt for item {0:?}")]
    SecondTarget(String),
    /// Source prompts without a target.
    #[error("item {0:?} has source prompts but no target prompt")]
    NoTarget(String),
    /// An item key of another form.
    #[error("item {0:?} is not <in>-<out>/<source>><target>")]
    Key(String),
    /// A prompt asks for another concept than its item's.
    #[error("item {item:?}: a {role} prompt asks for {concept:?}")]
    Concept {
        /// The item.
        item: String,
        /// `target` or `source`.
        role: &'static str,
        /// The concept it asks for.
        concept: String,
    },
    /// A setting run without its source prompts.
    #[error("item {item:?} has no source prompt of setting {setting}")]
    NoSources {
        /// The item.
        item: String,
        /// The setting.
        setting: Setting,
    },
    /// No target prompt at all.
    #[error("the prompt set has no target prompt")]
    Empty,
    /// The prompts were tokenized with another tokenizer than the series'.
    #[error(
        "its token ids were made by the tokenizer with SHA-256 {file}, but the series ({}) \
         uses {series}: the ids would be wrong; build the prompt set again with this \
         series' tokenizer.json",
        checkpoint.display()
    )]
    Tokenizer {
        /// The hash the file records.
        file: String,
        /// The series' tokenizer hash.
        series: String,
        /// The series' first checkpoint.
        checkpoint: PathBuf,
    },
    /// `metric_ids` names a column that has no token set.
    #[error("item {item:?}: metric_ids names {column:?}, which is not one of {}", METRIC_COLUMNS.join(", "))]
    MetricColumn {
        /// The item.
        item: String,
        /// The name.
        column: String,
    },
    /// A token id of `metric_ids` outside the vocabulary.
    #[error(
        "item {item:?}: metric_ids {column} holds token id {id}, outside the vocabulary of {vocab} tokens"
    )]
    MetricId {
        /// The item.
        item: String,
        /// The column.
        column: String,
        /// The id.
        id: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
}

/// The probability columns whose token sets a target record's `metric_ids` may give, in the
/// order of the row's columns.
pub(super) const METRIC_COLUMNS: [&str; 8] = [
    "p_src_out",
    "p_tgt_out",
    "p_src_in",
    "p_tgt_in",
    "p_src_other",
    "p_tgt_other",
    "p_src_out_aug",
    "p_tgt_out_aug",
];

/// The tokenizer hashes a prompt set records.
#[derive(Debug, Default)]
pub(super) struct Tokenizers {
    /// Each hash with the first line recording it.
    pub(super) hashes: BTreeMap<String, usize>,
    /// Records without a hash.
    pub(super) missing: usize,
}

/// A prompt set read back: its items, and the tokenizer hashes its records name.
pub(super) struct Replayed {
    pub(super) items: Vec<Item>,
    pub(super) tokenizers: Tokenizers,
}

/// Checks the prompt set in `path` against the series' tokenizer `series` (the hash of the
/// first checkpoint `checkpoint`'s `tokenizer.json`): a record made by another tokenizer is
/// an error; a warning is returned when records carry no hash at all.
pub(super) fn check_tokenizer(
    path: &Path,
    tokenizers: &Tokenizers,
    series: &str,
    checkpoint: &Path,
) -> Result<Option<String>, Error> {
    if let Some((file, &line)) = tokenizers.hashes.iter().find(|(h, _)| *h != series) {
        return Err(at(
            path,
            Some(line),
            ReplayError::Tokenizer {
                file: file.clone(),
                series: series.to_string(),
                checkpoint: checkpoint.to_path_buf(),
            },
        ));
    }
    Ok((tokenizers.missing > 0).then(|| {
        format!(
            "{}: {} prompt records do not say which tokenizer made their ids; they are used \
             as they are, so make sure the prompt set was built with this series' tokenizer",
            path.display(),
            tokenizers.missing
        )
    }))
}

/// A [`ReplayError`] at `path`, line `line` if one is to blame.
fn at(path: &Path, line: Option<usize>, problem: impl Into<ReplayError>) -> Error {
    Error::Replay {
        path: path.to_path_buf(),
        line,
        problem: problem.into(),
    }
}

/// The items of the prompt set in `path`, in the order of their target records, with the
/// source prompts of `settings`. Every item needs one target record, a key
/// `<in>-<out>/<source>><target>` agreeing with it, and source prompts of C_S for every
/// setting that takes them.
pub(super) fn read_items(path: &Path, settings: &[Setting]) -> Result<Replayed, Error> {
    let path: PathBuf = path.to_path_buf();
    let mut order: Vec<String> = Vec::new();
    let mut targets: BTreeMap<String, (usize, Planned)> = BTreeMap::new();
    let mut sources: BTreeMap<String, BTreeMap<Setting, Vec<(usize, Planned)>>> = BTreeMap::new();
    let mut metric_ids: BTreeMap<String, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
    let mut tokenizers = Tokenizers::default();
    for (n, mut record) in read_prompts(&path)? {
        let item = record.item.clone();
        let (role, setting) = (record.role, record.setting);
        match record.tokenizer.take() {
            Some(hash) => {
                tokenizers.hashes.entry(hash).or_insert(n);
            }
            None => tokenizers.missing += 1,
        }
        if let Some(ids) = record.metric_ids.take()
            && role == Role::Target
        {
            if let Some(column) = ids.keys().find(|k| !METRIC_COLUMNS.contains(&k.as_str())) {
                let column = column.clone();
                return Err(at(
                    &path,
                    Some(n),
                    ReplayError::MetricColumn { item, column },
                ));
            }
            metric_ids.insert(item.clone(), ids);
        }
        let planned = Planned::from_record(record).map_err(|e| at(&path, Some(n), e))?;
        match (role, setting) {
            (Role::Source, Some(setting)) => sources
                .entry(item)
                .or_default()
                .entry(setting)
                .or_default()
                .push((n, planned)),
            // `read_prompts` checked that a source names its setting.
            _ => {
                if targets.insert(item.clone(), (n, planned)).is_some() {
                    return Err(at(&path, Some(n), ReplayError::SecondTarget(item)));
                }
                order.push(item);
            }
        }
    }
    if let Some(item) = sources.keys().find(|k| !targets.contains_key(*k)) {
        return Err(at(&path, None, ReplayError::NoTarget(item.clone())));
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
            .ok_or_else(|| at(&path, Some(n), ReplayError::Key(key.clone())))?;
        if target.prompt.concept != pair.target {
            return Err(at(
                &path,
                Some(n),
                ReplayError::Concept {
                    item: key,
                    role: "target",
                    concept: target.prompt.concept,
                },
            ));
        }
        let mut by_setting = sources.remove(&key).unwrap_or_default();
        let mut kept = BTreeMap::new();
        for &setting in settings {
            let list = by_setting.remove(&setting).unwrap_or_default();
            if let Some((n, p)) = list.iter().find(|(_, p)| p.prompt.concept != pair.source) {
                return Err(at(
                    &path,
                    Some(*n),
                    ReplayError::Concept {
                        item: key,
                        role: "source",
                        concept: p.prompt.concept.clone(),
                    },
                ));
            }
            let needs_sources = !matches!(setting, Setting::Unpatched | Setting::TgtTgt);
            if needs_sources && list.is_empty() {
                return Err(at(
                    &path,
                    None,
                    ReplayError::NoSources { item: key, setting },
                ));
            }
            kept.insert(setting, list.into_iter().map(|(_, p)| p).collect());
        }
        items.push(Item {
            in_lang: target.prompt.in_lang,
            out_lang: target.prompt.out_lang,
            metric_ids: metric_ids.remove(&key),
            pair,
            target,
            sources: kept,
        });
    }
    if items.is_empty() {
        return Err(at(&path, None, ReplayError::Empty));
    }
    Ok(Replayed { items, tokenizers })
}

/// Checks that every token id of the items' own `metric_ids` is inside a vocabulary of
/// `vocab` tokens.
pub(super) fn check_metric_ids(path: &Path, items: &[Item], vocab: usize) -> Result<(), Error> {
    for item in items {
        for (column, ids) in item.metric_ids.iter().flatten() {
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                let problem = ReplayError::MetricId {
                    item: item.key(),
                    column: column.clone(),
                    id,
                    vocab,
                };
                return Err(at(path, None, problem));
            }
        }
    }
    Ok(())
}
