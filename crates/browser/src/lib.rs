//! `xlpatch-browser`: opens a page in headless Chromium (Debian's `chromium`, or the binary
//! `CHROMIUM` names) and returns what the browser built: the DOM and the errors the page
//! logged, or a screenshot. The report's browser test and `cargo xtask report` both check the
//! report with it.
//!
//! Std only, with a hand-written error type: `xtask` depends on it, and `xtask` is built
//! before anything else on a fresh machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why Chromium could not give an answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum BrowserError {
    /// No Chromium binary was found.
    NotInstalled,
    /// Chromium could not be started.
    Start(std::io::Error),
    /// Chromium ran past the limit and was killed.
    Timeout(Duration),
    /// Chromium exited with an error.
    Failed {
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
}

impl std::fmt::Display for BrowserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrowserError::NotInstalled => write!(
                f,
                "Chromium is not installed: the report's browser check needs it (Debian: \
                 `apt-get install chromium`; or set CHROMIUM to a Chromium binary)"
            ),
            BrowserError::Start(e) => write!(f, "cannot start Chromium: {e}"),
            BrowserError::Timeout(limit) => {
                write!(f, "Chromium did not finish within {} s", limit.as_secs())
            }
            BrowserError::Failed { status, stderr } => {
                write!(f, "Chromium failed ({status}):\n{stderr}")
            }
        }
    }
}

impl std::error::Error for BrowserError {}

/// The Chromium binary: `CHROMIUM`, else `chromium` or `chromium-browser` on the `PATH`.
fn chromium() -> Result<PathBuf, BrowserError> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
        .ok_or(BrowserError::NotInstalled)
}

/// The DOM Chromium built for a page, and the lines of its log that report an error (an
/// uncaught exception, a resource that failed to load, a console error).
#[derive(Debug)]
pub struct Page {
    /// The serialized DOM (`--dump-dom`).
    pub dom: String,
    /// The error lines of the page's log.
    pub errors: Vec<String>,
}

/// Loads `url` and returns its [`Page`]; Chromium is killed after `limit`.
pub fn dump_dom(url: &str, limit: Duration) -> Result<Page, BrowserError> {
    let (dom, log) = headless(
        url,
        &[
            "--dump-dom".into(),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
        ],
        limit,
    )?;
    let errors = log
        .lines()
        .filter(|l| {
            l.contains("Uncaught")
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
                || (l.contains("CONSOLE") && l.contains("rror"))
        })
        .map(str::to_string)
        .collect();
    Ok(Page { dom, errors })
}

/// Renders `url` in a window of `width` × `height` pixels into the PNG `out`.
pub fn screenshot(
    url: &str,
    out: &Path,
    (width, height): (u32, u32),
    limit: Duration,
) -> Result<(), BrowserError> {
    headless(
        url,
        &[
            format!("--screenshot={}", out.display()),
            format!("--window-size={width},{height}"),
        ],
        limit,
    )
    .map(|_| ())
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile (removed
/// after); returns its stdout and stderr.
fn headless(
    url: &str,
    extra: &[String],
    limit: Duration,
) -> Result<(String, String), BrowserError> {
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
        .map_err(BrowserError::Start)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Pipes are drained on their own threads so that a large DOM never blocks the browser.
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
        if let Some(status) = child.try_wait().map_err(BrowserError::Start)? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&profile);
            return Err(BrowserError::Timeout(limit));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() {
        return Err(BrowserError::Failed {
            status,
            stderr: err,
        });
    }
    Ok((out, err))
}
