//! The words plots and the HTML page share: language names, the variant's name, what each
//! setting's latent is.

use xlpatch_results::{Setting, Variant};

use crate::input::Results;

/// A language's English name with its code, or the code alone when xlpatch does not know it.
pub(crate) fn lang_name(code: &str) -> String {
    xlpatch_concepts::Lang::from_code(code)
        .map_or(code.to_string(), |l| l.english_name().to_string())
}

/// The variant's name in captions.
pub(crate) fn variant_name(results: &Results) -> &'static str {
    match results.rows.first().map(|r| r.variant) {
        Some(Variant::SingleLayer) => "single-layer",
        Some(Variant::FromLayer) | None => "from-layer",
    }
}

/// What a setting's source latent is.
pub(crate) fn setting_description(setting: Setting) -> &'static str {
    match setting {
        Setting::Tgt => "source latent from the target's own language pair",
        Setting::Seen => {
            "source latent averaged over seen language pairs without the target languages or English"
        }
        Setting::EnEn => "source latent from English copy prompts",
        Setting::SelfCopy => "source latent from copy prompts in the output language",
        Setting::TgtTgt => "the target's own latent (identity control)",
        Setting::Unpatched => "no patch",
    }
}
