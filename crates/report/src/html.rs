//! The HTML page: one self-contained file (plots as inline SVG, the font as a data URL, plain
//! CSS, no script, nothing fetched), readable offline and printable.

use std::fmt::Write as _;

use xlpatch_concepts::ConceptTable;
use xlpatch_results::Setting;

use crate::Options;
use crate::input::Results;
use crate::plot::{self, DataTable, Kind, Plot, lang_name, setting_description};
use crate::stats::{METRICS, Stats};
use crate::taxonomy::{Category, Counts};

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const CSS: &str = r#"
body { font-family: "DejaVu Sans", sans-serif; color: #1e1e1e; margin: 0; background: #fafafa; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 20px 60px; background: #fff; }
h1 { font-size: 28px; margin: 0 0 6px; }
h2 { font-size: 22px; margin-top: 40px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 17px; margin-top: 28px; }
p, li { font-size: 15px; line-height: 1.5; max-width: 1100px; }
.muted { color: #5a5a5a; }
figure { margin: 12px 0 8px; }
figure svg { max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-size: 14px; color: #444; max-width: 1100px; margin-top: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #d8d8d8; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td:first-child, th:first-child, td.l { text-align: left; }
details { margin: 6px 0 18px; }
summary { cursor: pointer; color: #0b5394; font-size: 14px; }
pre { background: #f5f5f5; padding: 10px; font-size: 13px; overflow-x: auto; }
nav ul { columns: 2; }
.notes { background: #fff8e1; border-left: 4px solid #e6a700; padding: 6px 14px; }
code { font-size: 13px; }
"#;

fn table_html(t: &DataTable) -> String {
    let mut s = String::from("<table>\n<thead><tr>");
    for h in &t.header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        s.push_str("<tr>");
        for c in row {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

fn figure_html(p: &Plot) -> String {
    let svg_name = p
        .svg_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let png_name = p
        .png_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The SVG is inlined without its XML declaration, if plotters wrote one.
    let svg = p.svg.trim_start();
    let svg = match svg.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(svg, |(_, r)| r.trim_start()),
        None => svg,
    };
    format!(
        "<h3 id=\"{id}\">{title}</h3>\n<figure>\n{svg}\n<figcaption>{caption} Files: \
         <a href=\"plots/{svg_name}\">{svg_name}</a>, <a href=\"plots/{png_name}\">{png_name}</a>.\
         </figcaption>\n</figure>\n<details><summary>Numbers behind this plot (mean [95% CI])</summary>\n{table}</details>\n",
        id = esc(&p.name),
        title = esc(&p.title),
        caption = esc(&p.caption),
        table = table_html(&p.table),
    )
}

/// A table of counts with a column per category of `shown` (indices into [`Category::ALL`]).
fn counts_table(
    header_first: &[&str],
    shown: &[usize],
    rows: Vec<(Vec<String>, [usize; Category::ALL.len()])>,
) -> String {
    let mut t = DataTable {
        header: header_first.iter().map(|s| s.to_string()).collect(),
        rows: Vec::new(),
    };
    t.header
        .extend(shown.iter().map(|&i| Category::ALL[i].label().to_string()));
    t.header.push("n".into());
    for (first, counts) in rows {
        let n: usize = counts.iter().sum();
        let mut row = first;
        row.extend(shown.iter().map(|&i| counts[i]).map(|c| {
            if n == 0 || c == 0 {
                c.to_string()
            } else {
                format!("{c} ({:.0}%)", 100.0 * c as f64 / n as f64)
            }
        }));
        row.push(n.to_string());
        t.rows.push(row);
    }
    table_html(&t)
}

/// A best-layer mean above its unpatched value.
struct Gain {
    /// Mean minus the unpatched mean.
    gain: f64,
    setting: Setting,
    out_lang: String,
    checkpoint: String,
    estimate: crate::stats::Estimate,
    /// The unpatched mean.
    unpatched: f64,
}

/// The headline numbers: per patched setting and output language, best-layer P(C_S in out_T)
/// at the first and last checkpoint, its largest gain over the unpatched value, and the
/// unpatched value, with a sentence on the largest gain whose interval excludes it.
fn at_a_glance(results: &Results, stats: &Stats) -> String {
    let m = 0; // P(C_S in out_T)
    let checkpoints = results.checkpoints();
    let (Some(first), Some(last)) = (checkpoints.first(), checkpoints.last()) else {
        return String::new();
    };
    let mut outs: Vec<&str> = Vec::new();
    for (_, o) in &results.pairs {
        if !outs.contains(&o.as_str()) {
            outs.push(o);
        }
    }
    let mut t = DataTable {
        header: vec![
            "setting".into(),
            "output language".into(),
            format!("{} (first)", results.checkpoint_label(first)),
            format!("{} (last)", results.checkpoint_label(last)),
            "largest gain over unpatched".into(),
            format!("unpatched, {}", results.checkpoint_label(last)),
        ],
        rows: Vec::new(),
    };
    let mut best: Option<Gain> = None;
    for &setting in results
        .settings
        .iter()
        .filter(|s| **s != Setting::Unpatched)
    {
        for o in &outs {
            let at = |ck: &str| Stats::best_layer(&stats.by_out, ck, setting, "", o, m);
            let fmt = |e: Option<(usize, crate::stats::Estimate)>| {
                e.map_or(String::new(), |(j, e)| {
                    format!("{:.4} [{:.4}, {:.4}] (j = {j})", e.mean, e.lo, e.hi)
                })
            };
            // A rise that the unpatched run shares (an untrained model spreads probability
            // everywhere) is not the patch's doing: gains are taken over the unpatched value.
            let mut peak: Option<(&str, usize, f64)> = None;
            for ck in &checkpoints {
                if let Some((j, e)) = at(ck) {
                    let base = Stats::baseline(&stats.by_out, ck, "", o, m).map_or(0.0, |b| b.mean);
                    let gain = e.mean - base;
                    if peak.is_none_or(|(_, _, g)| gain > g) {
                        peak = Some((ck, j, gain));
                    }
                    if e.lo > base && best.as_ref().is_none_or(|b| gain > b.gain) {
                        best = Some(Gain {
                            gain,
                            setting,
                            out_lang: o.to_string(),
                            checkpoint: ck.to_string(),
                            estimate: e,
                            unpatched: base,
                        });
                    }
                }
            }
            t.rows.push(vec![
                setting.to_string(),
                lang_name(o),
                fmt(at(first)),
                fmt(at(last)),
                peak.map_or(String::new(), |(ck, j, g)| {
                    format!("{g:+.4} at {} (j = {j})", results.checkpoint_label(ck))
                }),
                Stats::baseline(&stats.by_out, last, "", o, m)
                    .map_or(String::new(), |b| format!("{:.4}", b.mean)),
            ]);
        }
    }
    let sentence = match best {
        Some(Gain {
            setting,
            out_lang: o,
            checkpoint: ck,
            estimate: e,
            unpatched: base,
            ..
        }) => format!(
            "The largest gain over the unpatched run whose 95% interval excludes it: setting \
             <code>{}</code>, output {} at {}: {:.4} [{:.4}, {:.4}] against {:.4} unpatched \
             (the best layer is picked on the same data, so the interval is optimistic).",
            esc(setting.name()),
            esc(&lang_name(&o)),
            esc(&results.checkpoint_label(&ck)),
            e.mean,
            e.lo,
            e.hi,
            base
        ),
        None => "No best-layer P(C_S in out_T) has a 95% interval above its unpatched value: the \
                 patches carry no measurable concept across at any checkpoint."
            .into(),
    };
    format!(
        "<h2 id=\"glance\">At a glance</h2>\n<p>Best-layer P(C_S in out_T), mean [95% CI] over \
         concept pairs, target pairs with the same output language pooled. {sentence}</p>\n{}",
        table_html(&t)
    )
}

/// The counts of the error analysis: in all, per checkpoint and setting, and per start layer.
/// The "not generated" column is shown only where some generation is missing.
fn error_tables(
    s: &mut String,
    results: &Results,
    counts: &Counts,
    total: [usize; Category::ALL.len()],
) {
    let shown: Vec<usize> = (0..Category::ALL.len())
        .filter(|&i| Category::ALL[i] != Category::NotGenerated || total[i] > 0)
        .collect();
    s.push_str("<h3>All generations</h3>\n");
    s.push_str(&counts_table(
        &["generations"],
        &shown,
        vec![(vec!["all".into()], total)],
    ));
    s.push_str("<h3>Per checkpoint and setting (all start layers)</h3>\n");
    let rows = counts
        .by_checkpoint_setting()
        .into_iter()
        .map(|(c, st, n)| (vec![results.checkpoint_label(&c), st.to_string()], n))
        .collect();
    s.push_str(&counts_table(&["checkpoint", "setting"], &shown, rows));
    s.push_str("<details><summary>Per checkpoint, setting and start layer</summary>\n");
    let rows = counts
        .cells
        .iter()
        .map(|(cell, n)| {
            (
                vec![
                    results.checkpoint_label(&cell.checkpoint),
                    cell.setting.to_string(),
                    cell.layer.map_or("any".into(), |j| j.to_string()),
                ],
                *n,
            )
        })
        .collect();
    s.push_str(&counts_table(
        &["checkpoint", "setting", "start layer"],
        &shown,
        rows,
    ));
    s.push_str("</details>\n");
}

/// The whole page.
pub(crate) fn page(
    results: &Results,
    table: &ConceptTable,
    stats: &Stats,
    counts: &Counts,
    plots: &[Plot],
    options: &Options,
    notes: &[String],
) -> String {
    let dir_name = results
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| results.dir.display().to_string());
    let n_targets = {
        let mut items: Vec<String> = results.rows.iter().map(crate::input::item_of).collect();
        items.sort();
        items.dedup();
        items.len()
    };
    let pairs: Vec<String> = results
        .pairs
        .iter()
        .map(|(a, b)| format!("{} → {}", lang_name(a), lang_name(b)))
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>xlpatch report: {dir}</title>\n<style>\n@font-face {{ font-family: \"DejaVu Sans\"; \
         src: url(data:font/ttf;base64,{font}) format(\"truetype\"); }}\n{CSS}</style>\n</head>\n<body>\n<main>\n",
        dir = esc(&dir_name),
        font = base64(plot::font_bytes()),
    );
    let _ = write!(
        s,
        "<h1>Cross-lingual concept patching across checkpoints</h1>\n<p class=\"muted\">xlpatch \
         report of <code>{dir}</code>: {nck} checkpoint(s), {pairs_n} target pair(s) ({pairs}), \
         {nt} target prompts in all, settings {settings}, {layers} start layer(s), {rows} result \
         rows. Intervals: 95% percentile bootstrap over concept pairs, {res} resamples, seed {seed}.</p>\n",
        dir = esc(&dir_name),
        nck = results.models.len(),
        pairs_n = results.pairs.len(),
        pairs = esc(&pairs.join(", ")),
        nt = n_targets,
        settings = esc(&results
            .settings
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")),
        layers = results.layers,
        rows = results.rows.len(),
        res = options.resamples,
        seed = options.seed,
    );
    if !notes.is_empty() {
        s.push_str("<div class=\"notes\" id=\"notes\"><p><strong>Notes</strong></p>\n<ul>\n");
        for n in notes {
            let _ = writeln!(s, "<li>{}</li>", esc(n));
        }
        s.push_str("</ul></div>\n");
    }
    s.push_str(
        "<h2 id=\"reading\">How to read this report</h2>\n<p>Each target prompt asks the model \
         to translate a word naming concept C_T from language in_T into out_T. At the position \
         of that word, the residual stream of every block from the start layer j to the last \
         is overwritten with a latent of another concept C_S, read from source prompts (which \
         prompts is the <em>setting</em>). The metrics are next-token probabilities of the \
         first tokens of every synonym of a concept in a language: P(C_S in out_T) is high \
         when the patched concept is carried into the output language; P(C_T in out_T) when \
         the target survives the patch; P(C_S in in_T) and P(C_S in other languages) measure \
         a language leak.</p>\n<ul>\n<li><strong>Emergence</strong>: per output language, \
         P(C_S in out_T) at the best start layer, across checkpoints in training order. A \
         rising line means the concept space shared with that language emerges during \
         training.</li>\n<li><strong>Heatmaps</strong>: P(C_S in out_T) for every checkpoint \
         and start layer of a setting, one panel per target pair.</li>\n<li><strong>Layer \
         curves</strong>: every probability metric against the start layer, one panel per \
         checkpoint, with 95% bands and the unpatched values as dashed lines (the layout of \
         Dumas et al.'s figures).</li>\n<li><strong>Error analysis</strong>: every greedy \
         generation sorted into categories from the concept table's synonyms, polysemy and \
         homograph marks; <a href=\"review.csv\">review.csv</a> lists them for manual \
         labelling.</li>\n</ul>\n<p>Settings: ",
    );
    let described: Vec<String> = results
        .settings
        .iter()
        .map(|&st| {
            format!(
                "<code>{}</code>: {}",
                esc(st.name()),
                esc(setting_description(st))
            )
        })
        .collect();
    s.push_str(&described.join("; "));
    s.push_str(".</p>\n");

    s.push_str(&at_a_glance(results, stats));

    // Contents.
    s.push_str("<nav><h2>Contents</h2><ul>\n");
    for p in plots {
        let _ = writeln!(
            s,
            "<li><a href=\"#{}\">{}</a></li>",
            esc(&p.name),
            esc(&p.title)
        );
    }
    s.push_str(
        "<li><a href=\"#errors\">Error analysis</a></li>\n<li><a href=\"#sweep\">Sweep \
         configuration and models</a></li>\n</ul></nav>\n",
    );

    for (kind, heading, id) in [
        (
            Kind::Emergence,
            "Emergence across training",
            "sec-emergence",
        ),
        (
            Kind::Heatmap,
            "Checkpoint × start-layer heatmaps",
            "sec-heatmaps",
        ),
        (Kind::Layers, "Layer curves", "sec-layers"),
    ] {
        let of_kind: Vec<&Plot> = plots.iter().filter(|p| p.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let _ = writeln!(s, "<h2 id=\"{id}\">{heading}</h2>");
        for p in of_kind {
            s.push_str(&figure_html(p));
        }
    }

    // Error analysis.
    s.push_str(
        "<h2 id=\"errors\">Error analysis of the greedy generations</h2>\n<p>A generation's \
         answer is its text before the closing quote, trimmed, compared with the concept table \
         (case ignored). The first matching category, in this order, is taken: unparseable (no \
         closing quote within the generated tokens, or an empty answer); correct C_S / correct \
         C_T (the preferred form in out_T); another synonym (another listed form of C_S or C_T \
         in out_T); homograph (a word the model was shown is a cross-lingual homograph and the \
         answer copies it into the language where it means something else, or translates that \
         other meaning); copy of the input word; another sense (the other sense of a polysemous \
         word the model was shown); right concept, wrong language (C_S or C_T in another \
         language); other. Each generation with its category is in \
         <a href=\"review.csv\">review.csv</a> (empty <code>human_label</code> column for a \
         manual check); the counts below are also in <a href=\"errors.csv\">errors.csv</a>.</p>\n",
    );
    let total: [usize; Category::ALL.len()] =
        std::array::from_fn(|i| counts.total(Category::ALL[i]));
    let n_generations: usize = total.iter().sum();
    let not_generated = counts.total(Category::NotGenerated);
    let _ = writeln!(
        s,
        "<p>{n_generations} unique generations from {} result rows: the unpatched generation \
         of a target prompt is the same at every start layer (a row per start layer) and is \
         counted, and listed in review.csv, once, without a start layer.</p>",
        results.rows.len()
    );
    if not_generated == n_generations {
        s.push_str(
            "<p><strong>No generations were produced:</strong> the sweep generated no token \
             (<code>max_new_tokens = 0</code> in its config), so there is nothing to classify. \
             Sweep again with <code>max_new_tokens</code> above 0 for an error analysis.</p>\n",
        );
    } else {
        error_tables(&mut s, results, counts, total);
    }

    // Config and models.
    s.push_str("<h2 id=\"sweep\">Sweep configuration and models</h2>\n");
    let mut models = DataTable {
        header: [
            "checkpoint",
            "step",
            "architecture",
            "content hash",
            "same weights as",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        rows: Vec::new(),
    };
    for m in &results.models {
        models.rows.push(vec![
            m.checkpoint.clone(),
            m.step.map_or(String::new(), |s| s.to_string()),
            m.architecture.clone(),
            m.hash.clone(),
            results
                .identical
                .iter()
                .find(|(c, _)| *c == m.checkpoint)
                .map_or(String::new(), |(_, first)| first.clone()),
        ]);
    }
    s.push_str(&table_html(&models));
    let present: Vec<String> = METRICS
        .iter()
        .zip(&stats.present)
        .filter(|(_, p)| **p)
        .map(|(m, _)| format!("<code>{}</code> ({})", m.key, esc(m.label)))
        .collect();
    let _ = writeln!(
        s,
        "<p>Metrics in the results: {}. Concept table: <code>{}</code> ({} concepts). All means \
         and intervals are in <a href=\"stats.csv\">stats.csv</a>.</p>",
        present.join(", "),
        esc(&table.source().display().to_string()),
        table.concepts().len()
    );
    let _ = writeln!(
        s,
        "<h3>config.toml</h3>\n<pre>{}</pre>",
        esc(&results.config_text)
    );
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
