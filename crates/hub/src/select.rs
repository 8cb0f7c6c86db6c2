//! Which refs a spec selects, ordered by step.

use crate::names::{RefStep, parse_ref};
use crate::spec::{Policy, RefKinds, SeriesSpec, glob_match, is_pattern};

/// Whether a ref is a branch or a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A branch.
    Branch,
    /// A tag.
    Tag,
}

/// One ref of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// Its name (`stage1-step1000-tokens2B`).
    pub name: String,
    /// Branch or tag.
    pub kind: RefKind,
    /// The commit it points at.
    pub commit: String,
}

/// A selected revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The revision as named.
    pub revision: String,
    /// Its commit, when listed.
    pub commit: Option<String>,
    /// Its step, when the name parses.
    pub step: Option<RefStep>,
}

/// What a spec selects from a repository's refs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The selection, ordered by step.
    pub selected: Vec<Selected>,
    /// Refs matching the spec's patterns whose names follow no known scheme: skipped.
    pub unparsed: Vec<String>,
    /// Refs that parse and match but lie outside the step range.
    pub out_of_range: usize,
    /// Refs in range that the policy left out.
    pub thinned: usize,
}

/// Applies `spec` to `refs` (the repository's listing; not consulted for an explicit list).
pub fn select(spec: &SeriesSpec, refs: &[HubRef]) -> Selection {
    if spec.is_explicit() {
        let mut selected: Vec<Selected> = spec
            .revisions
            .iter()
            .map(|r| Selected {
                revision: r.clone(),
                commit: refs.iter().find(|h| &h.name == r).map(|h| h.commit.clone()),
                step: parse_ref(r),
            })
            .collect();
        if selected.iter().all(|s| s.step.is_some()) {
            selected.sort_by(|a, b| a.step.unwrap().order(&b.step.unwrap()));
        }
        return Selection {
            selected,
            ..Selection::default()
        };
    }
    let branches = refs.iter().filter(|r| r.kind == RefKind::Branch).count();
    let kinds = match spec.refs {
        RefKinds::Auto if branches < 2 => RefKinds::Tags,
        RefKinds::Auto => RefKinds::Branches,
        k => k,
    };
    let mut sel = Selection::default();
    let mut candidates: Vec<Selected> = Vec::new();
    for r in refs {
        let kind_ok = match kinds {
            RefKinds::Branches | RefKinds::Auto => r.kind == RefKind::Branch,
            RefKinds::Tags => r.kind == RefKind::Tag,
            RefKinds::All => true,
        };
        let named = spec.revisions.is_empty()
            || spec.revisions.iter().any(|p| {
                if is_pattern(p) {
                    glob_match(p, &r.name)
                } else {
                    p == &r.name
                }
            });
        if !kind_ok || !named || candidates.iter().any(|c| c.revision == r.name) {
            continue;
        }
        let Some(step) = parse_ref(&r.name) else {
            sel.unparsed.push(r.name.clone());
            continue;
        };
        let (lo, hi) = spec.steps;
        if lo.is_some_and(|lo| step.step < lo) || hi.is_some_and(|hi| step.step > hi) {
            sel.out_of_range += 1;
            continue;
        }
        candidates.push(Selected {
            revision: r.name.clone(),
            commit: Some(r.commit.clone()),
            step: Some(step),
        });
    }
    candidates.sort_by(|a, b| {
        a.step
            .unwrap()
            .order(&b.step.unwrap())
            .then(a.revision.cmp(&b.revision))
    });
    sel.unparsed.sort();
    let keep = pick(&candidates, spec.policy);
    sel.thinned = candidates.len() - keep.len();
    sel.selected = keep.into_iter().map(|i| candidates[i].clone()).collect();
    sel
}

/// The indices a policy keeps of `n` candidates ordered by step.
fn pick(c: &[Selected], policy: Policy) -> Vec<usize> {
    let n = c.len();
    if n == 0 {
        return Vec::new();
    }
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[n - 1] = true;
    match policy {
        Policy::All => keep.iter_mut().for_each(|k| *k = true),
        Policy::Every(k) => (0..n).step_by(k).for_each(|i| keep[i] = true),
        Policy::Log(want) if want >= n => keep.iter_mut().for_each(|k| *k = true),
        Policy::Log(want) => {
            let x: Vec<f64> = c
                .iter()
                .map(|s| (s.step.unwrap().step as f64 + 1.0).ln())
                .collect();
            let (lo, hi) = (x[0], x[n - 1]);
            for j in 1..want - 1 {
                let t = lo + (hi - lo) * j as f64 / (want - 1) as f64;
                // The nearest ref not yet taken (ties: the earlier one).
                let best = (0..n)
                    .filter(|&i| !keep[i])
                    .min_by(|&a, &b| (x[a] - t).abs().total_cmp(&(x[b] - t).abs()));
                if let Some(i) = best {
                    keep[i] = true;
                }
            }
        }
    }
    (0..n).filter(|&i| keep[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<HubRef> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| HubRef {
                name: n.to_string(),
                kind: RefKind::Branch,
                commit: format!("{i:040x}"),
            })
            .collect()
    }

    fn names(spec: &str, refs: &[HubRef]) -> (Vec<String>, Selection) {
        let sel = select(&SeriesSpec::parse(spec).unwrap(), refs);
        (
            sel.selected.iter().map(|s| s.revision.clone()).collect(),
            sel,
        )
    }

    #[test]
    fn patterns_select_by_step_and_list_what_does_not_parse() {
        let r = refs(&[
            "main",
            "stage1-step2000-tokens9B",
            "stage1-step0-tokens0B",
            "stage1-step1000-tokens5B",
            "stage2-ingredient1-step100-tokens1B",
            "step3000-tokens12B",
        ]);
        let (got, sel) = names("hf://allenai/OLMo-2-0425-1B", &r);
        assert_eq!(
            got,
            [
                "stage1-step0-tokens0B",
                "stage1-step1000-tokens5B",
                "stage1-step2000-tokens9B",
                "step3000-tokens12B"
            ]
        );
        assert_eq!(
            sel.unparsed,
            ["main", "stage2-ingredient1-step100-tokens1B"]
        );
        let (got, sel) = names("hf://a/b@stage1-*?steps=500..", &r);
        assert_eq!(
            got,
            ["stage1-step1000-tokens5B", "stage1-step2000-tokens9B"]
        );
        assert_eq!(sel.out_of_range, 1);
        assert!(
            sel.unparsed.is_empty(),
            "only names the pattern matches are reported"
        );
    }

    #[test]
    fn every_kth_keeps_first_and_last() {
        let list: Vec<String> = (0..10).map(|i| format!("step{}", i * 100)).collect();
        let r = refs(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let (got, sel) = names("hf://a/b?every=4", &r);
        assert_eq!(got, ["step0", "step400", "step800", "step900"]);
        assert_eq!(sel.thinned, 6);
    }

    #[test]
    fn log_spacing_favours_early_steps() {
        let steps = [
            0u64, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
        ];
        let list: Vec<String> = steps.iter().map(|s| format!("step{s}")).collect();
        let r = refs(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let (got, _) = names("hf://a/b?log=5", &r);
        assert_eq!(got.len(), 5);
        assert_eq!(got.first().unwrap(), "step0");
        assert_eq!(got.last().unwrap(), "step8192");
        // log(8193) ≈ 9.0: targets at e^2.25-1 ≈ 8.5, e^4.5-1 ≈ 89, e^6.76-1 ≈ 862.
        assert_eq!(got, ["step0", "step8", "step64", "step1024", "step8192"]);
        let (all, _) = names("hf://a/b?log=50", &r);
        assert_eq!(all.len(), steps.len());
    }

    #[test]
    fn explicit_lists_need_no_listing_and_tags_stand_in_for_missing_branches() {
        let (got, _) = names("hf://a/b@step30,step10", &[]);
        assert_eq!(got, ["step10", "step30"]);
        let mut r = refs(&["main"]);
        r.extend(
            refs(&["global_step2", "global_step1"])
                .into_iter()
                .map(|mut h| {
                    h.kind = RefKind::Tag;
                    h
                }),
        );
        let (got, _) = names("hf://bigscience/bloom-560m-intermediate", &r);
        assert_eq!(got, ["global_step1", "global_step2"]);
    }
}
