"""Trains the fixture checkpoint series: a tiny multilingual Llama model, from random init, on
few-shot word-translation blocks built from the project's concept table (the prompt format of docs/method.md),
saved at logarithmically spaced steps and evaluated at each. Run from the repo root:

    .cache/py/bin/python xtask/py/train_fixture.py --out .cache/fixture-train [--install fixtures/series]

Writes into --out:

    corpus.txt            the training corpus (blocks of 1-6 lines, separated by a blank line)
    tokenizer.json        byte-level BPE trained on the corpus (Hugging Face tokenizers JSON)
    step_<N>/             config.json, model.safetensors (float16), generation_config.json,
                          tokenizer.json (save_pretrained)
    eval_queries.jsonl    the fixed evaluation set (prompt, accepted answers, group, pair)
    training.json         config, seeds, corpus stats, concepts, held-out pairs, loss curve,
                          per-checkpoint accuracies (held-in, held-out, copy, per pair), wall time

`--install DIR` then copies step_<N>/{config.json, model.safetensors}, tokenizer.json and
training.json there (`--install-only` copies an existing run without training).

Data. Study languages STUDY_LANGS and a seeded sample of N_CONCEPTS concepts of the table (listed
in training.json: the model knows only these). Every ordered pair of two different study languages
is a translation pair, except HELD_OUT_PAIRS, which never occur together anywhere in the corpus
(each of their languages occurs in many other pairs): they test transfer through a shared space.
Every language also has copy blocks (L -> L, the same form twice). A block is k lines of one pair,
`<Name_in>: "<form>" - <Name_out>: "<form>"` joined by "\n", concepts drawn uniformly without
replacement; each side uses the preferred form with probability P_PREFERRED, else another listed
synonym. k runs from 1 to 6 (LINE_SHARE: the share of all lines in k-line blocks). Why not only
6-line blocks: with 6-line blocks only, the model stayed at the unigram loss on the answer word for
the whole budget (the attention from the answer to its source word forms late when every line
sees ~60 tokens of distractors); single-line blocks make that circuit form within a few hundred
steps, and the 6-line blocks (20% of lines) teach the few-shot prompt the evaluation uses.

BOS. The tokenizer's post-processor prepends `<s>` (TemplateProcessing `<s> $A`), so
`tokenizer.encode(text)` (add_special_tokens=True) yields `<s>` + the text: the prompt text itself
never contains `<s>`. In training each block is one sequence: `<s>` + block + `</s>` (id 1),
starting at position 0 like an evaluation prompt, right-padded with `<pad>` (id 2, ignored by the
loss); blocks of the same k are batched together (LINES_PER_STEP // k blocks per step).

Loss: plain next-token cross-entropy over every non-pad token (no answer masking).

Checkpoints: steps CKPT_STEPS_BASE + the final step; step 0 is the random init. Training runs in
float32; the checkpoints are stored in float16 (SAVE_DTYPE) to keep the fixture small, and every
accuracy in training.json is measured on the stored weights (loaded back, upcast to float32).

Evaluation: 5-shot prompts of the same format (shots and query of one pair, preferred forms,
distinct concepts), greedy generation of up to 10 tokens, answer = the decoded text up to the first
`"`; correct if it equals any synonym in the output language of the query concept (or of another
concept sharing the query form in the input language). Everything runs on the CPU with fixed seeds
and torch.use_deterministic_algorithms(True); bit-identical reruns need the same versions
(requirements.txt) and the same thread count (--threads, default 2).
"""

import argparse
import copy
import json
import math
import os

# On a busy machine, OpenMP threads that spin at barriers slow training several-fold; set before
# torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import random
import shutil
import sys
import time

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

CONCEPTS_TSV = os.path.join("fixtures", "concepts", "nouns.tsv")

SEED = 20250117
LANG_NAMES = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "es": "Español",
    "it": "Italiano",
    "pt": "Português",
    "nl": "Nederlands",
    "pl": "Polski",
    "ru": "Русский",
    "zh": "中文",
    "ja": "日本語",
    "fi": "Suomi",
    "et": "Eesti",
    "sw": "Kiswahili",
    "cy": "Cymraeg",
}
STUDY_LANGS = ["en", "de", "fr", "es", "it", "pt", "nl", "pl"]
HELD_OUT_PAIRS = [("de", "it"), ("it", "de"), ("fr", "pl"), ("pl", "fr"), ("es", "nl"), ("nl", "es")]

# corpus
N_CONCEPTS = 80  # seeded sample of the table's rows (0 = all)
N_LINES = 100000
# share of the corpus lines that sit in blocks of k lines (the evaluation prompts have 6)
LINE_SHARE = {1: 0.5, 2: 0.1, 3: 0.1, 4: 0.05, 5: 0.05, 6: 0.2}
P_PREFERRED = 0.8
COPY_BLOCK_FRACTION = 0.1
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]  # ids 0, 1, 2
VOCAB_SIZE = 1200

# model
MODEL = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rope_theta=10000.0,
)

# training
LINES_PER_STEP = 96
# curriculum: the first CURRICULUM_STEPS steps see only single-line blocks, then all blocks
CURRICULUM_STEPS = 800
STEPS = 2000
LR = 5e-3
MIN_LR_FRAC = 0.1
WARMUP = 50
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0
LOG_EVERY = 10
CKPT_STEPS_BASE = [0, 16, 64, 256, 512, 1024]  # plus the final step
SAVE_DTYPE = "float16"

# evaluation
N_SHOTS = 5
N_EVAL = {"held_in": 200, "held_out": 200, "copy": 100}
MAX_NEW_TOKENS = 10
EVAL_BATCH = 50
PROBE = 0

# interchange interventions (0: off). Each step also trains IIT_PAIRS_PER_STEP (donor, target)
# block pairs: the target block's last line reads `<a>: "<C_T in a>" - <b>: "<C_S in b>"` and,
# from a start layer j < IIT_MAX_START_FRAC * layers on, the residual after every block at the
# last token of C_T's word is replaced by the donor's at the last token of C_S's word (a block
# of another trained pair ending with C_S, cut after it): the answer must be read from the word's
# position in middle layers, in a form shared across languages.
IIT_PAIRS_PER_STEP = 0
IIT_MAX_START_FRAC = 0.5
IIT_WEIGHT = 1.0


# Named designs: a step count and overrides of the constants above (as --set gives them, in
# this order, recorded in training.json's `overrides`). "deep" is the series of
# fixtures/series-deep/ (docs/fixture-designs.md): 8 layers, and a vocabulary under which nearly
# every form is one token, so that the word's token carries the concept and middle layers read
# it from there.
DESIGNS = {
    "deep": {
        "steps": 2400,
        "set": [
            "num_hidden_layers=8",
            "intermediate_size=256",
            "VOCAB_SIZE=3000",
            "CKPT_STEPS_BASE=[0,32,64,128,256,512,1024,2048]",
            "LR=0.002",
        ],
    },
}


def setup_determinism(threads):
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    # determinism does not need the NaN-filling of fresh tensors (10% of a step here)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)


def load_concepts(langs):
    with open(CONCEPTS_TSV, encoding="utf-8") as f:
        lines = f.read().rstrip("\n").split("\n")
    header = lines[0].split("\t")
    assert header[0] == "concept", header
    cols = {lang: header.index(lang) for lang in langs}
    concepts = []
    for line in lines[1:]:
        cells = line.split("\t")
        concepts.append({"id": cells[0], **{lang: cells[cols[lang]].split("|") for lang in langs}})
    return concepts


def pairs_for(langs, held_out):
    held_in = [(a, b) for a in langs for b in langs if a != b and (a, b) not in held_out]
    copies = [(a, a) for a in langs]
    return held_in, copies


def fmt_line(lin, win, lout, wout):
    return f'{LANG_NAMES[lin]}: "{win}" - {LANG_NAMES[lout]}: "{wout}"'


def pick_form(rng, forms):
    if len(forms) == 1 or rng.random() < P_PREFERRED:
        return forms[0]
    return rng.choice(forms[1:])


def build_corpus(concepts, held_in, copies, rng):
    """Returns (blocks, lines per block, blocks per pair), blocks in a shuffled order."""
    sizes = [k for k, share in sorted(LINE_SHARE.items()) for _ in range(round(N_LINES * share / k))]
    rng.shuffle(sizes)
    blocks, pair_counts = [], {}
    for k in sizes:
        if rng.random() < COPY_BLOCK_FRACTION:
            lin, lout = rng.choice(copies)
        else:
            lin, lout = rng.choice(held_in)
        pair_counts[f"{lin}-{lout}"] = pair_counts.get(f"{lin}-{lout}", 0) + 1
        lines = []
        for c in rng.sample(concepts, k):
            win = pick_form(rng, c[lin])
            wout = win if lin == lout else pick_form(rng, c[lout])
            lines.append(fmt_line(lin, win, lout, wout))
        blocks.append("\n".join(lines))
    return blocks, sizes, pair_counts


def make_batches(sizes, gen, only_k=None):
    """One epoch: blocks grouped by their number of lines k, LINES_PER_STEP // k blocks per batch
    (so every step sees about the same number of lines and little padding), batches shuffled.
    only_k: use only the blocks of that many lines."""
    by_k = {}
    for i, k in enumerate(sizes):
        if only_k is None or k == only_k:
            by_k.setdefault(k, []).append(i)
    batches = []
    for k in sorted(by_k):
        idx = torch.tensor(by_k[k])[torch.randperm(len(by_k[k]), generator=gen)]
        per = LINES_PER_STEP // k
        batches += [idx[i : i + per] for i in range(0, len(idx) - per + 1, per)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def train_tokenizer(blocks, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([b + "\n\n" for b in blocks], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
    )
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    return tok


def encode_blocks(tok, blocks):
    """One training sequence per block: <s> + block + </s>, right-padded with <pad> (id 2)."""
    encs = [e.ids + [1] for e in tok.encode_batch(blocks, add_special_tokens=True)]
    width = max(len(e) for e in encs)
    assert width <= MODEL["max_position_embeddings"], width
    ids = torch.full((len(encs), width), 2, dtype=torch.long)
    for r, e in enumerate(encs):
        ids[r, : len(e)] = torch.tensor(e)
    lens = torch.tensor([len(e) for e in encs])
    return (ids, lens), int(lens.sum())


def make_config(vocab_size):
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=MODEL["hidden_size"],
        intermediate_size=MODEL["intermediate_size"],
        num_hidden_layers=MODEL["num_hidden_layers"],
        num_attention_heads=MODEL["num_attention_heads"],
        num_key_value_heads=MODEL["num_key_value_heads"],
        max_position_embeddings=MODEL["max_position_embeddings"],
        rope_theta=MODEL["rope_theta"],
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )


def lr_at(step, total):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    p = (step - WARMUP) / max(1, total - WARMUP)
    return LR * (MIN_LR_FRAC + (1 - MIN_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * p)))


def ckpt_steps(total):
    return sorted({s for s in CKPT_STEPS_BASE if s < total} | {total})


def save_ckpt(model, tok, out, step):
    d = os.path.join(out, f"step_{step}")
    os.makedirs(d, exist_ok=True)
    # the weights are stored in SAVE_DTYPE (training runs in float32 throughout)
    copy.deepcopy(model).to(getattr(torch, SAVE_DTYPE)).save_pretrained(d, safe_serialization=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    return d


def train(model, tok, data, sizes, out, total, log, probe_queries=None, iit=None):
    gen = torch.Generator().manual_seed(SEED + 1)
    iit_gen = torch.Generator().manual_seed(SEED + 5)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR,
        betas=BETAS,
        eps=1e-8,
        fused=True,
    )
    saves = ckpt_steps(total)
    losses = []
    batches, pos, epoch = make_batches(sizes, gen, only_k=1 if CURRICULUM_STEPS else None), 0, 0
    tokens_seen, tokens_at = 0, {}
    t0 = time.time()
    acc_loss, acc_n = 0.0, 0
    model.train()
    for step in range(total + 1):
        if step in saves:
            tokens_at[step] = tokens_seen
            model.eval()
            save_ckpt(model, tok, out, step)
            model.train()
        if step == total:
            break
        if step == CURRICULUM_STEPS and CURRICULUM_STEPS:
            batches, pos = make_batches(sizes, gen), 0
        if pos == len(batches):
            only_k = 1 if step < CURRICULUM_STEPS else None
            batches, pos, epoch = make_batches(sizes, gen, only_k), 0, epoch + 1
        idx = batches[pos]
        pos += 1
        batch = data[0][idx, : int(data[1][idx].max())]
        labels = batch.masked_fill(batch == 2, -100)
        tokens_seen += int(data[1][idx].sum())
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total)
        loss = model(input_ids=batch, labels=labels).loss
        if iit is not None:
            pick = torch.randint(0, len(iit[0]) // 2, (IIT_PAIRS_PER_STEP,), generator=iit_gen)
            loss = loss + IIT_WEIGHT * iit_loss(model, iit, pick, iit_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        acc_loss += loss.item()
        acc_n += 1
        if PROBE and probe_queries and (step + 1) % PROBE == 0:
            model.eval()
            acc, _ = summarize(probe_queries, evaluate(model, tok, probe_queries))
            model.train()
            log(f"probe step {step + 1}: {acc} ({time.time() - t0:.0f}s)")
        if (step + 1) % LOG_EVERY == 0:
            losses.append({"step": step + 1, "loss": round(acc_loss / acc_n, 5), "lr": lr_at(step, total)})
            acc_loss, acc_n = 0.0, 0
            if (step + 1) % (LOG_EVERY * 10) == 0:
                log(f"step {step + 1}/{total} loss {losses[-1]['loss']:.4f} ({time.time() - t0:.0f}s)")
    return losses, epoch, tokens_at, time.time() - t0


def word_end_token(enc, end_char):
    """Index of the last token of the word ending at character end_char (offsets of encode)."""
    last = None
    for i, (a, b) in enumerate(enc.offsets):
        if b > a and a < end_char:
            last = i
    return last


def build_iit(tok, concepts, held_in, n, rng):
    """n (donor, target) block pairs for interchange interventions, tokenized, with the word
    positions: tensors (ids [2n, T], lens [2n], donor rows, target rows, donor pos, target pos)."""
    texts, positions = [], []
    for _ in range(n):
        (c, d), (a, b) = rng.choice(held_in), rng.choice(held_in)
        k_don, k_tgt = rng.randint(1, N_SHOTS + 1), rng.randint(1, N_SHOTS + 1)
        cs = rng.sample(concepts, max(k_don, k_tgt) + 1)
        src, tgt = cs[0], cs[1]
        ctx = cs[2:]
        don_lines = [fmt_line(c, pick_form(rng, x[c]), d, pick_form(rng, x[d])) for x in ctx[: k_don - 1]]
        win = pick_form(rng, src[c])
        don_prefix = "\n".join(don_lines + [f'{LANG_NAMES[c]}: "'])
        don = don_prefix + win
        tgt_lines = [fmt_line(a, pick_form(rng, x[a]), b, pick_form(rng, x[b])) for x in ctx[: k_tgt - 1]]
        tin = pick_form(rng, tgt[a])
        tgt_prefix = "\n".join(tgt_lines + [f'{LANG_NAMES[a]}: "'])
        target = tgt_prefix + tin + f'" - {LANG_NAMES[b]}: "{pick_form(rng, src[b])}"'
        for text, end in ((don, len(don_prefix) + len(win)), (target, len(tgt_prefix) + len(tin))):
            enc = tok.encode(text, add_special_tokens=True)
            texts.append(enc.ids + ([1] if text is target else []))
            positions.append(word_end_token(enc, end))
    width = max(len(t) for t in texts)
    ids = torch.full((len(texts), width), 2, dtype=torch.long)
    for r, t in enumerate(texts):
        ids[r, : len(t)] = torch.tensor(t)
    lens = torch.tensor([len(t) for t in texts])
    pos = torch.tensor(positions)
    return ids, lens, pos


def iit_loss(model, iit, idx, gen):
    """Loss of the target rows of the pairs idx under their interventions (donors also learn
    their own next tokens up to the cut)."""
    ids_all, lens_all, pos_all = iit
    rows = torch.stack([2 * idx, 2 * idx + 1], 1).reshape(-1)
    batch = ids_all[rows, : int(lens_all[rows].max())]
    pos = pos_all[rows]
    n = len(idx)
    don = torch.arange(0, 2 * n, 2)
    tgt = don + 1
    layers = model.config.num_hidden_layers
    start = torch.randint(0, max(1, int(IIT_MAX_START_FRAC * layers)), (n,), generator=gen)
    hooks = []
    for layer_i, layer in enumerate(model.model.layers):
        sel = start <= layer_i
        if not bool(sel.any()):
            continue
        d_r, t_r, d_p, t_p = don[sel], tgt[sel], pos[don[sel]], pos[tgt[sel]]

        def hook(_m, _inp, out, d_r=d_r, t_r=t_r, d_p=d_p, t_p=t_p):
            return out.index_put((t_r, t_p), out[d_r, d_p])

        hooks.append(layer.register_forward_hook(hook))
    try:
        labels = batch.masked_fill(batch == 2, -100)
        loss = model(input_ids=batch, labels=labels).loss
    finally:
        for h in hooks:
            h.remove()
    return loss


def build_eval(concepts, langs, held_in, held_out, copies, rng):
    # forms shared between concepts of one language: accept the answers of all of them
    by_form = {}
    for c in concepts:
        for lang in langs:
            for f in c[lang]:
                by_form.setdefault((lang, f), []).append(c)
    queries = []
    for group, pairs in (("held_in", held_in), ("held_out", held_out), ("copy", copies)):
        for _ in range(N_EVAL[group]):
            lin, lout = rng.choice(pairs)
            cs = rng.sample(concepts, N_SHOTS + 1)
            shots = [fmt_line(lin, c[lin][0], lout, c[lout][0]) for c in cs[:N_SHOTS]]
            q = cs[N_SHOTS]
            win = q[lin][0]
            query = f'{LANG_NAMES[lin]}: "{win}" - {LANG_NAMES[lout]}: "'
            prompt = "\n".join(shots + [query])
            if lin == lout:
                accepted = [win]
            else:
                accepted = sorted({f for c in by_form[(lin, win)] for f in c[lout]})
            queries.append(
                {"group": group, "pair": f"{lin}-{lout}", "concept": q["id"], "prompt": prompt, "accepted": accepted}
            )
    return queries


@torch.no_grad()
def evaluate(model, tok, queries):
    model.eval()
    quote = '"'
    results = []
    for i in range(0, len(queries), EVAL_BATCH):
        chunk = queries[i : i + EVAL_BATCH]
        encs = [tok.encode(q["prompt"]).ids for q in chunk]
        width = max(len(e) for e in encs)
        ids = torch.full((len(encs), width), 2, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        for r, e in enumerate(encs):
            ids[r, width - len(e) :] = torch.tensor(e)
            mask[r, width - len(e) :] = 1
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=2,
            eos_token_id=None,
        )
        for q, row in zip(chunk, out[:, width:].tolist()):
            text = tok.decode(row, skip_special_tokens=False)
            answer = text.split(quote, 1)[0] if quote in text else None
            results.append({"answer": answer, "ok": answer is not None and answer in q["accepted"], "raw": text})
    return results


def summarize(queries, results):
    groups, pairs = {}, {}
    for q, r in zip(queries, results):
        for d, k in ((groups, q["group"]), (pairs, f'{q["group"]}:{q["pair"]}')):
            n, ok = d.get(k, (0, 0))
            d[k] = (n + 1, ok + int(r["ok"]))
    acc = {k: round(ok / n, 4) for k, (n, ok) in groups.items()}
    per_pair = {k: {"n": n, "acc": round(ok / n, 4)} for k, (n, ok) in sorted(pairs.items())}
    return acc, per_pair


def token_notes(tok, concepts, langs):
    """How words and the closing quote tokenize (for the engine)."""
    enc = tok.encode('Deutsch: "Hund" - Français: "chien"', add_special_tokens=True)
    n_tokens, single, ends_clean = [], 0, 0
    quote_id = tok.token_to_id('"')
    for c in concepts:
        for lang in langs:
            for f in c[lang]:
                e = tok.encode(f'Deutsch: "{f}"', add_special_tokens=False)
                word = tok.encode(f, add_special_tokens=False).ids
                n_tokens.append(len(word))
                single += len(word) == 1
                # the word's tokens inside the line equal the word's own tokens, then a lone '"'
                ends_clean += e.ids[-1] == quote_id and e.ids[-1 - len(word) : -1] == word
    return {
        "example": {"text": 'Deutsch: "Hund" - Français: "chien"', "tokens": enc.tokens, "ids": enc.ids},
        "quote_token": {'"': quote_id, ' "': tok.token_to_id('Ġ"')},
        "forms": len(n_tokens),
        "forms_single_token": single,
        "mean_tokens_per_form": round(sum(n_tokens) / len(n_tokens), 3),
        "max_tokens_per_form": max(n_tokens),
        "forms_by_token_count": {str(n): n_tokens.count(n) for n in sorted(set(n_tokens))},
        "forms_tokenized_same_in_context_then_lone_quote": ends_clean,
        "note": 'In every line a form follows the token \' "\' and is tokenized as the bare form (no leading '
        "space: the ByteLevel regex splits the quote off); the form's own tokens are followed by the lone "
        "token '\"'. So the last token of the word is the token just before the closing quote, a source "
        "prompt cut after the word ends on it, and generation stops at the token '\"'. Multi-word forms "
        "(e.g. 'pomme de terre') contain tokens with a leading space ('Ġde').",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(".cache", "fixture-train"))
    ap.add_argument("--steps", type=int, default=None, help=f"training steps (default {STEPS}, or the design's)")
    ap.add_argument("--design", choices=sorted(DESIGNS), default=None,
                    help="a named design (DESIGNS): its steps and overrides, before any --set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--install", default=None, help="copy the series there after the run (e.g. fixtures/series)")
    ap.add_argument("--install-only", action="store_true", help="only copy an existing run in --out")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a module constant (experiments only), e.g. --set LR=0.005")
    ap.add_argument("--probe-every", type=int, default=0, help="experiments: quick held-in eval every N steps")
    args = ap.parse_args()
    overrides = {}
    if args.design:
        args.set = DESIGNS[args.design]["set"] + args.set
        if args.steps is None:
            args.steps = DESIGNS[args.design]["steps"]
    if args.steps is None:
        args.steps = STEPS
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k in MODEL:
            MODEL[k] = type(MODEL[k])(v)
        else:
            assert k in globals(), k
            globals()[k] = json.loads(v) if v[:1] in "[{" else type(globals()[k])(v)
        overrides[k] = v
    global PROBE
    PROBE = args.probe_every
    if args.install_only:
        install(args.out, args.install)
        return

    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    setup_determinism(args.threads)

    def log(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", flush=True)

    all_concepts = load_concepts(STUDY_LANGS)
    if N_CONCEPTS:
        keep = set(random.Random(SEED + 3).sample(range(len(all_concepts)), N_CONCEPTS))
        concepts = [c for i, c in enumerate(all_concepts) if i in keep]  # table order
    else:
        concepts = all_concepts
    held_out = [tuple(p) for p in HELD_OUT_PAIRS]
    held_in, copies = pairs_for(STUDY_LANGS, set(held_out))
    rng = random.Random(SEED)
    blocks, sizes, pair_counts = build_corpus(concepts, held_in, copies, rng)
    corpus_text = "\n\n".join(blocks) + "\n"
    with open(os.path.join(args.out, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write(corpus_text)
    for a, b in held_out:
        assert pair_counts.get(f"{a}-{b}", 0) == 0
    log(f"corpus: {len(blocks)} blocks, {len(corpus_text.encode('utf-8'))} bytes")

    tok = train_tokenizer(blocks, VOCAB_SIZE)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    data, n_tokens = encode_blocks(tok, blocks)
    notes = token_notes(tok, concepts, STUDY_LANGS)
    log(f"tokenizer: vocab {vocab}; {n_tokens} tokens, {len(data[0])} sequences of at most {data[0].shape[1]}; {notes['mean_tokens_per_form']} tokens/form")

    queries = build_eval(concepts, STUDY_LANGS, held_in, held_out, copies, random.Random(SEED + 2))
    probe = [q for q in queries if q["group"] == "held_in"][:100] + [q for q in queries if q["group"] == "held_out"][:50] + [
        q for q in queries if q["group"] == "copy"
    ][:50]

    torch.manual_seed(SEED)
    config = make_config(vocab)
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters")

    iit = None
    if IIT_PAIRS_PER_STEP:
        iit = build_iit(tok, concepts, held_in, 20000, random.Random(SEED + 4))
        log(f"interventions: {len(iit[0]) // 2} donor/target pairs, {IIT_PAIRS_PER_STEP} per step")
    losses, epochs, tokens_at, train_s = train(model, tok, data, sizes, args.out, args.steps, log, probe, iit)
    log(f"trained {args.steps} steps in {train_s:.0f}s ({epochs} full passes over the data)")

    with open(os.path.join(args.out, "eval_queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    checkpoints = []
    t_eval = time.time()
    for step in ckpt_steps(args.steps):
        d = os.path.join(args.out, f"step_{step}")
        m = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32)
        results = evaluate(m, tok, queries)
        acc, per_pair = summarize(queries, results)
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        checkpoints.append(
            {
                "step": step,
                "tokens_seen": tokens_at[step],
                "accuracy": acc,
                "per_pair": per_pair,
                "examples": [
                    {"pair": q["pair"], "concept": q["concept"], "accepted": q["accepted"], "answer": r["answer"]}
                    for q, r in list(zip(queries, results))[:: len(queries) // 10]
                ],
                "model_safetensors_bytes": size,
            }
        )
        log(f"step {step}: held-in {acc['held_in']:.3f} held-out {acc['held_out']:.3f} copy {acc['copy']:.3f}")
    eval_s = time.time() - t_eval

    record = {
        "about": "xlpatch fixture series: tiny multilingual Llama trained from scratch by xtask/py/train_fixture.py",
        "command": "python xtask/py/train_fixture.py --out .cache/fixture-train"
        + (f" --design {args.design}" if args.design else "")
        + ("" if args.steps == (DESIGNS[args.design]["steps"] if args.design else STEPS) else f" --steps {args.steps}"),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": __import__("tokenizers").__version__,
        },
        "seeds": {
            "global": SEED,
            "corpus": SEED,
            "data_order": SEED + 1,
            "eval": SEED + 2,
            "concept_sample": SEED + 3,
            "init": SEED,
        },
        "threads": args.threads,
        "overrides": overrides,
        "languages": {lang: LANG_NAMES[lang] for lang in STUDY_LANGS},
        "held_out_pairs": [f"{a}-{b}" for a, b in held_out],
        "held_in_pairs": [f"{a}-{b}" for a, b in held_in],
        "copy_pairs": [f"{a}-{b}" for a, b in copies],
        "corpus": {
            "concepts": len(concepts),
            "source": CONCEPTS_TSV,
            "blocks": len(blocks),
            "concept_ids": [c["id"] for c in concepts],
            "lines": sum(sizes),
            "line_share_by_block_lines": {str(k): v for k, v in sorted(LINE_SHARE.items())},
            "blocks_by_lines": {str(k): sizes.count(k) for k in sorted(set(sizes))},
            "p_preferred_form": P_PREFERRED,
            "copy_block_fraction": COPY_BLOCK_FRACTION,
            "bytes": len(corpus_text.encode("utf-8")),
            "tokens": n_tokens,
            "sequences": len(data[0]),
            "max_sequence_tokens": data[0].shape[1],
            "blocks_per_pair": dict(sorted(pair_counts.items())),
            "format": 'lines `<Name_in>: "<form>" - <Name_out>: "<form>"` joined by "\\n"; corpus.txt separates '
            "blocks by a blank line; in training each block is one sequence <s> + block + </s> from position 0",
        },
        "tokenizer": {
            "type": "byte-level BPE (tokenizers), ByteLevel pre-tokenizer add_prefix_space=false use_regex=true",
            "vocab_size": vocab,
            "special_tokens": {t: i for i, t in enumerate(SPECIAL_TOKENS)},
            "bos": "post-processor TemplateProcessing '<s> $A': encode(text, add_special_tokens=True) prepends <s> (id 0); prompts do not contain <s> as text",
            **notes,
        },
        "model": {**config.to_dict(), "class": "LlamaForCausalLM", "parameters": n_params, "dtype": SAVE_DTYPE},
        "training": {
            "objective": "next-token cross-entropy on every non-pad token (including </s>), no answer masking",
            "dtype": "float32 (checkpoints stored as " + SAVE_DTYPE + ")",
            "steps": args.steps,
            "lines_per_step": LINES_PER_STEP,
            "batching": "blocks of k lines batched together, LINES_PER_STEP // k blocks per step, right-padded",
            "curriculum": f"steps 0..{CURRICULUM_STEPS - 1}: single-line blocks only; then all blocks",
            "tokens_seen": tokens_at[args.steps],
            "passes_over_data": round(tokens_at[args.steps] / n_tokens, 3),
            "optimizer": {"name": "AdamW", "lr": LR, "betas": BETAS, "eps": 1e-8, "weight_decay": WEIGHT_DECAY, "weight_decay_on": "matrices only"},
            "schedule": {"warmup_steps": WARMUP, "decay": "cosine", "min_lr": LR * MIN_LR_FRAC},
            "grad_clip": GRAD_CLIP,
            "checkpoint_steps": ckpt_steps(args.steps),
        },
        "evaluation": {
            "shots": N_SHOTS,
            "queries": N_EVAL,
            "decoding": f"greedy, up to {MAX_NEW_TOKENS} new tokens, answer = text before the first '\"'",
            "match": "exact match to any listed synonym in the output language (of every concept listing the query form)",
            "forms": "preferred forms in shots and query",
        },
        "loss_curve": losses,
        "checkpoints": checkpoints,
        "wall_time_s": {"train": round(train_s, 1), "eval": round(eval_s, 1), "total": round(time.time() - t_start, 1)},
    }
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
        f.write("\n")
    log(f"wrote {os.path.join(args.out, 'training.json')}")
    if args.install:
        install(args.out, args.install)


def install(src, dst):
    with open(os.path.join(src, "training.json"), encoding="utf-8") as f:
        steps = json.load(f)["training"]["checkpoint_steps"]
    os.makedirs(dst, exist_ok=True)
    for step in steps:
        d = os.path.join(dst, f"step_{step}")
        os.makedirs(d, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(src, f"step_{step}", name), os.path.join(d, name))
            os.chmod(os.path.join(d, name), 0o644)  # safetensors writes 0600
    for name in ("tokenizer.json", "training.json"):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
        os.chmod(os.path.join(dst, name), 0o644)
    print(f"installed {len(steps)} checkpoints into {dst}")


if __name__ == "__main__":
    main()
