//! Multilingual concept tables for xlpatch: the nouns a sweep patches, their synonyms per
//! language, and the polysemy and homograph marks its error analysis rests on (docs/method.md,
//! "Concept pairs").
//!
//! A [`ConceptTable`] is one row per concept ([`Concept`]: a stable id and, per [`Lang`], a
//! synonym list whose first form is the preferred one), plus [`Polysemy`] marks (a form that
//! also names something else in its language) and [`Homograph`] marks (the same string naming
//! different things in two languages). The engine asks it for forms ([`ConceptTable::forms`],
//! [`ConceptTable::require`]) and restricts it to a study's languages
//! ([`ConceptTable::subset`]); the error analysis asks which concepts a generated word names
//! ([`ConceptTable::concepts_with_form`]), whether it is ambiguous
//! ([`ConceptTable::is_polysemous`]) and whether it is a homograph
//! ([`ConceptTable::homographs_of`]).
//!
//! **Design choice: a table is validated once, when it is built, and is immutable after.**
//! Every constructor ([`ConceptTable::load`] for the project's TSV format, [`ConceptTable::new`]
//! for tables built in code, and the [`import`] functions for the prior work's formats) checks
//! that ids are unique, forms non-empty, and every mark resolves to forms and concepts of the
//! table, and reports the file and line of the first problem. Consumers can then look forms up
//! without re-checking, and a table's lookup indexes cannot drift from its data. The crate
//! reads its formats by hand (a TSV splitter, an RFC 4180 CSV reader, a Python list-literal
//! parser) and depends on nothing but `thiserror`.

#![deny(missing_docs)]

mod error;
pub mod import;
mod lang;
mod table;
mod text;
mod tsv;

pub use error::{Error, Location};
pub use lang::Lang;
pub use table::{Concept, ConceptTable, Homograph, Meaning, Polysemy};
pub use tsv::{HOMOGRAPHS_FILE, NOUNS_FILE, POLYSEMY_FILE};
