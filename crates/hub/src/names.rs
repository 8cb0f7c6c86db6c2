//! Training steps (and tokens seen) from the ref names of the checkpoint series people use.
//!
//! Every scheme is matched whole: a name with anything else in it (OLMo's `stage2-ingredient1-…`
//! soups, `main`, `longctx` branches) does not parse and is reported as skipped by the caller,
//! never silently dropped.

use std::cmp::Ordering;

/// The naming scheme a ref name matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scheme {
    /// OLMo / OLMo-2 `stage1-step10000-tokens21B`.
    StageStepTokens,
    /// Apertus, OLMo-1 and OLMo-2-7B `step10000-tokens21B`.
    StepTokens,
    /// Pythia `step1000`.
    Step,
    /// BLOOM intermediate checkpoints `global_step1000`.
    GlobalStep,
    /// SmolLM2 `step-1000`.
    StepDash,
    /// SmolLM3 `stage1-step-1000`.
    StageStepDash,
    /// LLM360 `ckpt_001`.
    Ckpt,
    /// Local `step_1000` folders.
    StepUnderscore,
    /// Megatron `iter_0001000` folders.
    Iter,
}

/// What a ref name says about its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefStep {
    /// The training step (LLM360's checkpoint index).
    pub step: u64,
    /// Tokens seen, where the name has them.
    pub tokens: Option<u64>,
    /// The training stage, where the name has one.
    pub stage: Option<u32>,
    /// The scheme matched.
    pub scheme: Scheme,
}

impl RefStep {
    /// Series order: by stage (a name without one counts as stage 1, pretraining), then step.
    pub fn order(&self, other: &RefStep) -> Ordering {
        (self.stage.unwrap_or(1), self.step).cmp(&(other.stage.unwrap_or(1), other.step))
    }
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `21B`, `500M`, `2T`, `4K` or a bare number, as a token count.
fn tokens(s: &str) -> Option<u64> {
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, ' '),
    };
    let n = digits(num)?;
    let scale: u64 = match unit {
        ' ' => 1,
        'K' => 1_000,
        'M' => 1_000_000,
        'B' | 'G' => 1_000_000_000,
        'T' => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `stepN-tokensX` (the part after any stage prefix).
fn step_tokens(s: &str) -> Option<(u64, u64)> {
    let rest = s.strip_prefix("step")?;
    let (step, tok) = rest.split_once("-tokens")?;
    Some((digits(step)?, tokens(tok)?))
}

/// Parses a ref (or folder) name; `None` when it follows no known scheme.
pub fn parse_ref(name: &str) -> Option<RefStep> {
    let make = |step, tokens, stage, scheme| {
        Some(RefStep {
            step,
            tokens,
            stage,
            scheme,
        })
    };
    if let Some(rest) = name.strip_prefix("stage") {
        let (stage, tail) = rest.split_once('-')?;
        let stage: u32 = digits(stage)?.try_into().ok()?;
        if let Some((step, tok)) = step_tokens(tail) {
            return make(step, Some(tok), Some(stage), Scheme::StageStepTokens);
        }
        let step = digits(tail.strip_prefix("step-")?)?;
        return make(step, None, Some(stage), Scheme::StageStepDash);
    }
    if let Some((step, tok)) = step_tokens(name) {
        return make(step, Some(tok), None, Scheme::StepTokens);
    }
    if let Some(n) = name.strip_prefix("global_step") {
        return make(digits(n)?, None, None, Scheme::GlobalStep);
    }
    if let Some(n) = name.strip_prefix("step-") {
        return make(digits(n)?, None, None, Scheme::StepDash);
    }
    if let Some(n) = name.strip_prefix("step_") {
        return make(digits(n)?, None, None, Scheme::StepUnderscore);
    }
    if let Some(n) = name.strip_prefix("step") {
        return make(digits(n)?, None, None, Scheme::Step);
    }
    if let Some(n) = name.strip_prefix("ckpt_") {
        return make(digits(n)?, None, None, Scheme::Ckpt);
    }
    if let Some(n) = name.strip_prefix("iter_") {
        return make(digits(n)?, None, None, Scheme::Iter);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, want: Option<(u64, Option<u64>, Option<u32>, Scheme)>) {
        let got = parse_ref(name).map(|r| (r.step, r.tokens, r.stage, r.scheme));
        assert_eq!(got, want, "{name}");
    }

    #[test]
    fn every_series_scheme_parses() {
        use Scheme::*;
        const B: u64 = 1_000_000_000;
        check(
            "stage1-step10000-tokens21B",
            Some((10000, Some(21 * B), Some(1), StageStepTokens)),
        );
        check(
            "stage1-step0-tokens0B",
            Some((0, Some(0), Some(1), StageStepTokens)),
        );
        // OLMo-2-7B and Apertus: no stage prefix.
        check(
            "step928646-tokens3896B",
            Some((928646, Some(3896 * B), None, StepTokens)),
        );
        check(
            "step1000-tokens500M",
            Some((1000, Some(500_000_000), None, StepTokens)),
        );
        check("step143000", Some((143000, None, None, Step)));
        check("step0", Some((0, None, None, Step)));
        check("global_step1000", Some((1000, None, None, GlobalStep)));
        check("step-125000", Some((125000, None, None, StepDash)));
        check(
            "stage2-step-40000",
            Some((40000, None, Some(2), StageStepDash)),
        );
        check("ckpt_359", Some((359, None, None, Ckpt)));
        check("step_2000", Some((2000, None, None, StepUnderscore)));
        check("iter_0001000", Some((1000, None, None, Iter)));
    }

    #[test]
    fn other_names_do_not_parse() {
        for name in [
            "main",
            "stage2-ingredient1-step11931-tokens50B",
            "stage1-step10000-tokens21B-longctx",
            "step",
            "step-",
            "stepx",
            "step12a",
            "global_step",
            "step100-tokens",
            "step100-tokens21X",
            "ckpt_",
            "v1.0",
            "",
        ] {
            check(name, None);
        }
    }

    #[test]
    fn order_is_stage_then_step() {
        let a = parse_ref("stage1-step-900").unwrap();
        let b = parse_ref("stage2-step-100").unwrap();
        let c = parse_ref("stage1-step-1000").unwrap();
        assert_eq!(a.order(&b), Ordering::Less);
        assert_eq!(a.order(&c), Ordering::Less);
        assert_eq!(b.order(&c), Ordering::Greater);
    }
}
