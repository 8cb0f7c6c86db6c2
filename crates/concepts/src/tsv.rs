//! Reading the project's table format: `nouns.tsv`, `polysemy.tsv`, `homographs.tsv`
//! (described in `fixtures/concepts/README.md`).
//!
//! Tab-separated, one header row, no quoting, UTF-8. A synonym cell is `|`-separated,
//! preferred form first. Every error names the file and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::table::Origins;
use crate::text::read_text;
use crate::{Concept, ConceptTable, Error, Homograph, Lang, Location, Meaning, Polysemy};

/// The concept file of a table folder.
pub const NOUNS_FILE: &str = "nouns.tsv";
/// The polysemy marks of a table folder (optional).
pub const POLYSEMY_FILE: &str = "polysemy.tsv";
/// The homograph marks of a table folder (optional).
pub const HOMOGRAPHS_FILE: &str = "homographs.tsv";

const POLYSEMY_HEADER: [&str; 5] = ["lang", "form", "concept", "other_concept", "note"];
const HOMOGRAPHS_HEADER: [&str; 6] = ["form", "lang_a", "concept_a", "lang_b", "meaning_b", "note"];

/// The data lines of a TSV file: (1-based line, cells). Blank lines are skipped; a trailing
/// `\r` is dropped so that CRLF files read the same.
fn lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.split('\n').enumerate().filter_map(|(i, line)| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        (!line.trim().is_empty()).then(|| (i + 1, line.split('\t').collect()))
    })
}

/// The header of a TSV file and its data rows, each with its location.
type Rows<'t> = (Vec<String>, Vec<(Location, Vec<&'t str>)>);

/// Splits the rows of a file after checking the header with `check_header`.
fn rows<'t>(
    path: &Path,
    text: &'t str,
    check_header: impl FnOnce(&[&str], Location) -> Result<(), Error>,
) -> Result<Rows<'t>, Error> {
    let mut it = lines(text);
    let Some((line, header)) = it.next() else {
        return Err(Error::malformed(
            Location::file(path),
            "empty file, expected a header row",
        ));
    };
    check_header(&header, Location::line(path, line))?;
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    for (line, cells) in it {
        let at = Location::line(path, line);
        if cells.len() != header.len() {
            return Err(Error::ColumnCount {
                at,
                found: cells.len(),
                expected: header.len(),
            });
        }
        for (column, cell) in header.iter().zip(&cells) {
            if cell.trim().is_empty() {
                return Err(Error::EmptyCell {
                    at,
                    column: column.clone(),
                });
            }
            if cell.trim() != *cell {
                return Err(Error::malformed(
                    at,
                    format!("leading or trailing whitespace in column {column:?}"),
                ));
            }
        }
        out.push((at, cells));
    }
    Ok((header, out))
}

fn fixed_header(expected: &[&str]) -> impl FnOnce(&[&str], Location) -> Result<(), Error> {
    move |found, at| {
        if found == expected {
            Ok(())
        } else {
            Err(Error::BadHeader {
                at,
                found: found.iter().map(|s| s.to_string()).collect(),
                expected: expected.iter().map(|s| s.to_string()).collect(),
            })
        }
    }
}

fn lang_cell(code: &str, at: &Location) -> Result<Lang, Error> {
    Lang::from_code(code).ok_or_else(|| Error::UnknownLanguageIn {
        at: at.clone(),
        code: code.into(),
    })
}

/// The languages of `nouns.tsv`, its concepts, and the line of each concept.
type Nouns = (Vec<Lang>, Vec<Concept>, Vec<Location>);

/// Reads `nouns.tsv`: the languages (header) and the concepts.
fn read_nouns(path: &Path) -> Result<Nouns, Error> {
    let text = read_text(path)?;
    let mut languages = Vec::new();
    let (header, rows) = rows(path, &text, |header, at| {
        if header.first() != Some(&"concept") || header.len() < 2 {
            return Err(Error::BadHeader {
                at,
                found: header.iter().map(|s| s.to_string()).collect(),
                expected: vec!["concept".into(), "<language code>...".into()],
            });
        }
        for code in &header[1..] {
            let lang = lang_cell(code, &at)?;
            if languages.contains(&lang) {
                return Err(Error::malformed(
                    at,
                    format!("language column {code:?} appears twice"),
                ));
            }
            languages.push(lang);
        }
        Ok(())
    })?;
    let mut concepts = Vec::new();
    let mut origins = Vec::new();
    let mut first_line: BTreeMap<&str, Location> = BTreeMap::new();
    for (at, cells) in rows {
        let id = cells[0];
        if let Some(first) = first_line.get(id) {
            return Err(Error::DuplicateConcept {
                at,
                id: id.into(),
                first: Some(first.clone()),
            });
        }
        first_line.insert(id, at.clone());
        let mut forms = BTreeMap::new();
        for ((&lang, cell), column) in languages.iter().zip(&cells[1..]).zip(&header[1..]) {
            let mut list: Vec<String> = Vec::new();
            for form in cell.split('|') {
                if form.is_empty() {
                    return Err(Error::EmptyForm {
                        at,
                        column: column.clone(),
                    });
                }
                if form.trim() != form {
                    return Err(Error::malformed(
                        at,
                        format!("{column}: leading or trailing whitespace in form {form:?}"),
                    ));
                }
                if list.iter().any(|f| f == form) {
                    return Err(Error::malformed(
                        at,
                        format!("{column}: form {form:?} is listed twice"),
                    ));
                }
                list.push(form.to_owned());
            }
            forms.insert(lang, list);
        }
        concepts.push(Concept {
            id: id.to_owned(),
            forms,
        });
        origins.push(at);
    }
    Ok((languages, concepts, origins))
}

fn read_polysemy(path: &Path) -> Result<(Vec<Polysemy>, Vec<Location>), Error> {
    let text = read_text(path)?;
    let (_, rows) = rows(path, &text, fixed_header(&POLYSEMY_HEADER))?;
    let mut out = Vec::new();
    let mut origins = Vec::new();
    for (at, c) in rows {
        out.push(Polysemy {
            lang: lang_cell(c[0], &at)?,
            form: c[1].to_owned(),
            concept: c[2].to_owned(),
            other: Meaning::parse(c[3]),
            note: c[4].to_owned(),
        });
        origins.push(at);
    }
    Ok((out, origins))
}

fn read_homographs(path: &Path) -> Result<(Vec<Homograph>, Vec<Location>), Error> {
    let text = read_text(path)?;
    let (_, rows) = rows(path, &text, fixed_header(&HOMOGRAPHS_HEADER))?;
    let mut out = Vec::new();
    let mut origins = Vec::new();
    for (at, c) in rows {
        out.push(Homograph {
            form: c[0].to_owned(),
            lang_a: lang_cell(c[1], &at)?,
            concept_a: c[2].to_owned(),
            lang_b: lang_cell(c[3], &at)?,
            meaning_b: Meaning::parse(c[4]),
            note: c[5].to_owned(),
        });
        origins.push(at);
    }
    Ok((out, origins))
}

impl ConceptTable {
    /// Loads a table folder: `nouns.tsv` (required), `polysemy.tsv` and `homographs.tsv`
    /// (optional: a table without marks is still a table), and validates it. Errors name the
    /// file and line, e.g. `fixtures/concepts/nouns.tsv:12: 15 columns, expected 16`.
    pub fn load(dir: impl AsRef<Path>) -> Result<ConceptTable, Error> {
        let dir = dir.as_ref();
        let nouns_path = dir.join(NOUNS_FILE);
        let (languages, concepts, concept_origins) = read_nouns(&nouns_path)?;
        let optional = |name: &str| -> Option<PathBuf> {
            let path = dir.join(name);
            path.exists().then_some(path)
        };
        let (polysemy, polysemy_origins) = match optional(POLYSEMY_FILE) {
            Some(path) => read_polysemy(&path)?,
            None => Default::default(),
        };
        let (homographs, homograph_origins) = match optional(HOMOGRAPHS_FILE) {
            Some(path) => read_homographs(&path)?,
            None => Default::default(),
        };
        let origins = Origins {
            concepts: concept_origins,
            polysemy: polysemy_origins,
            homographs: homograph_origins,
        };
        ConceptTable::build(
            nouns_path, languages, concepts, polysemy, homographs, &origins,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOUNS: &str = "concept\ten\tde\tnl\n\
        lake\tlake\tSee\tmeer\n\
        sea\tsea\tMeer|See\tzee\n\
        bread\tbread\tBrot\tbrood\n";
    const POLY: &str = "lang\tform\tconcept\tother_concept\tnote\n\
        de\tSee\tlake\tsea\tder See, die See\n\
        en\tbread\tbread\tgloss:money (slang)\tslang\n";
    const HOMO: &str = "form\tlang_a\tconcept_a\tlang_b\tmeaning_b\tnote\n\
        meer\tnl\tlake\tde\tsea\tcase-insensitive\n\
        brood\tnl\tbread\ten\tgloss:offspring\tx\n";

    /// Writes a table folder with the given files and loads it; returns the error text.
    fn load(files: &[(&str, &str)]) -> Result<ConceptTable, String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("xlpatch-concepts-tsv-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let result = ConceptTable::load(&dir).map_err(|e| {
            // Errors name files by their full path; keep only the file name for the tests.
            e.to_string().replace(&format!("{}/", dir.display()), "")
        });
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    fn err(files: &[(&str, &str)]) -> String {
        load(files).unwrap_err()
    }

    #[test]
    fn loads_all_three_files() {
        let t = load(&[
            ("nouns.tsv", NOUNS),
            ("polysemy.tsv", POLY),
            ("homographs.tsv", HOMO),
        ])
        .unwrap();
        assert_eq!(t.languages().len(), 3);
        assert_eq!(t.concepts().len(), 3);
        assert_eq!(t.polysemy().len(), 2);
        assert_eq!(t.homographs().len(), 2);
        assert!(t.source().ends_with("nouns.tsv"));
    }

    #[test]
    fn marks_are_optional_nouns_is_not() {
        assert_eq!(load(&[("nouns.tsv", NOUNS)]).unwrap().polysemy().len(), 0);
        assert!(err(&[("polysemy.tsv", POLY)]).starts_with("missing file "));
        assert!(err(&[("polysemy.tsv", POLY)]).ends_with("nouns.tsv"));
    }

    #[test]
    fn crlf_and_blank_lines_are_tolerated() {
        let crlf = NOUNS.replace('\n', "\r\n") + "\r\n";
        assert_eq!(load(&[("nouns.tsv", &crlf)]).unwrap().concepts().len(), 3);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "concept\ten\tde\na\tx\n",
                "nouns.tsv:2: 2 columns, expected 3",
            ),
            (
                "concept\ten\tde\na\tx\t\n",
                "nouns.tsv:2: empty cell in column \"de\"",
            ),
            (
                "concept\ten\tde\na\tx|\tY\n",
                "nouns.tsv:2: empty form in column \"en\"",
            ),
            (
                "concept\ten\txx\na\tx\tY\n",
                "nouns.tsv:1: unknown language \"xx\"",
            ),
            (
                "concept\ten\tde\na\tx\tY\n\nb\ty\tZ\na\tz\tW\n",
                "nouns.tsv:5: duplicate concept id \"a\" (first at nouns.tsv:2)",
            ),
            (
                "concept\ten\tde\na\tx|x\tY\n",
                "nouns.tsv:2: en: form \"x\" is listed twice",
            ),
            (
                "concept\ten\tde\na\tx \tY\n",
                "nouns.tsv:2: leading or trailing whitespace in column \"en\"",
            ),
            (
                "id\ten\n",
                "nouns.tsv:1: header is [\"id\", \"en\"], expected [\"concept\", \"<language code>...\"]",
            ),
            ("", "nouns.tsv: empty file, expected a header row"),
        ];
        for (nouns, want) in cases {
            assert_eq!(err(&[("nouns.tsv", nouns)]), *want, "input {nouns:?}");
        }
    }

    #[test]
    fn marks_must_resolve() {
        let poly = |row: &str| {
            err(&[
                ("nouns.tsv", NOUNS),
                ("polysemy.tsv", &format!("{POLY}{row}\n")),
            ])
        };
        assert_eq!(
            poly("de\tSee\tcow\tsea\tx"),
            "polysemy.tsv:4: concept \"cow\" is not in the table"
        );
        assert_eq!(
            poly("de\tSea\tlake\tsea\tx"),
            "polysemy.tsv:4: \"Sea\" is not a form of \"lake\" in \"de\""
        );
        assert_eq!(
            poly("de\tBrot\tbread\tsea\tx"),
            "polysemy.tsv:4: \"Brot\" is not a form of \"sea\" in \"de\""
        );
        assert_eq!(
            poly("de\tBrot\tbread\tgloss: \tx"),
            "polysemy.tsv:4: leading or trailing whitespace in column \"other_concept\""
        );
        assert_eq!(
            poly("de\tBrot\tbread\tgloss:\tx"),
            "polysemy.tsv:4: empty gloss after \"gloss:\""
        );
        assert_eq!(
            poly("de\tBrot\tbread\tbread\tx"),
            "polysemy.tsv:4: the other meaning \"bread\" is the concept itself"
        );
        assert_eq!(
            poly("xx\tBrot\tbread\tsea\tx"),
            "polysemy.tsv:4: unknown language \"xx\""
        );
        assert_eq!(
            poly("de\tBrot\tbread"),
            "polysemy.tsv:4: 3 columns, expected 5"
        );

        let homo = |row: &str| {
            err(&[
                ("nouns.tsv", NOUNS),
                ("homographs.tsv", &format!("{HOMO}{row}\n")),
            ])
        };
        assert_eq!(
            homo("zee\tnl\tsea\tde\tlake\tx"),
            "homographs.tsv:4: \"zee\" is not a form of \"lake\" in \"de\""
        );
        assert_eq!(
            homo("zee\tnl\tlake\ten\tgloss:x\tx"),
            "homographs.tsv:4: \"zee\" is not a form of \"lake\" in \"nl\""
        );
        assert_eq!(
            homo("zee\tnl\tsea\tnl\tgloss:x\tx"),
            "homographs.tsv:4: lang_a equals lang_b (that is polysemy, not a homograph)"
        );
        assert!(
            err(&[("nouns.tsv", NOUNS), ("homographs.tsv", "form\tlang\n")])
                .starts_with("homographs.tsv:1: header is")
        );
    }
}

/// A cell of a written table: refused when the format could not read it back.
fn cell<'a>(concept: &str, column: &str, text: &'a str, in_list: bool) -> Result<&'a str, Error> {
    let bad = text.is_empty()
        || text.trim() != text
        || text.contains(['\t', '\n', '\r'])
        || (in_list && text.contains('|'));
    if bad {
        return Err(Error::Unwritable {
            concept: concept.to_owned(),
            column: column.to_owned(),
            text: text.to_owned(),
        });
    }
    Ok(text)
}

impl ConceptTable {
    /// The table in the project's format: the texts of `nouns.tsv`, and of `polysemy.tsv` and
    /// `homographs.tsv` when it has marks (`None` otherwise). Every concept needs a form in
    /// every language of the table (the format has no empty cells: restrict an imported table
    /// with [`ConceptTable::subset`] first); a form with a tab, a line break or `|` is refused.
    pub fn to_tsv(&self) -> Result<[(&'static str, Option<String>); 3], Error> {
        let mut nouns = String::from("concept");
        for lang in self.languages() {
            nouns.push('\t');
            nouns.push_str(lang.code());
        }
        nouns.push('\n');
        for c in self.concepts() {
            nouns.push_str(cell(&c.id, "concept", &c.id, false)?);
            for &lang in self.languages() {
                let forms = c.forms_in(lang);
                if forms.is_empty() {
                    return Err(Error::MissingForm {
                        concept: c.id.clone(),
                        lang,
                        table: self.source().to_owned(),
                    });
                }
                nouns.push('\t');
                for (i, f) in forms.iter().enumerate() {
                    if i > 0 {
                        nouns.push('|');
                    }
                    nouns.push_str(cell(&c.id, lang.code(), f, true)?);
                }
            }
            nouns.push('\n');
        }
        let meaning = |m: &Meaning| match m {
            Meaning::Concept(id) => id.clone(),
            Meaning::Gloss(g) => format!("gloss:{g}"),
        };
        let note = |n: &str| {
            if n.trim().is_empty() {
                "-".to_owned()
            } else {
                n.trim().to_owned()
            }
        };
        let polysemy = (!self.polysemy().is_empty()).then(|| {
            let mut t = POLYSEMY_HEADER.join("\t") + "\n";
            for p in self.polysemy() {
                let row = [
                    p.lang.code().to_owned(),
                    p.form.clone(),
                    p.concept.clone(),
                    meaning(&p.other),
                    note(&p.note),
                ];
                t.push_str(&(row.join("\t") + "\n"));
            }
            t
        });
        let homographs = (!self.homographs().is_empty()).then(|| {
            let mut t = HOMOGRAPHS_HEADER.join("\t") + "\n";
            for h in self.homographs() {
                let row = [
                    h.form.clone(),
                    h.lang_a.code().to_owned(),
                    h.concept_a.clone(),
                    h.lang_b.code().to_owned(),
                    meaning(&h.meaning_b),
                    note(&h.note),
                ];
                t.push_str(&(row.join("\t") + "\n"));
            }
            t
        });
        Ok([
            (NOUNS_FILE, Some(nouns)),
            (POLYSEMY_FILE, polysemy),
            (HOMOGRAPHS_FILE, homographs),
        ])
    }

    /// Writes the table into the folder `dir` (created) in the project's format, so that
    /// [`ConceptTable::load`] reads it back (see [`ConceptTable::to_tsv`]).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), Error> {
        let dir = dir.as_ref();
        let files = self.to_tsv()?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in files {
            let path = dir.join(name);
            match text {
                Some(text) => std::fs::write(&path, text).map_err(io(&path))?,
                // A stale marks file from an earlier table would be read with this one.
                None if path.exists() => std::fs::remove_file(&path).map_err(io(&path))?,
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn the_project_table_round_trips() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/concepts");
        let table = ConceptTable::load(&root).unwrap();
        let dir = std::env::temp_dir().join(format!("xlpatch-concepts-{}", std::process::id()));
        table.save(&dir).unwrap();
        let back = ConceptTable::load(&dir).unwrap();
        assert_eq!(back.languages(), table.languages());
        assert_eq!(back.concepts(), table.concepts());
        assert_eq!(back.polysemy(), table.polysemy());
        assert_eq!(back.homographs(), table.homographs());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_tables_are_refused() {
        let l = |c: &str| Lang::from_code(c).unwrap();
        let table = |forms: &[(&str, &[&str])]| {
            let concept = Concept {
                id: "dog".into(),
                forms: forms
                    .iter()
                    .map(|(c, f)| (l(c), f.iter().map(|s| s.to_string()).collect()))
                    .collect(),
            };
            ConceptTable::new("t", vec![l("en"), l("de")], vec![concept], vec![], vec![]).unwrap()
        };
        let err = table(&[("en", &["dog"])]).to_tsv().unwrap_err().to_string();
        assert!(err.contains("no form in \"de\""), "{err}");
        let err = table(&[("en", &["dog"]), ("de", &["Hu|nd"])])
            .to_tsv()
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"Hu|nd\" cannot be written"), "{err}");
        let ok = table(&[("en", &["dog"]), ("de", &["Hund", "Köter"])])
            .to_tsv()
            .unwrap();
        assert_eq!(
            ok[0].1.as_deref(),
            Some("concept\ten\tde\ndog\tdog\tHund|Köter\n")
        );
    }
}
