//! `cargo xtask report`: the report of the default sweep, checked in a real browser. Runs the
//! default sweep first if `target/sweep/default/results.jsonl` is missing, writes the report
//! with `xlpatch report` into `target/report/`, then opens `target/report/index.html` in
//! headless Chromium twice: once to dump the DOM it built (every plot must be there as inline
//! SVG, the page must log no error) and once to take a screenshot,
//! `target/report/screenshot.png`.
//!
//! Chromium is Debian's `chromium` package (`apt-get install chromium`); `CHROMIUM` names
//! another binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run, sweep, target_dir};

pub(crate) fn report() -> Result<()> {
    let results = target_dir()?.join("sweep/default");
    if !results.join("results.jsonl").is_file() {
        sweep::sweep()?;
    }
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let out = target_dir()?.join("report");
    run(Command::new(target_dir()?.join("release/xlpatch"))
        .current_dir(root())
        .arg("report")
        .arg(&results)
        .arg("--out")
        .arg(&out))?;
    let html = out.join("index.html");
    let plots = std::fs::read_dir(out.join("plots"))
        .context("the report wrote no plots directory")?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "svg"))
        .count();
    let screenshot = out.join("screenshot.png");
    let checked = check_in_browser(&html, &screenshot, plots)?;
    println!(
        "Chromium rendered {}: {} inline SVG plots, {} tables, no console error; screenshot {}",
        html.display(),
        checked.svgs,
        checked.tables,
        screenshot.display()
    );
    Ok(())
}

/// What the browser saw.
pub(crate) struct Checked {
    pub svgs: usize,
    pub tables: usize,
}

/// Opens `html` in headless Chromium: the DOM must hold `plots` inline SVGs and the console
/// no error; then writes a screenshot to `screenshot`.
pub(crate) fn check_in_browser(html: &Path, screenshot: &Path, plots: usize) -> Result<Checked> {
    let html = html
        .canonicalize()
        .with_context(|| format!("{} does not exist", html.display()))?;
    let url = format!("file://{}", html.display());
    let limit = Duration::from_secs(120);
    let page = xlpatch_browser::dump_dom(&url, limit)?;
    if !page.errors.is_empty() {
        bail!(
            "the page logged errors in Chromium:\n{}",
            page.errors.join("\n")
        );
    }
    let dom = page.dom;
    if !dom.contains("</html>") {
        bail!(
            "Chromium's DOM of {} is incomplete ({} bytes)",
            html.display(),
            dom.len()
        );
    }
    let svgs = dom.matches("<svg").count();
    let tables = dom.matches("<table").count();
    if svgs < plots.max(1) {
        bail!(
            "Chromium's DOM of {} holds {svgs} <svg> elements, expected {plots}",
            html.display()
        );
    }
    if tables == 0 {
        bail!("Chromium's DOM of {} holds no table", html.display());
    }
    let _ = std::fs::remove_file(screenshot);
    xlpatch_browser::screenshot(&url, screenshot, (1400, 4000), limit)?;
    let bytes = std::fs::read(screenshot)
        .with_context(|| format!("Chromium wrote no screenshot {}", screenshot.display()))?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.len() < 10_000 {
        bail!(
            "{} is not a plausible PNG screenshot ({} bytes)",
            screenshot.display(),
            bytes.len()
        );
    }
    Ok(Checked { svgs, tables })
}
