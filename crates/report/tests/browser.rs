//! The small report opened in a real browser: headless Chromium (Debian's `chromium`, or the
//! binary `CHROMIUM` names) must build a DOM holding every plot and table without logging an
//! error, and render a screenshot. `cargo xtask report` does the same on the default sweep.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::e2e::build_small;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
        .expect(
            "Chromium is not installed: the report's browser test needs it (Debian: `apt-get \
             install chromium`; or set CHROMIUM to a Chromium binary)",
        )
}

/// Headless Chromium on `url` with a fresh profile in `profile`; returns (stdout, stderr).
fn headless(url: &str, profile: &Path, extra: &[String]) -> (String, String) {
    let mut child = Command::new(chromium())
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
        .expect("cannot start Chromium");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // Pipes are drained on their own threads so that a large DOM never blocks the browser.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("Chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap().unwrap(), err.join().unwrap().unwrap());
    assert!(status.success(), "Chromium failed ({status}):\n{err}");
    (out, err)
}

#[test]
fn the_report_renders_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let written = build_small(tmp.path());
    let url = format!("file://{}", written.html.canonicalize().unwrap().display());

    let (dom, log) = headless(
        &url,
        &tmp.path().join("profile-dom"),
        &[
            "--dump-dom".into(),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
        ],
    );
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("Uncaught")
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
                || (l.contains("CONSOLE") && l.contains("rror"))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "the page logged errors:\n{}",
        errors.join("\n")
    );
    assert!(
        dom.contains("</html>"),
        "incomplete DOM: {} bytes",
        dom.len()
    );
    let svgs = written.plots.len() / 2;
    assert_eq!(
        dom.matches("<svg").count(),
        svgs,
        "every plot is in the DOM as SVG"
    );
    assert!(
        dom.matches("<table").count() >= svgs,
        "every plot has its table"
    );
    assert!(dom.contains("Error analysis of the greedy generations"));

    let shot = tmp.path().join("screenshot.png");
    headless(
        &url,
        &tmp.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,2000".into(),
        ],
    );
    let png = std::fs::read(&shot).expect("Chromium wrote no screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    // A blank page compresses to a few kB; one with plots and text is far larger.
    assert!(
        png.len() > 50_000,
        "the screenshot looks blank ({} bytes)",
        png.len()
    );
}
