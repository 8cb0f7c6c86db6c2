//! The small report opened in a real browser: headless Chromium (Debian's `chromium`, or the
//! binary `CHROMIUM` names) must build a DOM holding every plot and table without logging an
//! error, and render a screenshot. `cargo xtask report` does the same on the default sweep.

use std::time::Duration;

use crate::e2e::build_small;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn the_report_renders_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let written = build_small(tmp.path());
    let url = format!("file://{}", written.html.canonicalize().unwrap().display());

    let page = xlpatch_browser::dump_dom(&url, LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        page.errors.is_empty(),
        "the page logged errors:\n{}",
        page.errors.join("\n")
    );
    let dom = page.dom;
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
    xlpatch_browser::screenshot(&url, &shot, (1400, 2000), LIMIT).unwrap_or_else(|e| panic!("{e}"));
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
