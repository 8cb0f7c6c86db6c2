"""The reference pipeline: cross-lingual concept patching as the prior work's nnsight scripts run it.

Written for xlpatch, to benchmark it against (`cargo xtask bench`, BENCHMARKS.md). It reads the
prompts that `xlpatch sweep` wrote (`prompts.jsonl`: the exact token ids, the word positions and
the token sets of every metric), so both sides work on identical inputs, and computes what a
sweep computes for each target prompt and setting (docs/method.md), the way Dumas et al.'s nnsight
code does it:

* source latents: one nnsight trace over the setting's source prompts (one invoke each,
  left-padded into one batch), saving every decoder layer's output at the last token of the
  source concept word; averaged over the source prompts per layer;
* for every start layer j: a full forward pass of the whole target prompt (`model.trace`),
  the latents written into the outputs of layers j..L-1 at the target's word position, and
  the softmax of the logits at the last position;
* for every start layer j: a greedy generation of up to 10 new tokens (`model.generate`)
  with the same intervention on the prompt's forward pass; the later steps run with
  transformers' default key-value cache, so the patched position keeps its patched keys and
  values, which is what "the patch stays applied" means. It stops after a token whose text
  contains `"` or an end-of-sequence token (the stop token is kept), as xlpatch does.

Nothing is reused across start layers: every j recomputes the whole prompt through every
layer, twice (probabilities, then generation), with logits at every position.

Output: one JSON line per (target, setting, start layer) with the row keys of xlpatch's
results (item, setting, start_layer, p_src_out, p_tgt_out, p_src_in, p_tgt_in, p_src_other,
p_tgt_other, generation_ids) plus the top-2 logit gap of every greedy step, and one line per
target with the wall time of its whole work (`{"item": ..., "seconds": ...}`, model load
excluded).

float32 on the CPU (default) or, with `--device cuda`, a GPU; `--threads` intra-op threads
(default 2; `cargo xtask bench` passes the same count to both sides).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import NoReturn

# Settings whose latent does not come from source prompts in prompts.jsonl.
NO_SOURCES = ("tgt_tgt", "unpatched")
# The probability columns of a results row, as named in `metric_ids`.
METRICS = ("p_src_out", "p_tgt_out", "p_src_in", "p_tgt_in", "p_src_other", "p_tgt_other")


def fail(message: str) -> NoReturn:
    print(f"reference.py: {message}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="Hugging Face checkpoint dir")
    p.add_argument(
        "--tokenizer",
        type=Path,
        help="tokenizer.json (default: the one in --model); used for the stop tokens only",
    )
    p.add_argument("--prompts", required=True, type=Path, help="an xlpatch prompts.jsonl")
    p.add_argument("--out", required=True, type=Path, help="the JSONL rows to write")
    p.add_argument(
        "--settings",
        help="comma-separated settings to run (default: those with source prompts in the file)",
    )
    p.add_argument("--limit", type=int, help="run only the first N target prompts")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument(
        "--device", default="cpu", help="where the model runs: cpu (default) or cuda[:N]"
    )
    p.add_argument("--max-new-tokens", type=int, default=10)
    return p.parse_args(argv)


class Item:
    """One target prompt and its source prompts per setting."""

    def __init__(self, target: dict):
        self.key = target["item"]
        self.target = target
        self.sources: OrderedDict[str, list[dict]] = OrderedDict()


def read_prompts(path: Path) -> list[Item]:
    items: OrderedDict[str, Item] = OrderedDict()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key, role = rec["item"], rec["role"]
            rec["ids"], rec["word_end"]
        except (ValueError, KeyError) as e:
            fail(f"{path}:{n}: not an xlpatch prompt record ({e})")
        if role == "target":
            if "metric_ids" not in rec:
                fail(
                    f"{path}:{n}: target record without `metric_ids`; "
                    "rerun the sweep with an xlpatch that writes them"
                )
            items[key] = Item(rec)
        elif role == "source":
            if key not in items:
                fail(f"{path}:{n}: source record before its target {key!r}")
            items[key].sources.setdefault(rec["setting"], []).append(rec)
        else:
            fail(f"{path}:{n}: unknown role {role!r}")
    if not items:
        fail(f"{path}: no target prompt")
    return list(items.values())


def stop_tokens(tokenizer_json: Path, eos: list[int]) -> list[int]:
    """Every id whose decoded text contains `"`, and the end-of-sequence ids (xlpatch's rule)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids = [
        i
        for i in range(tok.get_vocab_size(with_added_tokens=True))
        if '"' in tok.decode([i], skip_special_tokens=False)
    ]
    return sorted(set(ids) | set(eos))


def layer_output(out):
    """A decoder layer's output hidden states (recent transformers return the tensor alone)."""
    return out[0] if isinstance(out, tuple) else out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
    from nnsight.modeling.transformers import TransformersModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    items = read_prompts(args.prompts)
    if args.limit is not None:
        items = items[: args.limit]
    settings = (
        args.settings.split(",")
        if args.settings
        else list(OrderedDict.fromkeys(s for it in items for s in it.sources))
    )
    for it in items:
        for s in settings:
            if s not in NO_SOURCES and not it.sources.get(s):
                fail(f"{args.prompts}: {it.key} has no source prompt for setting {s!r}")

    tok_path = args.tokenizer or args.model / "tokenizer.json"
    if not tok_path.is_file():
        fail(f"no tokenizer: {tok_path} does not exist (give --tokenizer)")
    try:
        config = AutoConfig.from_pretrained(args.model)
    except (OSError, ValueError) as e:
        fail(f"cannot read the checkpoint config in {args.model}: {e}")
    eos = config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    stops = stop_tokens(tok_path, eos)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos or [0])[0]

    t0 = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(
        args.model,
        dtype=torch.float32,
        device_map=None if args.device == "cpu" else args.device,
    )
    hf.eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tok_path))
    tokenizer.pad_token_id = pad
    tokenizer.padding_side = "left"
    model = TransformersModel(hf, task="text-generation", tokenizer=tokenizer)
    layers = model.model.layers
    n_layers = len(layers)
    load_seconds = time.perf_counter() - t0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out.open("w", encoding="utf-8")
    out.write(
        json.dumps(
            {
                "meta": {
                    "model": str(args.model),
                    "n_layers": n_layers,
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "load_seconds": load_seconds,
                    "settings": settings,
                    "stop_tokens": len(stops),
                }
            }
        )
        + "\n"
    )

    with torch.inference_mode():
        for it in items:
            start = time.perf_counter()
            rows = run_item(model, layers, n_layers, it, settings, stops, pad, args.max_new_tokens)
            seconds = time.perf_counter() - start
            for row in rows:
                out.write(json.dumps(row) + "\n")
            out.write(json.dumps({"item": it.key, "seconds": seconds}) + "\n")
            out.flush()
            print(f"{it.key}: {seconds:.2f} s", file=sys.stderr)
    out.close()


def source_latents(model, layers, n_layers: int, sources: list[dict]):
    """Every layer's output at each source's word end, averaged over the sources: `[L, d]`."""
    import nnsight
    import torch

    saved = []
    with model.trace() as tracer:
        for src in sources:
            # Left padding: index from the end, so that the pad width does not matter.
            at = src["word_end"] - len(src["ids"])
            with tracer.invoke([src["ids"]]):
                saved.append(
                    nnsight.save([layer_output(layers[l].output)[0, at] for l in range(n_layers)])
                )
    per_source = torch.stack([torch.stack(list(s)) for s in saved])  # [S, L, d]
    return per_source.mean(0)


def run_item(model, layers, n_layers, it: Item, settings, stops, pad: int, max_new: int):
    import nnsight
    import torch

    target = it.target
    ids = target["ids"]
    p = target["word_end"]
    missing = [k for k in METRICS if k not in target["metric_ids"]]
    if missing:
        fail(f"{it.key}: `metric_ids` lacks {', '.join(missing)}")
    # Every column xlpatch names a token set for (the six above, and any per-language ones).
    metric_ids = {
        k: torch.tensor(v, dtype=torch.long) for k, v in sorted(target["metric_ids"].items())
    }
    rows = []
    for setting in settings:
        if setting == "unpatched":
            latent, starts = None, [None] * n_layers
        elif setting == "tgt_tgt":
            with model.trace([ids]):
                own = nnsight.save([layer_output(layers[l].output)[0, p] for l in range(n_layers)])
            latent, starts = torch.stack(list(own)), range(n_layers)
        else:
            latent = source_latents(model, layers, n_layers, it.sources[setting])
            starts = range(n_layers)
        for j, start in enumerate(starts):
            # Probabilities: one full forward pass with the patch (Dumas et al.'s object lens).
            with model.trace([ids]):
                if start is not None:
                    for l in range(start, n_layers):
                        layer_output(layers[l].output)[:, p] = latent[l]
                logits = nnsight.save(model.lm_head.output[0, -1])
            probs = logits.softmax(-1)
            # Generation: the same patch on the prompt's forward pass; the later steps reuse
            # transformers' key-value cache, where the patched position stays patched.
            with model.generate(
                [ids],
                max_new_tokens=max_new,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=pad,
                output_logits=True,
                return_dict_in_generate=True,
            ) as tracer:
                if start is not None:
                    for l in range(start, n_layers):
                        layer_output(layers[l].output)[:, p] = latent[l]
                result = nnsight.save(tracer.result)
            generated = result.sequences[0, len(ids) :].tolist()
            # The generation's first step must be the patched forward pass above: if nnsight
            # stopped applying the intervention there, say so rather than compare wrong numbers.
            first = result.logits[0][0]
            if not torch.allclose(first, logits, rtol=0, atol=1e-3):
                worst = float((first - logits).abs().max())
                fail(
                    f"{it.key} {setting} j={j}: the generation's first step differs from the "
                    f"patched forward pass (logits differ by up to {worst:.2e}); "
                    "is the intervention applied to the prompt's pass?"
                )
            gaps = []
            for scores in result.logits:
                top = scores[0].topk(2).values
                gaps.append(float(top[0] - top[1]))
            row = {
                "item": it.key,
                "setting": setting,
                "start_layer": j,
            }
            for k, token_ids in metric_ids.items():
                row[k] = float(probs[token_ids].double().sum())
            row["generation_ids"] = generated
            row["top2_gaps"] = gaps
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
