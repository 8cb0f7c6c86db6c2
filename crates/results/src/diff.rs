//! What differs between two versions of a results directory's file, for the refusal that
//! names it: the keys of `config.toml` and `run.json` whose values differ (old → new), or the
//! first line of another file that does.

use std::collections::BTreeMap;

use serde_json::Value;

/// At most this many differences are named.
const SHOWN: usize = 6;

/// `old` and `new` as `key: old → new` items (`name` tells the format by its extension).
pub(crate) fn describe(name: &str, old: &str, new: &str) -> String {
    let items = if name.ends_with(".toml") {
        keyed(toml_keys(old), toml_keys(new))
    } else if name.ends_with(".json") {
        match (
            serde_json::from_str::<Value>(old),
            serde_json::from_str::<Value>(new),
        ) {
            (Ok(a), Ok(b)) => {
                let (mut ka, mut kb) = (BTreeMap::new(), BTreeMap::new());
                flatten("", &a, &mut ka);
                flatten("", &b, &mut kb);
                keyed(ka, kb)
            }
            _ => lines(old, new),
        }
    } else {
        lines(old, new)
    };
    if items.is_empty() {
        return "the bytes differ".into();
    }
    let more = items.len().saturating_sub(SHOWN);
    let mut text = items.into_iter().take(SHOWN).collect::<Vec<_>>().join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

/// Short form of a value for a message.
fn short(v: &str) -> String {
    let v = v.trim();
    if v.chars().count() > 80 {
        format!("{}…", v.chars().take(77).collect::<String>())
    } else {
        v.to_string()
    }
}

fn keyed(old: BTreeMap<String, String>, new: BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("(absent)".to_string(), |v| short(v));
            format!("{k}: {} → {}", show(old.get(k)), show(new.get(k)))
        })
        .collect()
}

/// The `key = value` lines of a TOML file as `xlpatch` writes it, by dotted key (`[table]`
/// headers prefix the keys after them; a value continued on further lines is joined).
fn toml_keys(text: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut table = String::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') && !t.contains('=') {
            table = t.trim_matches(['[', ']']).trim().to_string();
            last = None;
            continue;
        }
        match t.split_once('=') {
            Some((k, v)) if !k.contains(['"', '[']) => {
                let key = if table.is_empty() {
                    k.trim().to_string()
                } else {
                    format!("{table}.{}", k.trim())
                };
                keys.insert(key.clone(), v.trim().to_string());
                last = Some(key);
            }
            _ => {
                if let Some(v) = last.as_ref().and_then(|k| keys.get_mut(k)) {
                    v.push(' ');
                    v.push_str(t);
                }
            }
        }
    }
    keys
}

/// A JSON value's leaves by path (`models[1].hash`).
fn flatten(path: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        leaf => {
            out.insert(path.to_string(), leaf.to_string());
        }
    }
}

/// The first line that differs.
fn lines(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let at = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    if at >= a.len() && at >= b.len() {
        return Vec::new();
    }
    let show = |l: Option<&&str>| l.map_or("(absent)".to_string(), |l| short(l));
    vec![format!(
        "line {}: {} → {}",
        at + 1,
        show(a.get(at)),
        show(b.get(at))
    )]
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn differences_are_named_by_key() {
        let old = "models = [\"a/step_*\"]\nseed = 0\n\n[plugins]\npatch = \"patch-replace\"\n";
        let new = "models = [\"a/step_*\"]\nseed = 1\n\n[plugins]\npatch = \"patch-add\"\n";
        assert_eq!(
            describe("config.toml", old, new),
            "plugins.patch: \"patch-replace\" → \"patch-add\"; seed: 0 → 1"
        );
        let old =
            r#"{"models": [{"checkpoint": "s", "hash": "h0"}], "shard": {"count": 2, "index": 0}}"#;
        let new = r#"{"models": [{"checkpoint": "s", "hash": "h1"}]}"#;
        assert_eq!(
            describe("run.json", old, new),
            "models[0].hash: \"h0\" → \"h1\"; shard.count: 2 → (absent); shard.index: 0 → (absent)"
        );
        assert_eq!(
            describe("prompts.jsonl", "a\nb\n", "a\nc\n"),
            "line 2: b → c"
        );
        assert_eq!(describe("x", "a", "a"), "the bytes differ");
    }
}
