//! `xlpatch plugins`: what can be loaded, and what was refused and why.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// List every plugin found: name, kind, version and path; refused libraries are reported
    /// on stderr with the reason.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Refuses a `--plugin-dir` that is not a directory: ignoring it would leave its plugins
/// silently unloaded.
pub(crate) fn check_dirs(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        if !dir.is_dir() {
            let problem = if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            bail!("--plugin-dir {} {problem}", dir.display());
        }
    }
    Ok(())
}

pub(crate) fn run(cmd: PluginsCommand, extra: &[PathBuf]) -> Result<()> {
    let PluginsCommand::List { json } = cmd;
    let (dirs, registry, refused) = xlpatch_core::plugins::discover(extra);
    for e in &refused {
        eprintln!("warning: {}", crate::hints::with_causes(e));
    }
    if registry.is_empty() {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "no plugins found (searched: {}); build the built-in ones with `cargo xtask build-plugins`",
            searched.join(", ")
        );
    }
    if json {
        for p in registry.iter() {
            let row = serde_json::json!({
                "name": p.name(),
                "kind": p.kind().as_str(),
                "version": p.version(),
                "path": p.path(),
                "description": p.description(),
            });
            println!("{row}");
        }
        return Ok(());
    }
    let width = |f: &dyn Fn(&xlpatch_core::abi::loader::PluginLibrary) -> usize, min: usize| {
        registry.iter().map(f).max().unwrap_or(0).max(min)
    };
    let wn = width(&|p| p.name().len(), 4);
    let wk = width(&|p| p.kind().as_str().len(), 4);
    let wv = width(&|p| p.version().len(), 7);
    println!("{:wn$}  {:wk$}  {:wv$}  PATH", "NAME", "KIND", "VERSION");
    for p in registry.iter() {
        println!(
            "{:wn$}  {:wk$}  {:wv$}  {}",
            p.name(),
            p.kind().as_str(),
            p.version(),
            p.path().display()
        );
    }
    Ok(())
}
