//! `hf://` series specs: one revision, a list, or patterns over a repository's refs with a
//! selection policy.
//!
//! ```text
//! hf://allenai/OLMo-2-0425-1B@stage1-step10000-tokens21B      one revision
//! hf://EleutherAI/pythia-160m@step1000,step2000,step4000      a list
//! hf://allenai/OLMo-2-0425-1B@stage1-*?log=12                 a pattern, 12 log-spaced steps
//! hf://swiss-ai/Apertus-8B-2509?every=10&steps=0..1000000     every 10th of the parsed refs
//! ```
//!
//! Options: `every=K` (every K-th ref by step), `log=N` (N refs log-spaced in step),
//! `steps=A..B` (an inclusive step range; either end may be left out) and
//! `refs=branches|tags|all` (default: branches, or tags when the repository has fewer than
//! two branches). The first and the last ref of the range are always selected.

use std::fmt;

use crate::HubError;

/// The URL scheme of hub series.
pub const SCHEME: &str = "hf://";

/// How many of the matching refs are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Every one.
    #[default]
    All,
    /// Every k-th by step, plus the last.
    Every(usize),
    /// n refs whose steps are spaced evenly in log(step + 1), first and last included.
    Log(usize),
}

/// Which kinds of refs a pattern looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefKinds {
    /// Branches, or tags when the repository has fewer than two branches (as the seed paper's
    /// code does).
    #[default]
    Auto,
    /// Branches only.
    Branches,
    /// Tags only.
    Tags,
    /// Both.
    All,
}

/// A parsed `hf://` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSpec {
    /// `org/name`.
    pub repo: String,
    /// Revisions or `*` patterns; empty: every ref of [`SeriesSpec::refs`].
    pub revisions: Vec<String>,
    /// The selection policy.
    pub policy: Policy,
    /// The inclusive step range.
    pub steps: (Option<u64>, Option<u64>),
    /// Which refs patterns match.
    pub refs: RefKinds,
}

impl SeriesSpec {
    /// Whether the spec names revisions outright (no pattern, no policy): then nothing needs
    /// listing and names need not parse.
    pub fn is_explicit(&self) -> bool {
        !self.revisions.is_empty()
            && self.revisions.iter().all(|r| !is_pattern(r))
            && self.policy == Policy::All
            && self.steps == (None, None)
    }

    /// Parses `hf://REPO[@REVS][?OPTS]`.
    pub fn parse(text: &str) -> Result<SeriesSpec, HubError> {
        let bad = |why: &str| HubError::Spec {
            spec: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("a hub series starts with hf://"))?;
        let (rest, opts) = match rest.split_once('?') {
            Some((r, o)) => (r, Some(o)),
            None => (rest, None),
        };
        let (repo, revs) = match rest.split_once('@') {
            Some((r, v)) => (r, Some(v)),
            None => (rest, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad(
                "the repository is ORG/NAME, e.g. hf://allenai/OLMo-2-0425-1B",
            ));
        }
        let mut revisions = Vec::new();
        if let Some(revs) = revs {
            for r in revs.split(',') {
                if r.is_empty() {
                    return Err(bad("an empty revision (check the commas after @)"));
                }
                revisions.push(r.to_string());
            }
        }
        let mut spec = SeriesSpec {
            repo: repo.to_string(),
            revisions,
            policy: Policy::All,
            steps: (None, None),
            refs: RefKinds::Auto,
        };
        for opt in opts.into_iter().flat_map(|o| o.split('&')) {
            let (key, value) = opt
                .split_once('=')
                .ok_or_else(|| bad("options are key=value (every, log, steps, refs)"))?;
            let count = |min: usize| -> Result<usize, HubError> {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| bad(&format!("{key}={value}: expected a whole number >= {min}")))
            };
            match key {
                "every" | "log" if spec.policy != Policy::All => {
                    return Err(bad("give one of every= and log="));
                }
                "every" => spec.policy = Policy::Every(count(1)?),
                "log" => spec.policy = Policy::Log(count(2)?),
                "steps" => {
                    let (a, b) = value
                        .split_once("..")
                        .ok_or_else(|| bad("steps=A..B (either end may be left out)"))?;
                    let end = |s: &str| -> Result<Option<u64>, HubError> {
                        if s.is_empty() {
                            return Ok(None);
                        }
                        s.parse()
                            .map(Some)
                            .map_err(|_| bad(&format!("steps: {s:?} is not a step")))
                    };
                    spec.steps = (end(a)?, end(b)?);
                    if let (Some(a), Some(b)) = spec.steps
                        && a > b
                    {
                        return Err(bad("steps=A..B needs A <= B"));
                    }
                }
                "refs" => {
                    spec.refs = match value {
                        "branches" => RefKinds::Branches,
                        "tags" => RefKinds::Tags,
                        "all" => RefKinds::All,
                        _ => return Err(bad("refs= is branches, tags or all")),
                    }
                }
                _ => {
                    return Err(bad(&format!(
                        "unknown option {key:?} (every, log, steps, refs)"
                    )));
                }
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for SeriesSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.repo)?;
        if !self.revisions.is_empty() {
            write!(f, "@{}", self.revisions.join(","))?;
        }
        let mut opts = Vec::new();
        match self.policy {
            Policy::All => {}
            Policy::Every(k) => opts.push(format!("every={k}")),
            Policy::Log(n) => opts.push(format!("log={n}")),
        }
        if self.steps != (None, None) {
            let end = |e: Option<u64>| e.map(|s| s.to_string()).unwrap_or_default();
            opts.push(format!(
                "steps={}..{}",
                end(self.steps.0),
                end(self.steps.1)
            ));
        }
        match self.refs {
            RefKinds::Auto => {}
            RefKinds::Branches => opts.push("refs=branches".into()),
            RefKinds::Tags => opts.push("refs=tags".into()),
            RefKinds::All => opts.push("refs=all".into()),
        }
        if !opts.is_empty() {
            write!(f, "?{}", opts.join("&"))?;
        }
        Ok(())
    }
}

/// Whether a revision item is a pattern.
pub fn is_pattern(item: &str) -> bool {
    item.contains('*')
}

/// Glob match with `*` (any run of characters, `/` included).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let s =
            SeriesSpec::parse("hf://allenai/OLMo-2-0425-1B@stage1-step10000-tokens21B").unwrap();
        assert_eq!(s.repo, "allenai/OLMo-2-0425-1B");
        assert_eq!(s.revisions, ["stage1-step10000-tokens21B"]);
        assert!(s.is_explicit());
        for text in [
            "hf://allenai/OLMo-2-0425-1B@stage1-step10000-tokens21B",
            "hf://EleutherAI/pythia-160m@step1000,step2000",
            "hf://allenai/OLMo-2-0425-1B@stage1-*?log=12",
            "hf://swiss-ai/Apertus-8B-2509?every=10&steps=100..",
            "hf://gpt2?refs=tags",
            "hf://a/b?steps=..500",
        ] {
            assert_eq!(SeriesSpec::parse(text).unwrap().to_string(), text);
        }
        let s = SeriesSpec::parse("hf://a/b@step*?every=3&steps=10..20&refs=all").unwrap();
        assert_eq!(s.policy, Policy::Every(3));
        assert_eq!(s.steps, (Some(10), Some(20)));
        assert_eq!(s.refs, RefKinds::All);
        assert!(!s.is_explicit());
    }

    #[test]
    fn bad_specs_say_why() {
        for (text, why) in [
            ("allenai/OLMo", "starts with hf://"),
            ("hf://", "ORG/NAME"),
            ("hf://a/b/c", "ORG/NAME"),
            ("hf://a/b@x,,y", "empty revision"),
            ("hf://a/b?log=1", "log=1"),
            ("hf://a/b?every=0", "every=0"),
            ("hf://a/b?every=2&log=3", "one of every= and log="),
            ("hf://a/b?steps=5", "steps=A..B"),
            ("hf://a/b?steps=9..3", "A <= B"),
            ("hf://a/b?size=3", "unknown option"),
            ("hf://a/b?refs=pulls", "branches, tags or all"),
        ] {
            let e = SeriesSpec::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("stage1-*", "stage1-step0-tokens0B"));
        assert!(glob_match("*", ""));
        assert!(glob_match("step*-tokens*B", "step10-tokens4B"));
        assert!(!glob_match("stage1-*", "stage2-step0"));
        assert!(!glob_match("step*", "global_step1"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b", "ab-"));
    }
}
