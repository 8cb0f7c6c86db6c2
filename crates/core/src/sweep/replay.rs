//! Replaying a prompt set (docs/method.md, "Prompt sets are data"): the `prompts.jsonl` a
//! sweep writes, read back into the plan's items, so that a study can be rerun exactly, on
//! other checkpoints or with other plugins, and compared with another tool's run on the same
//! prompts. The token ids in the file are used as they are (never re-tokenized).

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
pub(super) fn read_items(path: &Path, settings: &[Setting]) -> Result<Vec<Item>, Error> {
    let path: PathBuf = path.to_path_buf();
    let mut order: Vec<String> = Vec::new();
    let mut targets: BTreeMap<String, (usize, Planned)> = BTreeMap::new();
    let mut sources: BTreeMap<String, BTreeMap<Setting, Vec<(usize, Planned)>>> = BTreeMap::new();
    for (n, record) in read_prompts(&path)? {
        let item = record.item.clone();
        let (role, setting) = (record.role, record.setting);
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
            pair,
            target,
            sources: kept,
        });
    }
    if items.is_empty() {
        return Err(at(&path, None, ReplayError::Empty));
    }
    Ok(items)
}
