//! The enumerations a results file stores by name: settings, variants, prompt kinds and
//! prompt roles. The engine plans with them and the report groups by them, so they live here,
//! below both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which source prompts feed a patch's latent (docs/method.md, "Settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// The target's own language pair, with C_S.
    Tgt,
    /// Every pair of two different languages the model saw, neither of them a target
    /// language nor English, with C_S.
    Seen,
    /// English copy prompts of C_S.
    EnEn,
    /// Copy prompts of C_S in the target's output language.
    #[serde(rename = "self")]
    SelfCopy,
    /// The target prompt itself, cut after its word (the identity control).
    TgtTgt,
    /// No patch.
    Unpatched,
}

impl Setting {
    /// Every setting, in report order.
    pub const ALL: [Setting; 6] = [
        Setting::Tgt,
        Setting::Seen,
        Setting::EnEn,
        Setting::SelfCopy,
        Setting::TgtTgt,
        Setting::Unpatched,
    ];

    /// The name in configs and results (`tgt`, `seen`, `en_en`, `self`, `tgt_tgt`,
    /// `unpatched`).
    pub fn name(self) -> &'static str {
        match self {
            Setting::Tgt => "tgt",
            Setting::Seen => "seen",
            Setting::EnEn => "en_en",
            Setting::SelfCopy => "self",
            Setting::TgtTgt => "tgt_tgt",
            Setting::Unpatched => "unpatched",
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which patch a sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Cut source prompts read at the word, patched at the target's word in blocks `j..L`.
    #[default]
    FromLayer,
    /// Translation prompts read at their last token, patched at the target's last token in
    /// block `j` only (HeteroPatch).
    SingleLayer,
}

impl Variant {
    /// The name in configs and results (`from_layer`, `single_layer`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::FromLayer => "from_layer",
            Variant::SingleLayer => "single_layer",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a prompt is for, which decides where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// Ends where the answer would start (`... Deutsch: "`): a target prompt, and the
    /// source prompt of the single-layer variant.
    Translation,
    /// Ends right after the query word (`... Deutsch: "Buch`): a source prompt.
    Cut,
}

impl PromptKind {
    /// `translation` or `cut`.
    pub fn name(self) -> &'static str {
        match self {
            PromptKind::Translation => "translation",
            PromptKind::Cut => "cut",
        }
    }
}

/// What a prompt of a prompt set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The prompt that is patched and measured.
    Target,
    /// A prompt a latent is read from.
    Source,
}
