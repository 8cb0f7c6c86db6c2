//! Importers for the concept lists of the prior work, one module per format, each returning a
//! [`ConceptTable`] that can be used, subset or compared like the project's own.
//!
//! - [`multisimlex`]: Multi-SimLex (Vulić et al. 2020), the source of Körner et al.'s concepts;
//!   nouns only.
//! - [`dumas`]: Dumas et al.'s BabelNet lists, `data/<lang>/word_translation.csv`, whose cells
//!   are Python list literals.
//! - [`wendler`]: Wendler et al.'s `data/langs/<lang>/clean.csv`.
//! - [`clap`]: the processed Multi-SimLex CSV the seed paper's code reads (`word_original`,
//!   a Python-list column per language, `ID`, `PoS`).
//!
//! [`Format::read`] imports any of them from a file or a folder.
//!
//! The prior formats carry no polysemy or homograph marks, so imported tables have none.
//! Concepts are named by the source's English key; a concept's English forms always start with
//! that key. Bad input is an [`Error`] naming file and line, never a panic.

pub mod clap;
pub mod dumas;
pub mod multisimlex;
mod pylist;
pub mod wendler;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::table::Origins;
use crate::{Concept, ConceptTable, Error, Lang, Location};

/// The formats an importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Format {
    /// [`multisimlex`]: `translation.csv` or per-language files, or a folder of them.
    MultiSimLex,
    /// [`dumas`]: one `word_translation.csv`, or the `data/` folder of `<lang>/` folders.
    Dumas,
    /// [`wendler`]: one `clean.csv`, or the `data/langs/` folder of `<lang>/` folders.
    Wendler,
    /// [`clap`]: the processed Multi-SimLex CSV.
    Clap,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [
        Format::MultiSimLex,
        Format::Dumas,
        Format::Wendler,
        Format::Clap,
    ];

    /// The format's name on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Format::MultiSimLex => "multisimlex",
            Format::Dumas => "dumas",
            Format::Wendler => "wendler",
            Format::Clap => "clap",
        }
    }

    /// The format named `name` (as [`Format::name`] writes it, case ignored).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Imports `path`: a file, or for the formats of several files, a folder of them.
    pub fn read(self, path: &Path) -> Result<ConceptTable, Error> {
        let dir = path.is_dir();
        match self {
            Format::MultiSimLex if dir => multisimlex::read_dir(path),
            Format::MultiSimLex => multisimlex::read_files(&[path.to_owned()]),
            Format::Dumas if dir => dumas::read_dir(path),
            Format::Dumas => dumas::read_file(path),
            Format::Wendler if dir => wendler::read_dir(path),
            Format::Wendler => wendler::read_files(&[path.to_owned()]),
            Format::Clap => clap::read_file(path),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Gathers concepts in first-seen order, with their forms deduplicated in first-seen order.
#[derive(Debug, Default)]
struct Collector {
    index: HashMap<String, usize>,
    concepts: Vec<Concept>,
    origins: Vec<Location>,
    languages: BTreeSet<Lang>,
}

impl Collector {
    /// Declares a language of the table (a column), whether or not it gets forms.
    fn language(&mut self, lang: Lang) {
        self.languages.insert(lang);
    }

    /// The concept `id`, created (with its origin `at`) if new.
    fn concept(&mut self, id: &str, at: &Location) -> &mut Concept {
        let i = *self.index.entry(id.to_owned()).or_insert_with(|| {
            self.concepts.push(Concept {
                id: id.to_owned(),
                forms: Default::default(),
            });
            self.origins.push(at.clone());
            self.concepts.len() - 1
        });
        &mut self.concepts[i]
    }

    /// Adds `form` to `id` in `lang` unless it is already there; blank forms are ignored.
    fn add(&mut self, id: &str, at: &Location, lang: Lang, form: &str) {
        self.languages.insert(lang);
        let form = form.trim();
        if form.is_empty() {
            return;
        }
        let forms = self.concept(id, at).forms.entry(lang).or_default();
        if !forms.iter().any(|f| f == form) {
            forms.push(form.to_owned());
        }
    }

    /// Makes `form` the first (preferred) English form of `id`.
    fn english_first(&mut self, id: &str, at: &Location, form: &str) {
        let en = Lang::from_code("en").expect("English is in the language table");
        self.languages.insert(en);
        let form = form.trim().to_owned();
        let forms = self.concept(id, at).forms.entry(en).or_default();
        forms.retain(|f| *f != form);
        forms.insert(0, form);
    }

    fn finish(self, source: PathBuf) -> Result<ConceptTable, Error> {
        let origins = Origins {
            concepts: self.origins,
            ..Default::default()
        };
        ConceptTable::build(
            source,
            self.languages.into_iter().collect(),
            self.concepts,
            Vec::new(),
            Vec::new(),
            &origins,
        )
    }
}

/// The name a table of several files is known by: the one file, or the first file's folder.
fn source_of(paths: &[PathBuf]) -> PathBuf {
    match paths {
        [one] => one.clone(),
        [first, ..] => first
            .parent()
            .map_or_else(|| first.clone(), Path::to_path_buf),
        [] => PathBuf::new(),
    }
}

/// The sub-folders of `dir` named by a known language code that hold `file`, sorted by name.
fn language_dirs(dir: &Path, file: &str) -> Result<Vec<(Lang, PathBuf)>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingFile {
                path: dir.to_owned(),
            });
        }
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(lang) = name.to_str().and_then(Lang::from_code) else {
            continue;
        };
        let path = entry.path().join(file);
        if path.is_file() {
            found.push((lang, path));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    if found.is_empty() {
        return Err(Error::MissingFile {
            path: dir.join("<lang>").join(file),
        });
    }
    Ok(found)
}
