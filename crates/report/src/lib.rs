//! The report of an xlpatch sweep (the method: docs/method.md): what a researcher reads after
//! `xlpatch sweep`. [`build`] reads a results directory (`results.jsonl`, `config.toml`,
//! `run.json`, `prompts.jsonl`) and writes into an output directory:
//!
//! - `index.html`: one self-contained page (inline SVG, the font embedded, no script, no
//!   network) with the plots, the numbers behind each, the sweep's config and model hashes,
//!   and the error-analysis counts;
//! - `plots/*.svg` and `plots/*.png`: every plot in both formats;
//! - `stats.csv`: every mean with its 95% bootstrap interval;
//! - `errors.csv`: the error-analysis counts per checkpoint, setting and start layer;
//! - `review.csv`: every generation with its automatic category and an empty `human_label`
//!   column, for the manual analysis the paper did.
//!
//! Generations are counted once each: the unpatched run of a target prompt, written once per
//! start layer, is one generation. What the report could not use or should warn about (the
//! rows of an interrupted unit, checkpoints with identical weights, coarse intervals) is
//! listed at the top of the page and returned in [`Written::notes`].
//!
//! **Design choice: the report reads result files, never the engine.** Everything it shows
//! comes from the files a sweep leaves plus the concept table the sweep named, so a report
//! can be rebuilt anywhere, from a merged or copied results directory, without models or
//! plugins. Rows are read through [`xlpatch_results::Row`], the type the engine writes, and
//! this crate does not depend on the engine (no tokenizer, plugin loader or TOML parser).
//!
//! Intervals are percentile bootstraps over concept pairs, seeded (`xlpatch_rng`), so a
//! report is byte-for-byte reproducible. Plot text is laid out with a subset of DejaVu Sans
//! compiled into the crate (`fonts/`), never with the machine's fonts.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

mod html;
mod input;
mod plot;
mod review;
mod stats;
mod taxonomy;

pub use taxonomy::Category;

/// Errors of the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the results directory could not be read or is malformed.
    #[error("{}: {what}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A results file could not be read.
    #[error(transparent)]
    Results(#[from] xlpatch_results::Error),
    /// The concept table could not be loaded.
    #[error("concept table {}", path.display())]
    Concepts {
        /// The table's directory.
        path: PathBuf,
        /// Why (boxed: the table's errors are large and rare).
        source: Box<xlpatch_concepts::Error>,
    },
    /// An output file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An option cannot give a meaningful report.
    #[error("{option} {value}: {why}")]
    Option {
        /// The option, as the command line spells it.
        option: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused, and what to give instead.
        why: String,
    },
    /// A plot could not be drawn.
    #[error("plot {name}: {what}")]
    Plot {
        /// The plot's file name (without extension).
        name: String,
        /// What plotters reported.
        what: String,
    },
}

/// The fewest bootstrap resamples [`build`] accepts: one draw has no spread (its interval has
/// zero width whatever the data), two is the least that has one.
pub const MIN_RESAMPLES: usize = 2;

/// Below this many resamples the 2.5% and 97.5% quantiles of the draws fall between the two
/// smallest (largest) draws, i.e. each tail holds less than one draw: the report says the
/// intervals are coarse.
const COARSE_RESAMPLES: usize = 40;

/// How a report is built.
#[derive(Debug, Clone)]
pub struct Options {
    /// The concept table's directory; by default the one `config.toml` names, taken from the
    /// current directory and then from the results directory.
    pub concepts: Option<PathBuf>,
    /// Bootstrap resamples per interval, at least [`MIN_RESAMPLES`].
    pub resamples: usize,
    /// The seed of the bootstrap.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concepts: None,
            resamples: 1000,
            seed: 0,
        }
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The HTML report.
    pub html: PathBuf,
    /// Every plot file (SVG and PNG).
    pub plots: Vec<PathBuf>,
    /// The review sheet.
    pub review: PathBuf,
    /// The table of means and intervals.
    pub stats: PathBuf,
    /// The error-analysis counts.
    pub errors: PathBuf,
    /// How many result rows were read.
    pub rows: usize,
    /// How many generations (each once) fell in each category, in [`Category::ALL`] order.
    pub categories: Vec<(Category, usize)>,
    /// What a reader should know (left-out rows of an interrupted unit, identical
    /// checkpoints, coarse intervals), one sentence each; also at the top of the page.
    pub notes: Vec<String>,
}

/// Reads the results in `results` and writes the report into `out` (created if needed).
pub fn build(results: &Path, out: &Path, options: &Options) -> Result<Written, Error> {
    if options.resamples < MIN_RESAMPLES {
        return Err(Error::Option {
            option: "--resamples",
            value: options.resamples.to_string(),
            why: format!(
                "a bootstrap interval needs at least {MIN_RESAMPLES} resamples (fewer give an \
                 interval of zero width whatever the data); the default is {}",
                Options::default().resamples
            ),
        });
    }
    let input = input::Results::read(results)?;
    let table = input.concept_table(options.concepts.as_deref())?;
    let stats = stats::Stats::compute(&input, options.resamples, options.seed);
    let generations = taxonomy::unique_generations(&input);
    let classified = taxonomy::classify_rows(&input, &table, &generations);
    let notes = notes(&input, options);

    let plots_dir = out.join("plots");
    create_dir(&plots_dir)?;
    let plots = plot::draw_all(&input, &stats, &plots_dir)?;

    let review = out.join("review.csv");
    write(
        &review,
        review::review_csv(&input, &generations, &classified),
    )?;
    let stats_path = out.join("stats.csv");
    write(&stats_path, stats.to_csv(&input))?;
    let counts = taxonomy::Counts::new(&input, &generations, &classified);
    let errors = out.join("errors.csv");
    write(&errors, counts.to_csv())?;

    let html = out.join("index.html");
    write(
        &html,
        html::page(&input, &table, &stats, &counts, &plots, options, &notes),
    )?;
    let categories = Category::ALL
        .iter()
        .map(|&c| (c, counts.total(c)))
        .collect();
    Ok(Written {
        html,
        plots: plots
            .iter()
            .flat_map(|p| [p.svg_path.clone(), p.png_path.clone()])
            .collect(),
        review,
        stats: stats_path,
        errors,
        rows: input.rows.len(),
        categories,
        notes,
    })
}

/// How many units [`notes`] names one by one; the rest are counted.
const NAMED_UNITS: usize = 10;

/// What the reader of `results` should know, one sentence each.
fn notes(results: &input::Results, options: &Options) -> Vec<String> {
    let mut notes = Vec::new();
    let d = &results.dropped;
    let file = xlpatch_results::JSONL_FILE;
    if !d.incomplete.is_empty() {
        let rows: usize = d.incomplete.iter().map(|(_, n, _)| n).sum();
        let mut named: Vec<String> = d
            .incomplete
            .iter()
            .take(NAMED_UNITS)
            .map(|(unit, n, want)| match want {
                Some(w) => format!("{unit} ({n} of its {w} rows)"),
                None => format!("{unit} ({n} rows, no unit_rows)"),
            })
            .collect();
        if d.incomplete.len() > NAMED_UNITS {
            named.push(format!("and {} more", d.incomplete.len() - NAMED_UNITS));
        }
        notes.push(format!(
            "{file}: {} incomplete unit(s), {rows} row(s) in all, left out of the report (an \
             interrupted sweep; running it again with the same config and --out completes \
             them): {}.",
            d.incomplete.len(),
            named.join(", ")
        ));
    }
    if !d.repeated.is_empty() {
        notes.push(format!(
            "{file}: {} unit(s) written twice, the first copy used: {}.",
            d.repeated.len(),
            d.repeated.join(", ")
        ));
    }
    if d.torn_tail_bytes > 0 {
        notes.push(format!(
            "{file} ends in half a line ({} bytes, a row being written when the sweep \
             stopped), left out.",
            d.torn_tail_bytes
        ));
    }
    if !results.identical.is_empty() {
        let describe = |c: &str| {
            let label = results.checkpoint_label(c);
            if label == c {
                label
            } else {
                format!("{label} ({c})")
            }
        };
        let pairs: Vec<String> = results
            .identical
            .iter()
            .map(|(c, first)| format!("{} is identical to {}", describe(c), describe(first)))
            .collect();
        notes.push(format!(
            "Identical weights: {} (the same content hash: their results are expected to be \
             equal).",
            pairs.join("; ")
        ));
    }
    if options.resamples < COARSE_RESAMPLES {
        notes.push(format!(
            "{} bootstrap resamples: the 95% intervals' ends fall between the two most extreme \
             draws and are coarse; {COARSE_RESAMPLES} or more (the default is {}) resolve them.",
            options.resamples,
            Options::default().resamples
        ));
    }
    notes
}

fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `records` under `header` as RFC 4180 CSV (a field with a comma, a quote or a line break
/// quoted, quotes doubled; `\n` between records), which spreadsheets and `pandas.read_csv`
/// read as they are.
pub(crate) fn csv_text<I, R, F>(header: &[&str], records: I) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing into memory cannot fail, and every field is text.
    w.write_record(header).expect("csv into memory");
    for record in records {
        w.write_record(record).expect("csv into memory");
    }
    String::from_utf8(w.into_inner().expect("csv into memory")).expect("fields are text")
}

pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}
