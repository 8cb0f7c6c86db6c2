"""The GPU check of backend-candle, run on a machine with an NVIDIA GPU, PyTorch and
transformers, from the repository root, with the kit `cargo xtask gpu-check` builds:

    python3 bench/gpu/check.py --kit target/gpu-check [--out DIR] [--budget 420]

1. Makes random-weight checkpoints of Gemma-3-270M's and EuroLLM-1.7B's shapes (transformers,
   float32, seeded) and exports them with the kit's `xlpatch export` (fused graphs), with the
   fixture series' character tokenizer (the prompts only need valid ids; the weights are
   random, so the numbers mean nothing, the times do).
2. Cross-check: the same sweep with `backend-candle` on `device = "cuda"` and on `"cpu"`:
   max |dp| over every probability column and whether the generations are equal.
3. Per-target time on CUDA at several `target_batch` sizes, and the f32 / bf16 difference.
4. The bench's Python pipeline (bench/python/reference.py, nnsight) on CUDA for the same
   prompts, when nnsight is installed: its per-target time, for the ratio.

Writes `summary.json` and `summary.md` into --out and prints the markdown. Every step is
bounded by --budget seconds in all (steps that would not fit are skipped and say so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
T0 = time.monotonic()

SHAPES = {
    # google/gemma-3-270m
    "gemma-270m-shape": {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": 262144,
        "hidden_size": 640,
        "intermediate_size": 2048,
        "num_hidden_layers": 18,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "sliding_window": 512,
        "layer_types": [
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)
        ],
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "query_pre_attn_scalar": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "final_logit_softcapping": None,
        "attn_logit_softcapping": None,
        "tie_word_embeddings": True,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "initializer_range": 0.02,
    },
    # utter-project/EuroLLM-1.7B
    "eurollm-1.7b-shape": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "initializer_range": 0.02,
    },
}
LANGS = ["en", "de", "fr", "es", "it", "pt", "nl", "pl"]


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def left(budget: float) -> float:
    return budget - (time.monotonic() - T0)


def make_checkpoint(name: str, work: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    d = work / f"{name}-hf"
    if (d / "model.safetensors").is_file() or (d / "model.safetensors.index.json").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(SHAPES[name], indent=1))
    cfg = AutoConfig.from_pretrained(d)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg).float()
    model.save_pretrained(d, safe_serialization=True)
    (d / "config.json").write_text(json.dumps(SHAPES[name], indent=1))
    del model
    torch.cuda.empty_cache()
    return d


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(map(str, cmd)))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def sweep(xl: Path, model: Path, out: Path, targets: int, device: str, dtype: str,
          batch: int, threads: int = 0) -> dict:
    """One sweep; returns rows and per-target times."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.toml"
    cfg.write_text(
        "\n".join(
            [
                f'models = ["{model}"]',
                f'concepts = "{ROOT / "fixtures/concepts"}"',
                f"languages = {json.dumps(LANGS)}",
                'pairs = [["fr", "de"]]',
                f"concept_pairs = {targets}",
                "max_new_tokens = 10",
                f"threads = {threads}",
                f"target_batch = {batch}",
                "[plugins]",
                'backend = "backend-candle"',
                "[plugins.backend_params]",
                f'device = "{device}"',
                f'dtype = "{dtype}"',
                "",
            ]
        )
    )
    res = out / "results"
    t = time.monotonic()
    sh([xl, "sweep", "--config", cfg, "--out", res])
    wall = time.monotonic() - t
    rows = [json.loads(l) for l in (res / "results.jsonl").read_text().splitlines() if l]
    times = [json.loads(l)["seconds"] for l in (res / "timings.jsonl").read_text().splitlines() if l]
    return {"rows": rows, "times": times, "wall": wall, "dir": res}


def compare(a: list[dict], b: list[dict]) -> dict:
    key = lambda r: (r["unit"], r["setting"], r["start_layer"])  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    assert len(a) == len(b), (len(a), len(b))
    dp, gen_diff = 0.0, 0
    for x, y in zip(a, b):
        assert key(x) == key(y)
        for k, v in x.items():
            if k.startswith("p_"):
                dp = max(dp, abs(v - y[k]))
        gen_diff += x["generation_ids"] != y["generation_ids"]
    return {"rows": len(a), "max_dp": dp, "generations_differing": gen_diff}


def per_target(times: list[float]) -> float:
    return sum(times) / len(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kit", type=Path, default=ROOT / "target/gpu-check")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", tempfile.gettempdir() + "/gpu-check")))
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "xlpatch-gpu")
    p.add_argument("--budget", type=float, default=420.0)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    xl = (args.kit / "bin/xlpatch").resolve()
    os.chmod(xl, 0o755)
    summary: dict = {"gpu": subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True).stdout.strip()}
    log(f"GPU: {summary['gpu']}")
    tok = ROOT / "fixtures/series/tokenizer.json"

    def save() -> None:
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))

    for name in ["gemma-270m-shape", "eurollm-1.7b-shape"]:
        m: dict = {}
        summary[name] = m
        try:
            hf = make_checkpoint(name, args.work)
            exp = args.work / name
            if not (exp / "manifest.json").is_file():
                t = time.monotonic()
                sh([xl, "export", "--model", hf, "--tokenizer", tok, "--out", exp, "--ops", "fused"])
                m["export_s"] = time.monotonic() - t
            big = name.startswith("eurollm")
            # Cross-check cuda against cpu on a few targets (the CPU side is the slow one).
            n_cross = 1 if big else 2
            cu = sweep(xl, exp, args.work / f"{name}-cuda-x", n_cross, "cuda", "f32", 1)
            cpu = sweep(xl, exp, args.work / f"{name}-cpu-x", n_cross, "cpu", "f32", 1)
            m["cross_check_cuda_vs_cpu"] = compare(cpu["rows"], cu["rows"])
            m["cpu_s_per_target"] = per_target(cpu["times"])
            log(f"{name}: cross-check {m['cross_check_cuda_vs_cpu']}")
            save()
            # Per-target time on CUDA by target_batch (f32), then bf16 at the largest.
            n = 8 if big else 16
            m["cuda_f32"] = {}
            for batch in [1, 4, 8] if big else [1, 4, 16]:
                if left(args.budget) < 60:
                    m["cuda_f32"][batch] = "skipped: out of time"
                    continue
                r = sweep(xl, exp, args.work / f"{name}-cuda-b{batch}", n, "cuda", "f32", batch)
                m["cuda_f32"][batch] = {"s_per_target": per_target(r["times"]), "targets": n}
                log(f"{name}: target_batch {batch}: {m['cuda_f32'][batch]}")
                if batch == 1:
                    f32_rows = r["rows"]
                save()
            if left(args.budget) > 60:
                r = sweep(xl, exp, args.work / f"{name}-cuda-bf16", n, "cuda", "bf16", 1)
                m["cuda_bf16"] = {
                    "s_per_target": per_target(r["times"]),
                    "vs_f32": compare(f32_rows, r["rows"]),
                }
                log(f"{name}: bf16 {m['cuda_bf16']}")
            # The Python pipeline on the same GPU, same prompts (first targets only).
            if left(args.budget) > 90:
                prompts = args.work / f"{name}-cuda-b1/results/prompts.jsonl"
                ref_out = args.out / f"{name}-reference.jsonl"
                try:
                    sh([sys.executable, ROOT / "bench/python/reference.py", "--model", hf,
                        "--tokenizer", tok, "--prompts", prompts, "--out", ref_out,
                        "--limit", "1" if big else "2", "--device", "cuda"],
                       timeout=max(30, left(args.budget) - 30))
                    secs = [json.loads(l)["seconds"] for l in ref_out.read_text().splitlines()
                            if '"seconds"' in l and '"item"' in l]
                    m["pytorch_s_per_target"] = sum(secs) / len(secs)
                    m["speedup_vs_pytorch"] = m["pytorch_s_per_target"] / m["cuda_f32"][1][
                        "s_per_target"]
                except Exception as e:  # noqa: BLE001
                    m["pytorch"] = f"not run: {e}"
            else:
                m["pytorch"] = "skipped: out of time"
        except Exception as e:  # noqa: BLE001
            m["error"] = repr(e)
            log(f"{name}: {e!r}")
        save()

    md = ["| model | check | value |", "|---|---|---|"]
    for name in SHAPES:
        for k, v in summary.get(name, {}).items():
            md.append(f"| {name} | {k} | {json.dumps(v, default=str)} |")
    text = f"GPU: {summary['gpu']}\n\n" + "\n".join(md) + "\n"
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
