//! `cargo xtask report`: the report of the default sweep, checked in a real browser. Runs the
//! default sweep first if `target/sweep/default/results.jsonl` is missing, writes the report
//! with `xlpatch report` into `target/report/`, then opens `target/report/index.html` in
//! headless Chromium twice: once to dump the DOM it built (every plot must be there as inline
//! SVG, the page must log no error) and once to take a screenshot,
//! `target/report/screenshot.png`.
//!
//! Chromium is Debian's `chromium` package (`apt-get install chromium`); `CHROMIUM` names
//! another binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run, sweep, target_dir};

pub(crate) fn report() -> Result<()> {
    let results = target_dir().join("sweep/default");
    if !results.join("results.jsonl").is_file() {
        sweep::sweep()?;
    }
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let out = target_dir().join("report");
    run(Command::new(target_dir().join("release/xlpatch"))
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

/// The Chromium binary: `CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "Chromium is not installed: the report's browser check needs it (Debian: `apt-get install \
         chromium`; or set CHROMIUM to a Chromium binary)"
    )
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile; returns its
/// stdout and stderr. Killed after `limit`.
fn headless(url: &str, extra: &[String], limit: Duration) -> Result<(String, String)> {
    let profile = std::env::temp_dir().join(format!(
        "xlpatch-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut child = Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start Chromium")?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Readers on their own threads, so that a full pipe never blocks the browser.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Chromium did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() {
        bail!("Chromium failed ({status}):\n{err}");
    }
    Ok((out, err))
}

/// Opens `html` in headless Chromium: the DOM must hold `plots` inline SVGs and the console
/// no error; then writes a screenshot to `screenshot`.
pub(crate) fn check_in_browser(html: &Path, screenshot: &Path, plots: usize) -> Result<Checked> {
    let html = html
        .canonicalize()
        .with_context(|| format!("{} does not exist", html.display()))?;
    let url = format!("file://{}", html.display());
    let limit = Duration::from_secs(120);
    let (dom, log) = headless(
        &url,
        &[
            "--dump-dom".into(),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
        ],
        limit,
    )?;
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("Uncaught")
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
                || (l.contains("CONSOLE") && l.contains("rror"))
        })
        .collect();
    if !errors.is_empty() {
        bail!("the page logged errors in Chromium:\n{}", errors.join("\n"));
    }
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
    headless(
        &url,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,4000".into(),
        ],
        limit,
    )?;
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
