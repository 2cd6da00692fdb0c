#!/usr/bin/python3
"""PyTorch reference forward pass of the five MoE architectures submoe supports, and the
fixtures tests/test_forward compares the built-in C forward pass against.

Written from the published semantics of Hugging Face transformers' modeling code
(MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM,
DeepseekForCausalLM of deepseek-moe-16b), not from submoe's C code:

  h = embed(ids)
  per layer:  a = input_layernorm(h)
              q, k, v = q_proj(a) (+bias: qwen2_moe), k_proj(a), v_proj(a)
              olmoe:     q = q_norm(q), k = k_norm(k) over the whole projected width
              qwen3_moe: q, k RMSNorm per head (head_dim) after reshaping into heads
              q, k = apply_rotary_pos_emb(q, k) with rotate_half, inv_freq = 1/theta^(2i/d)
              o = softmax(q k^T / sqrt(d) + causal mask) v  (GQA: kv head = head // (nh/nkv))
              h = h + o_proj(o)
              x = post_attention_layernorm(h)
              h = h + (moe(x) if the layer is sparse else mlp(x))
  logits = lm_head(norm(h))  (lm_head = embed when tie_word_embeddings)

  RMSNorm(x) = weight * (x * rsqrt(mean(x^2) + eps))     (in float32)
  MLP(x)     = down(silu(gate(x)) * up(x))
  MoE:  logits = gate(x); p = softmax(logits, float32); w, idx = topk(p, k)
        mixtral: always w /= sum(w); others: only if norm_topk_prob
        deepseek: y = sum w_j E_j(x) * routed_scaling_factor (when present) + shared_experts(x)
        qwen2_moe: y = sum w_j E_j(x) + sigmoid(shared_expert_gate(x)) * shared_expert(x)

Usage: /usr/bin/python3 tools/ref_forward.py --submoe BUILD/src/submoe [--out tests/fixtures]
       /usr/bin/python3 tools/ref_forward.py --bench MODEL --tokens FILE [--seq-len N] [--threads T]
       PYTHON tools/ref_forward.py --task-fixtures --submoe BUILD/src/submoe [--out tests/fixtures]
       PYTHON tools/ref_forward.py --task FILE.jsonl --model MODEL [--items-out FILE.tsv]
(the two --task modes also need Hugging Face `tokenizers`, e.g. in a venv made with
--system-site-packages over Debian's python3-torch.)
Zero-shot multiple choice (`submoe eval --task`), as lm-eval-harness's multiple_choice with HFLM:
  continuation = delimiter + choice; trailing whitespace of the context moves to the continuation;
  whole = encode(context + continuation), ctx = encode(context) (with the tokenizer's special
  tokens, as HFLM when add_bos_token is unset; --no-special: add_bos_token=False), continuation
  tokens = whole[len(ctx):]; score = sum of log_softmax over them; acc = argmax(ll) == gold,
  acc_norm = argmax(ll / len(choice)) == gold (len in characters).
--task-fixtures writes tests/fixtures/task-ARCH.json (a synth model per architecture, a small
BPE tokenizer.json, a task file, the log-likelihoods and accuracies); --task scores a task file
on a model directory (its tokenizer.json) and prints the per-choice TSV of `submoe eval --items`.

Writes one JSON fixture per architecture and expert layout with the synth command line and the
config.json keys set after synth (the C test regenerates the identical model with them), the
input ids, the logits, and per MoE layer the block inputs, the router logits and the top-k
choices.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.set_default_dtype(torch.float32)

COMMON = ["--hidden", "32", "--intermediate", "32", "--experts", "6", "--top-k", "2",
          "--heads", "4", "--kv-heads", "2", "--vocab", "64", "--dense-intermediate", "48",
          "--clusters", "3", "--noise", "0.3", "-q"]
# synth arguments per architecture, and keys set in config.json after synth (the C test does the
# same). synth writes every norm weight as 1 ± 0.2 and deepseek's routed_scaling_factor 1.5.
# qwen2_moe: decoder_sparse_step 2 over 3 layers -> layers 0, 2 dense, 1 MoE.
# qwen3_moe: synth lays out the same dense/MoE pattern with --sparse-step 2; the config then
#   says so with mlp_only_layers [0, 2] and decoder_sparse_step 1 instead (synth has no
#   command-line option for mlp_only_layers), so only mlp_only_layers makes layers 0 and 2 dense.
MODELS = {
    "mixtral": (["--layers", "2"], None),
    "qwen2_moe": (["--layers", "3", "--sparse-step", "2", "--shared-intermediate", "40", "--no-norm-topk"], None),
    "qwen3_moe": (["--layers", "3", "--sparse-step", "2", "--head-dim", "16", "--norm-topk", "--tie-embeddings"],
                  {"decoder_sparse_step": 1, "mlp_only_layers": [0, 2]}),
    "olmoe": (["--layers", "2", "--no-norm-topk"], None),
    "deepseek": (["--layers", "3", "--shared-experts", "2", "--first-dense", "1", "--no-norm-topk"], None),
}
N_SEQ, SEQ = 2, 16


def load_weights(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx)
             else ["model.safetensors"])
    w = {}
    for f in files:
        tensors, _ = st_io.load(os.path.join(d, f))
        for k, v in tensors.items():
            w[k] = torch.from_numpy(np.array(v, dtype=np.float32))
    return w


def rmsnorm(x, w, eps):
    x32 = x.float()
    var = x32.pow(2).mean(-1, keepdim=True)
    return w * (x32 * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(q, k, theta, d, T):
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    pos = torch.arange(T).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def mlp(x, g, u, dn):
    return F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), dn)


def is_moe_layer(cfg, mt, L):
    if mt in ("mixtral", "olmoe"):
        return True
    if mt in ("qwen2_moe", "qwen3_moe"):
        return L not in cfg.get("mlp_only_layers", []) and (L + 1) % cfg.get("decoder_sparse_step", 1) == 0
    if mt == "deepseek":
        return L >= cfg.get("first_k_dense_replace", 0) and L % cfg.get("moe_layer_freq", 1) == 0
    raise ValueError(mt)


def experts(w, p, E, inter):
    """Per-expert (gate, up, down) in either stored layout."""
    if p + "experts.gate_up_proj" in w:
        gu, dn = w[p + "experts.gate_up_proj"], w[p + "experts.down_proj"]
        return [(gu[e, :inter], gu[e, inter:], dn[e]) for e in range(E)]
    if p + "experts.0.w1.weight" in w:
        return [(w[p + f"experts.{e}.w1.weight"], w[p + f"experts.{e}.w3.weight"], w[p + f"experts.{e}.w2.weight"])
                for e in range(E)]
    return [(w[p + f"experts.{e}.gate_proj.weight"], w[p + f"experts.{e}.up_proj.weight"],
             w[p + f"experts.{e}.down_proj.weight"]) for e in range(E)]


def moe(cfg, mt, w, L, x):
    # Mixtral's classic checkpoints name the block block_sparse_moe; the fused (transformers v5) layout uses mlp
    p = f"model.layers.{L}.block_sparse_moe."
    if p + "gate.weight" not in w:
        p = f"model.layers.{L}.mlp."
    k = cfg["num_experts_per_tok"]
    if mt == "mixtral":
        E, inter = cfg["num_local_experts"], cfg["intermediate_size"]
    elif mt == "olmoe":
        E, inter = cfg["num_experts"], cfg["intermediate_size"]
    elif mt == "deepseek":
        E, inter = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
    else:
        E, inter = cfg["num_experts"], cfg["moe_intermediate_size"]
    logits = F.linear(x, w[p + "gate.weight"])
    probs = F.softmax(logits, dim=-1, dtype=torch.float32)
    tw, ti = torch.topk(probs, k, dim=-1)
    if mt == "mixtral" or cfg.get("norm_topk_prob", False):
        tw = tw / tw.sum(dim=-1, keepdim=True)
    if mt == "deepseek":
        tw = tw * cfg.get("routed_scaling_factor", 1.0)
    ex = experts(w, p, E, inter)
    y = torch.zeros_like(x)
    for e in range(E):
        rows, slot = torch.where(ti == e)
        if rows.numel():
            y[rows] += tw[rows, slot, None] * mlp(x[rows], *ex[e])
    if mt == "qwen2_moe" and p + "shared_expert.gate_proj.weight" in w:
        s = mlp(x, w[p + "shared_expert.gate_proj.weight"], w[p + "shared_expert.up_proj.weight"],
                w[p + "shared_expert.down_proj.weight"])
        y = y + torch.sigmoid(F.linear(x, w[p + "shared_expert_gate.weight"])) * s
    if mt == "deepseek" and cfg.get("n_shared_experts"):
        y = y + mlp(x, w[p + "shared_experts.gate_proj.weight"], w[p + "shared_experts.up_proj.weight"],
                    w[p + "shared_experts.down_proj.weight"])
    return y, logits, ti


def forward(d, ids, loaded=None):
    cfg, w = loaded if loaded else (json.load(open(os.path.join(d, "config.json"))), load_weights(d))
    mt = cfg["model_type"]
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    B, T = ids.shape
    h = w["model.embed_tokens.weight"][ids]
    mask = torch.full((T, T), float("-inf")).triu(1)
    caps = {}
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        a = rmsnorm(h, w[p + "input_layernorm.weight"], eps)
        q = F.linear(a, w[p + "self_attn.q_proj.weight"], w.get(p + "self_attn.q_proj.bias"))
        k = F.linear(a, w[p + "self_attn.k_proj.weight"], w.get(p + "self_attn.k_proj.bias"))
        v = F.linear(a, w[p + "self_attn.v_proj.weight"], w.get(p + "self_attn.v_proj.bias"))
        if mt == "olmoe":
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q.view(B, T, nh, hd)
        k = k.view(B, T, nkv, hd)
        if mt == "qwen3_moe":
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(B, T, nkv, hd).transpose(1, 2)
        q, k = rope(q, k, theta, hd, T)
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = q @ k.transpose(-1, -2) / math.sqrt(hd) + mask
        o = (F.softmax(s, dim=-1, dtype=torch.float32) @ v).transpose(1, 2).reshape(B, T, nh * hd)
        h = h + F.linear(o, w[p + "self_attn.o_proj.weight"])
        x = rmsnorm(h, w[p + "post_attention_layernorm.weight"], eps)
        if is_moe_layer(cfg, mt, L):
            y, lg, ti = moe(cfg, mt, w, L, x.reshape(B * T, H))
            caps[L] = (x.reshape(B * T, H), lg, ti)
            h = h + y.view(B, T, H)
        else:
            h = h + mlp(x, w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"], w[p + "mlp.down_proj.weight"])
    h = rmsnorm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return F.linear(h, head), caps


def r(a, nd=7):
    return [float(f"{v:.{nd}g}") for v in a.reshape(-1).tolist()]


def bench(a):
    """Perplexity and tokens/s of this reference on a model, the way `submoe eval` counts them:
    non-overlapping windows of seq_len, predict tokens 1..seq_len-1 of each window."""
    import time
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.bench, "config.json")))
    loaded = (cfg, load_weights(a.bench))
    ids = np.fromfile(a.tokens, dtype="<u4").astype(np.int64)
    if a.max_tokens:
        ids = ids[:a.max_tokens]
    T = a.seq_len
    W = torch.from_numpy(ids[: len(ids) // T * T]).view(-1, T)
    t0, tot = time.time(), 0.0
    with torch.no_grad():
        for i in range(0, W.shape[0], a.batch):
            lg, _ = forward(a.bench, W[i:i + a.batch], loaded)
            tot += F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), W[i:i + a.batch, 1:].reshape(-1),
                                   reduction="sum").item()
    dt = time.time() - t0
    n = W.shape[0] * (T - 1)
    print(json.dumps({"model": a.bench, "perplexity": math.exp(tot / n), "predicted": n, "seconds": round(dt, 3),
                      "tokens_per_second": round(W.numel() / dt, 1), "threads": a.threads}))


# ---- zero-shot multiple choice -------------------------------------------------------------

# A 64-id byte-level BPE for the synth models' vocabulary of 64: ByteLevel pre-tokenizer with the
# GPT-2 regex, 31 single characters and 33 merges. Texts use only these characters.
TASK_CHARS = "\u0120abcdefghijklmnopqrstuvwxyz.,'\u010a"  # Ġ = space, Ċ = newline (ByteLevel)
TASK_MERGES = ["\u0120 t", "h e", "\u0120t he", "i n", "e r", "a n", "\u0120 a", "o n", "r e", "\u0120 s",
               "\u0120 w", "o u", "e d", "n d", "\u0120 o", "\u0120 c", "a t", "e n", "i s", "\u0120 b",
               "o r", "in g", "\u0120 f", "h a", "\u0120 h", "i t", "\u0120 m", "l l", "\u0120a nd",
               "a r", "\u0120 d", "e s", "\u0120 l"]


def task_tokenizer_json():
    vocab = {ch: i for i, ch in enumerate(TASK_CHARS)}
    for m in TASK_MERGES:
        vocab["".join(m.split(" "))] = len(vocab)
    assert len(vocab) == 64, len(vocab)
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": TASK_MERGES}}


# Items for the synth models: trailing spaces and a newline that move to the continuation,
# choices of different lengths (acc and acc_norm can differ), merges inside the continuation.
TASK_ITEMS = [
    {"context": "the cat sat on the", "choices": ["mat.", "hat and the dog", "a"], "gold": 0},
    {"context": "in the beginning  ", "choices": ["there was water", "ended"], "gold": 1},
    {"context": "he said,\n", "choices": ["and she went out.", "it is well", "for the house of the lord", "no"],
     "gold": 2},
    {"context": "a man and a woman walked", "choices": ["to the sea", "in the field, singing"], "gold": 0},
    {"context": "what is it", "choices": ["the light", "the dark", "the end"], "gold": 2},
    {"context": "and the", "choices": ["sons of men", "daughters", "fathers and mothers", "hands"], "gold": 1},
]
# One architecture uses the empty delimiter, so merges cross the context/continuation boundary
# and whole[:len(ctx)] differs from ctx (lm-eval still takes whole[len(ctx):]).
TASK_DELIMITER = {"olmoe": ""}


def py_encode_pair(tok, context, continuation, special):
    """lm-eval's HFLM._encode_pair."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation, add_special_tokens=special).ids
    ctx = tok.encode(context, add_special_tokens=special).ids
    return ctx, whole[len(ctx):]


def score_task(d, items, delimiter=" ", special=True):
    """Per item the list of (log-likelihood, continuation tokens) of each choice; acc, acc_norm."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    loaded = (json.load(open(os.path.join(d, "config.json"))), load_weights(d))
    seqs = []
    for it in items:
        for ch in it["choices"]:
            ctx, cont = py_encode_pair(tok, it["context"], delimiter + ch, special)
            assert ctx and cont
            seqs.append((ctx + cont, len(ctx)))
    lls = []
    with torch.no_grad():
        for ids, start in seqs:  # one sequence at a time: no padding in the reference
            lg, _ = forward(d, torch.tensor([ids]), loaded)
            lp = F.log_softmax(lg[0].double(), dim=-1)
            lls.append((sum(lp[t - 1, ids[t]].item() for t in range(start, len(ids))), len(ids) - start))
    out, k, hits, hits_norm, hits_bytes = [], 0, [], [], []
    for it in items:
        n = len(it["choices"])
        ll = np.array([v for v, _ in lls[k:k + n]])
        out.append(lls[k:k + n])
        k += n
        hits.append(float(np.argmax(ll) == it["gold"]))
        hits_norm.append(float(np.argmax(ll / np.array([float(len(c)) for c in it["choices"]])) == it["gold"]))
        hits_bytes.append(float(np.argmax(ll / np.array([float(len(c.encode("utf-8"))) for c in it["choices"]]))
                                == it["gold"]))
    score_task.acc_bytes = float(np.mean(hits_bytes))  # lm-eval's acc_bytes
    return out, float(np.mean(hits)), float(np.mean(hits_norm))


def task_fixtures(a):
    tmp = tempfile.mkdtemp(prefix="ref_task.")
    try:
        for i, (arch, (extra, patch)) in enumerate(MODELS.items()):
            d = os.path.join(tmp, arch)
            synth = ["--arch", arch, "--seed", str(31 + i)] + COMMON + extra
            subprocess.run([a.submoe, "synth", "--out", d] + synth, check=True)
            cfg = json.load(open(os.path.join(d, "config.json")))
            if patch:
                cfg.update(patch)
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump(cfg, f, indent=2)
            tj = task_tokenizer_json()
            with open(os.path.join(d, "tokenizer.json"), "w") as f:
                json.dump(tj, f, ensure_ascii=False)
            delim = TASK_DELIMITER.get(arch, " ")
            lls, acc, acc_norm = score_task(d, TASK_ITEMS, delim)
            fx = {"arch": arch, "synth": synth, "config": patch or {}, "tokenizer": tj, "delimiter": delim,
                  "task": "".join(json.dumps(it) + "\n" for it in TASK_ITEMS),
                  "loglik": [[v for v, _ in x] for x in lls], "tokens": [[n for _, n in x] for x in lls],
                  "acc": acc, "acc_norm": acc_norm, "acc_bytes": score_task.acc_bytes}
            path = os.path.join(a.out, f"task-{arch}.json")
            with open(path, "w") as f:
                json.dump(fx, f, ensure_ascii=False, indent=1)
            print(f"{path}: acc {acc:.4f} acc_norm {acc_norm:.4f}")
    finally:
        shutil.rmtree(tmp)


def task_file(a):
    items = [json.loads(line) for line in open(a.task, encoding="utf-8") if line.strip()]
    lls, acc, acc_norm = score_task(a.model, items, a.delimiter, not a.no_special)
    rows = ["file\tline\tchoice\tgold\ttokens\tloglik"]
    lines = [i + 1 for i, line in enumerate(open(a.task, encoding="utf-8")) if line.strip()]
    for it, line, x in zip(items, lines, lls):
        for c, (v, n) in enumerate(x):
            rows.append(f"{a.task}\t{line}\t{c}\t{int(c == it['gold'])}\t{n}\t{v:.9f}")
    if a.items_out:
        with open(a.items_out, "w") as f:
            f.write("\n".join(rows) + "\n")
    if a.fixture_out:  # acc, acc_norm and the first --subset items' rows, for tests/test_eval_task.sh
        keep = sum(len(it["choices"]) for it in items[:a.subset])
        sub = items[:a.subset]
        sub_acc = float(np.mean([np.argmax([v for v, _ in x]) == it["gold"] for it, x in zip(sub, lls)]))
        sub_norm = float(np.mean([np.argmax(np.array([v for v, _ in x]) / np.array([float(len(c)) for c in
                                                                                    it["choices"]]))
                                  == it["gold"] for it, x in zip(sub, lls)]))
        with open(a.fixture_out, "w") as f:
            f.write(f"# {os.path.basename(a.task)} on {os.path.basename(os.path.normpath(a.model))}: "
                    f"items {len(items)} acc {acc!r} acc_norm {acc_norm!r}\n")
            f.write(f"# first {len(sub)} items: acc {sub_acc!r} acc_norm {sub_norm!r}\n")
            f.write("\n".join(["line\tchoice\tgold\ttokens\tloglik"] +
                              [r.split("\t", 1)[1] for r in rows[1:1 + keep]]) + "\n")
    print(json.dumps({"task": a.task, "model": a.model, "items": len(items), "acc": acc, "acc_norm": acc_norm}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--submoe", help="the built submoe binary (fixture mode)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--bench", metavar="MODEL", help="instead: perplexity and tokens/s of this reference on MODEL")
    ap.add_argument("--tokens", help="token file for --bench (raw little-endian uint32)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--task-fixtures", action="store_true", help="write the task-ARCH.json fixtures")
    ap.add_argument("--task", help="instead: score this task file (JSONL) on --model")
    ap.add_argument("--model", help="model directory for --task (with tokenizer.json)")
    ap.add_argument("--delimiter", default=" ")
    ap.add_argument("--no-special", action="store_true", help="--task: no BOS/EOS (add_bos_token=False)")
    ap.add_argument("--items-out", help="--task: per-choice TSV as `submoe eval --items`")
    ap.add_argument("--fixture-out", help="--task: acc, acc_norm and the first --subset items' rows")
    ap.add_argument("--subset", type=int, default=40)
    a = ap.parse_args()
    if a.bench:
        return bench(a)
    if a.task:
        return task_file(a)
    if a.task_fixtures:
        if not a.submoe:
            ap.error("--submoe is required to build fixtures")
        return task_fixtures(a)
    if not a.submoe:
        ap.error("--submoe is required to build fixtures")
    os.makedirs(a.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ref_forward.")
    gen = torch.Generator().manual_seed(1234)
    try:
        for i, (arch, (extra, patch)) in enumerate(MODELS.items()):
            for layout in ("per-expert", "fused"):
                d = os.path.join(tmp, f"{arch}-{layout}")
                synth = ["--arch", arch, "--layout", layout, "--seed", str(11 + i)] + COMMON + extra
                subprocess.run([a.submoe, "synth", "--out", d] + synth, check=True)
                cfg = json.load(open(os.path.join(d, "config.json")))
                if patch:
                    cfg.update(patch)
                    with open(os.path.join(d, "config.json"), "w") as f:
                        json.dump(cfg, f, indent=2)
                ids = torch.randint(0, cfg["vocab_size"], (N_SEQ, SEQ), generator=gen)
                with torch.no_grad():
                    logits, caps = forward(d, ids)
                fx = {"arch": arch, "layout": layout, "synth": synth, "config": patch or {}, "n_seq": N_SEQ,
                      "seq_len": SEQ, "vocab": cfg["vocab_size"], "ids": ids.reshape(-1).tolist(), "logits": r(logits),
                      "moe": {str(L): {"input": r(x), "router_logits": r(lg), "topk": ti.reshape(-1).tolist(),
                                       "experts": lg.shape[1]}
                              for L, (x, lg, ti) in caps.items()}}
                path = os.path.join(a.out, f"fwd-{arch}-{layout}.json")
                with open(path, "w") as f:
                    json.dump(fx, f, separators=(",", ":"))
                print(f"{path}: logits {tuple(logits.shape)}, MoE layers {sorted(caps)}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
