//! The crate's one error type, and the place in a file an error points at.

use std::fmt;
use std::path::PathBuf;

use crate::Lang;

/// Where in an input a problem is: a file, and the 1-based line when known.
///
/// Tables built in memory ([`crate::ConceptTable::new`]) have no lines; their errors name the
/// table's source alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or, for a table built in memory, the source it was given).
    pub file: PathBuf,
    /// The 1-based line; for a CSV record spanning lines, the line it starts on.
    pub line: Option<usize>,
}

impl Location {
    pub(crate) fn line(file: impl Into<PathBuf>, line: usize) -> Location {
        Location {
            file: file.into(),
            line: Some(line),
        }
    }

    pub(crate) fn file(file: impl Into<PathBuf>) -> Location {
        Location {
            file: file.into(),
            line: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Everything that can go wrong reading, building or querying a concept table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file the table or importer needs does not exist.
    #[error("missing file {}", path.display())]
    MissingFile {
        /// The path looked for.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The header row is not the one the format prescribes.
    #[error("{at}: header is {found:?}, expected {expected:?}")]
    BadHeader {
        /// The header line.
        at: Location,
        /// The header as read.
        found: Vec<String>,
        /// The header the format wants (or, for CSV formats, the columns it needs).
        expected: Vec<String>,
    },
    /// A row has more or fewer cells than the header.
    #[error("{at}: {found} columns, expected {expected}")]
    ColumnCount {
        /// The row.
        at: Location,
        /// Cells in the row.
        found: usize,
        /// Cells in the header.
        expected: usize,
    },
    /// A cell that must hold something is empty.
    #[error("{at}: empty cell in column {column:?}")]
    EmptyCell {
        /// The row.
        at: Location,
        /// The column's header.
        column: String,
    },
    /// A synonym list holds an empty form (a stray `|`, or `''` in a Python list).
    #[error("{at}: empty form in column {column:?}")]
    EmptyForm {
        /// The row.
        at: Location,
        /// The column's header.
        column: String,
    },
    /// Two concepts have the same id.
    #[error(
        "{at}: duplicate concept id {id:?}{}",
        first.as_ref().map(|f| format!(" (first at {f})")).unwrap_or_default()
    )]
    DuplicateConcept {
        /// The second occurrence.
        at: Location,
        /// The id.
        id: String,
        /// The first occurrence, when known.
        first: Option<Location>,
    },
    /// A language code that xlpatch does not know, in a file.
    #[error("{at}: unknown language {code:?}")]
    UnknownLanguageIn {
        /// The header or row naming it.
        at: Location,
        /// The code as written.
        code: String,
    },
    /// A language code that xlpatch does not know.
    #[error("unknown language {code:?}")]
    UnknownLanguage {
        /// The code as given.
        code: String,
    },
    /// A polysemy or homograph row names a concept that is not in the table.
    #[error("{at}: concept {concept:?} is not in the table")]
    UnknownConcept {
        /// The row.
        at: Location,
        /// The concept id.
        concept: String,
    },
    /// A polysemy or homograph row names a form the table does not list for that concept.
    #[error("{at}: {form:?} is not a form of {concept:?} in {:?}", lang.code())]
    FormNotInTable {
        /// The row.
        at: Location,
        /// The language.
        lang: Lang,
        /// The form.
        form: String,
        /// The concept id.
        concept: String,
    },
    /// A concept has no form in a language it was required in.
    #[error("concept {concept:?} has no form in {:?} ({})", lang.code(), table.display())]
    MissingForm {
        /// The concept id.
        concept: String,
        /// The language.
        lang: Lang,
        /// Where the table came from.
        table: PathBuf,
    },
    /// A concept id that is not in the table was asked for.
    #[error("concept {concept:?} is not in the table ({})", table.display())]
    NoSuchConcept {
        /// The id asked for.
        concept: String,
        /// Where the table came from.
        table: PathBuf,
    },
    /// A language that is not a language of the table was asked for or used.
    #[error("language {:?} is not in the table ({})", lang.code(), table.display())]
    LanguageNotInTable {
        /// The language.
        lang: Lang,
        /// Where the table came from.
        table: PathBuf,
    },
    /// A concept id or form holds a character the table format cannot write (a tab, a line
    /// break, or `|` in a form), or starts or ends with whitespace.
    #[error(
        "concept {concept:?}, column {column:?}: {text:?} cannot be written to a table \
         (a tab, a line break, '|', or whitespace at either end); fix it in the source"
    )]
    Unwritable {
        /// The concept id.
        concept: String,
        /// The column (`concept` or a language code).
        column: String,
        /// The id or form.
        text: String,
    },
    /// Any other malformed input: a broken quoted field, a bad Python literal, a gloss with
    /// nothing after `gloss:`, a row that contradicts another.
    #[error("{at}: {message}")]
    Malformed {
        /// The row.
        at: Location,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn malformed(at: Location, message: impl Into<String>) -> Error {
        Error::Malformed {
            at,
            message: message.into(),
        }
    }
}
