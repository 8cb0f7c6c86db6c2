//! `xlpatch concepts import`: a concept table of the prior work (Multi-SimLex, Dumas et al.,
//! Wendler et al., the seed paper's processed Multi-SimLex) written in the project's format,
//! for `concepts = "DIR"` in a sweep config and for `xlpatch report --concepts DIR`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use xlpatch_core::concepts::import::Format;
use xlpatch_core::concepts::{ConceptTable, Lang};

#[derive(Debug, Subcommand)]
pub(crate) enum ConceptsCommand {
    /// Import a concept table of another format into the project's (nouns.tsv).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The format: multisimlex (translation.csv, ENG.csv ... or their folder), dumas
    /// (word_translation.csv or data/), wendler (clean.csv or data/langs/), clap (the seed
    /// paper's processed Multi-SimLex CSV: word_original, a list column per language, ID, PoS).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    from: Format,
    /// The file or folder to import.
    path: PathBuf,
    /// The table folder to write (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Keep only these languages (comma-separated ISO codes), and the concepts with a form in
    /// each; default: every language of the source.
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    languages: Vec<String>,
}

fn parse_format(name: &str) -> Result<Format, String> {
    Format::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format {name:?}: one of {}", names.join(", "))
    })
}

pub(crate) fn run(cmd: ConceptsCommand) -> Result<()> {
    match cmd {
        ConceptsCommand::Import(args) => import(args),
    }
}

fn import(args: ImportArgs) -> Result<()> {
    let table = args
        .from
        .read(&args.path)
        .with_context(|| format!("cannot import {} as {}", args.path.display(), args.from))?;
    let langs: Vec<Lang> = if args.languages.is_empty() {
        table.languages().to_vec()
    } else {
        args.languages
            .iter()
            .map(|c| Lang::from_code(c.trim()).with_context(|| format!("unknown language {c:?}")))
            .collect::<Result<_>>()?
    };
    // The table format has no empty cells: keep the concepts complete in every language.
    let kept: ConceptTable = table.subset(&langs)?;
    let dropped: Vec<&str> = table
        .concepts()
        .iter()
        .filter(|c| kept.concept(&c.id).is_none())
        .map(|c| c.id.as_str())
        .collect();
    if kept.concepts().is_empty() {
        bail!(
            "none of the {} concepts of {} has a form in every one of {}: choose fewer with \
             --languages",
            table.concepts().len(),
            args.path.display(),
            codes(&langs)
        );
    }
    kept.save(&args.out)
        .with_context(|| format!("cannot write the table into {}", args.out.display()))?;
    println!(
        "imported {} concepts in {} languages ({}) from {} into {}",
        kept.concepts().len(),
        langs.len(),
        codes(&langs),
        args.path.display(),
        args.out.display()
    );
    if !dropped.is_empty() {
        let shown: Vec<&str> = dropped.iter().take(10).copied().collect();
        println!(
            "left out {} concepts without a form in every language ({}{}); --languages keeps fewer languages",
            dropped.len(),
            shown.join(", "),
            if dropped.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn codes(langs: &[Lang]) -> String {
    langs
        .iter()
        .map(|l| l.code())
        .collect::<Vec<_>>()
        .join(", ")
}
