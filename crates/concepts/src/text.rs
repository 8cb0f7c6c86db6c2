//! Reading input files as text, and a small CSV reader for the importers.
//!
//! The prior work's files are pandas-written CSV: comma-separated, fields quoted with `"`
//! when they hold a comma, quote or newline, a quote inside a quoted field doubled (`""`).
//! The reader follows RFC 4180 and is lenient where pandas output is known to be sloppy:
//! blank lines are skipped, CRLF is accepted, and whitespace between a closing quote and the
//! next comma (fixed-width padding, as in one of Dumas et al.'s files) is ignored.

use std::path::Path;

use crate::{Error, Location};

/// The file's text. A missing file is [`Error::MissingFile`]; bytes that are not UTF-8 are an
/// error naming the line; a leading byte-order mark is dropped.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingFile {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            Err(Error::malformed(
                Location::line(path, line),
                "not valid UTF-8",
            ))
        }
    }
}

/// One CSV record: the line it starts on and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits CSV text into records (the header is the first). Errors name `path` and the line.
pub(crate) fn parse_csv(text: &str, path: &Path) -> Result<Vec<Record>, Error> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false; // the current field was quoted (and its quotes are closed)
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some(c) if quoted => {
                    if !c.is_whitespace() {
                        return Err(Error::malformed(
                            Location::line(path, line),
                            format!(
                                "unexpected {c:?} after a closing quote (field {})",
                                fields.len() + 1
                            ),
                        ));
                    }
                }
                Some('"') if field.trim().is_empty() => {
                    // A quoted field (whitespace before the opening quote is padding).
                    field.clear();
                    let open_line = line;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(Error::malformed(
                                    Location::line(path, open_line),
                                    format!(
                                        "unterminated quoted field (field {})",
                                        fields.len() + 1
                                    ),
                                ));
                            }
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    quoted = true;
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].trim().is_empty() && !quoted;
        if !blank {
            records.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

/// CSV text whose first record is a header: the header, where it is (for errors about it),
/// and the records after it. An empty file is an error naming `path`.
pub(crate) fn parse_table(
    text: &str,
    path: &Path,
) -> Result<(Header, Location, Vec<Record>), Error> {
    let mut records = parse_csv(text, path)?;
    if records.is_empty() {
        return Err(Error::malformed(
            Location::file(path),
            "empty file, expected a header row",
        ));
    }
    let head = records.remove(0);
    Ok((
        Header::new(&head.fields),
        Location::line(path, head.line),
        records,
    ))
}

/// A CSV header: finds columns by name, ignoring ASCII case and surrounding whitespace.
#[derive(Debug)]
pub(crate) struct Header {
    names: Vec<String>,
}

impl Header {
    pub fn new(fields: &[String]) -> Header {
        Header {
            names: fields.iter().map(|f| f.trim().to_owned()).collect(),
        }
    }

    /// The trimmed column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// The column `name`, or a [`Error::BadHeader`] listing the columns `needed`.
    pub fn require(&self, name: &str, at: &Location, needed: &[&str]) -> Result<usize, Error> {
        self.find(name).ok_or_else(|| Error::BadHeader {
            at: at.clone(),
            found: self.names.clone(),
            expected: needed.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Checks that a record has as many fields as the header.
    pub fn check_width(&self, record: &Record, path: &Path) -> Result<(), Error> {
        if record.fields.len() == self.names.len() {
            Ok(())
        } else {
            Err(Error::ColumnCount {
                at: Location::line(path, record.line),
                found: record.fields.len(),
                expected: self.names.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
        parse_csv(text, Path::new("f.csv"))
            .map(|rs| rs.into_iter().map(|r| (r.line, r.fields)).collect())
            .map_err(|e| e.to_string())
    }

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse(text).unwrap().into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(fields("a,b,c\n1,,3\n"), [["a", "b", "c"], ["1", "", "3"]]);
        assert_eq!(
            fields("\"x,y\",\"say \"\"hi\"\"\"\n"),
            [["x,y", "say \"hi\""]]
        );
        assert_eq!(fields("\"\"\"A\"\" b\"\n"), [["\"A\" b"]]);
        assert_eq!(fields("a,\"\"\n"), [["a", ""]]);
        assert_eq!(fields("no newline at end"), [["no newline at end"]]);
    }

    #[test]
    fn lines_crlf_blank_and_multiline() {
        let got = parse("h1,h2\r\n\r\n\"multi\nline\",2\r\nx,y\n").unwrap();
        assert_eq!(got[0], (1, vec!["h1".to_string(), "h2".to_string()]));
        assert_eq!(
            got[1],
            (3, vec!["multi\nline".to_string(), "2".to_string()])
        );
        assert_eq!(got[2].0, 5);
    }

    #[test]
    fn padding_around_quoted_fields() {
        assert_eq!(
            fields("fr    ,de\n\"['a']\"   ,  \"['b']\"\n")[1],
            ["['a']", "['b']"]
        );
        assert_eq!(fields("fr    ,de\n")[0], ["fr    ", "de"]);
    }

    #[test]
    fn malformed_input_names_the_line() {
        assert_eq!(
            parse("a\n\"open,b\nc\n").unwrap_err(),
            "f.csv:2: unterminated quoted field (field 1)"
        );
        assert_eq!(
            parse("a,b\n\"x\"y,z\n").unwrap_err(),
            "f.csv:2: unexpected 'y' after a closing quote (field 1)"
        );
    }

    #[test]
    fn missing_and_non_utf8_files() {
        let dir =
            std::env::temp_dir().join(format!("xlpatch-concepts-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.csv");
        assert!(matches!(
            read_text(&missing),
            Err(Error::MissingFile { .. })
        ));
        let bad = dir.join("bad.csv");
        std::fs::write(&bad, b"ok\nok\n\xff\n").unwrap();
        let err = read_text(&bad).unwrap_err().to_string();
        assert!(err.ends_with("bad.csv:3: not valid UTF-8"), "{err}");
        let bom = dir.join("bom.csv");
        std::fs::write(&bom, "\u{feff}a,b\n").unwrap();
        assert_eq!(read_text(&bom).unwrap(), "a,b\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
