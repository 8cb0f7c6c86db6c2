//! Bad input through the public API: each is an error naming the file, never a panic.

use serde_json::json;
use xlpatch_export::{ExportError, ExportOptions, Manifest, ModelError, export};

use crate::support::{TempDir, random_weights, write_checkpoint, write_safetensors};

fn tiny() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 24,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": 20
    })
}

fn export_err(src: &std::path::Path) -> ExportError {
    let out = TempDir::new("err-out");
    export(&ExportOptions::new(src, out.path())).expect_err("export must fail")
}

#[test]
fn unknown_architecture() {
    let src = TempDir::new("err-arch");
    let mut cfg = tiny();
    cfg["architectures"] = json!(["FooForCausalLM"]);
    write_checkpoint(src.path(), &cfg, 1, 1);
    let e = export_err(src.path()).to_string();
    assert_eq!(
        e,
        format!(
            "unsupported architecture \"FooForCausalLM\" in {}/config.json (supported: \
             llama, mistral, qwen2, gemma3_text, olmo2, qwen3, smollm3, gpt_neox, bloom, apertus)",
            src.path().display()
        )
    );
}

#[test]
fn unsupported_model_type_names_the_supported_ones() {
    let src = TempDir::new("err-model-type");
    let mut cfg = tiny();
    cfg["model_type"] = json!("gpt2");
    write_checkpoint(src.path(), &cfg, 1, 1);
    let e = export_err(src.path());
    let ExportError::UnsupportedArchitecture {
        name, supported, ..
    } = &e
    else {
        panic!("not an unsupported-architecture error: {e}");
    };
    assert_eq!(name, "gpt2");
    for t in [
        "olmo2", "apertus", "bloom", "gpt_neox", "smollm3", "qwen3", "llama",
    ] {
        assert!(supported.contains(&t), "{t} missing from {e}");
    }
}

#[test]
fn missing_config() {
    let src = TempDir::new("err-noconfig");
    let e = export_err(src.path()).to_string();
    assert!(e.contains("config.json"), "{e}");
}

/// `--model` given a safetensors file or a mistyped path: said so, not
/// ".../config.json: Not a directory".
#[test]
fn a_model_that_is_not_a_checkpoint_says_what_is_expected() {
    let src = TempDir::new("err-not-model");
    write_checkpoint(src.path(), &tiny(), 1, 1);
    let file = src.path().join("model.safetensors");
    let e = export_err(&file).to_string();
    assert!(
        e.contains("is a file but not a GGUF file")
            && e.contains("a Hugging Face checkpoint directory (config.json and *.safetensors) or a .gguf file")
            && !e.contains("Not a directory"),
        "{e}"
    );
    for typo in ["model.gguff", "modle.gguf", "x.safetensors"] {
        let p = src.path().join(typo);
        let e = export_err(&p);
        assert!(matches!(e, ExportError::NotAModel { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("{} does not exist", p.display())) && e.contains(".gguf file"),
            "{e}"
        );
    }
}

#[test]
fn truncated_safetensors() {
    let src = TempDir::new("err-trunc");
    write_checkpoint(src.path(), &tiny(), 1, 1);
    let p = src.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = export_err(src.path());
    assert!(matches!(e, ExportError::Truncated { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.starts_with(&format!("{} is truncated", p.display())),
        "{e}"
    );
}

#[test]
fn missing_tensor() {
    let src = TempDir::new("err-missing");
    let cfg = tiny();
    std::fs::write(src.path().join("config.json"), cfg.to_string()).unwrap();
    let mut w = random_weights(&cfg, 1);
    w.remove("model.layers.1.mlp.down_proj.weight");
    write_safetensors(&src.path().join("model.safetensors"), &w);
    let e = export_err(src.path()).to_string();
    assert_eq!(
        e,
        format!(
            "tensor \"model.layers.1.mlp.down_proj.weight\" is missing from {}",
            src.path().join("model.safetensors").display()
        )
    );
}

#[test]
fn shape_mismatch() {
    let src = TempDir::new("err-shape");
    let cfg = tiny();
    std::fs::write(src.path().join("config.json"), cfg.to_string()).unwrap();
    let mut w = random_weights(&cfg, 1);
    w.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        (vec![16, 16], vec![0.0; 256]),
    );
    write_safetensors(&src.path().join("model.safetensors"), &w);
    let e = export_err(src.path()).to_string();
    assert_eq!(
        e,
        format!(
            "tensor \"model.layers.0.self_attn.k_proj.weight\" in {} has shape [16, 16], expected [8, 16]",
            src.path().join("model.safetensors").display()
        )
    );
}

#[test]
fn tokenizer_larger_than_the_vocabulary() {
    let src = TempDir::new("err-tok");
    write_checkpoint(src.path(), &tiny(), 1, 1);
    let tok = src.path().join("tokenizer.json");
    std::fs::write(
        &tok,
        r#"{"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": 20}]}"#,
    )
    .unwrap();
    let out = TempDir::new("err-tok-out");
    let mut o = ExportOptions::new(src.path(), out.path());
    o.tokenizer = Some(tok.clone());
    let e = export(&o).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "tokenizer {} has ids up to 20, but the model's vocabulary has only 20 entries",
            tok.display()
        )
    );
}

#[test]
fn tampered_file_fails_the_manifest_check() {
    let src = TempDir::new("err-hash");
    write_checkpoint(src.path(), &tiny(), 1, 1);
    let out = TempDir::new("err-hash-out");
    export(&ExportOptions::new(src.path(), out.path())).unwrap();
    Manifest::load(out.path()).unwrap();
    let p = out.path().join("layer_1.onnx");
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let e = Manifest::load(out.path()).unwrap_err();
    assert!(matches!(e, ModelError::HashMismatch { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{} does not match its manifest", p.display())),
        "{e}"
    );
    std::fs::remove_file(&p).unwrap();
    let e = Manifest::load(out.path()).unwrap_err().to_string();
    assert!(e.contains("layer_1.onnx"), "{e}");
}

#[test]
fn manifest_without_a_graph_hash_is_refused() {
    let src = TempDir::new("err-manifest");
    write_checkpoint(src.path(), &tiny(), 1, 1);
    let out = TempDir::new("err-manifest-out");
    export(&ExportOptions::new(src.path(), out.path())).unwrap();
    let p = out.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    m["files"].as_object_mut().unwrap().remove("head.onnx");
    std::fs::write(&p, m.to_string()).unwrap();
    let e = Manifest::load(out.path()).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: the manifest does not list head.onnx", p.display())
    );
}
