#!/usr/bin/python3
"""PyTorch eager forward of an OLMoE model, the way Hugging Face transformers' eager
OlmoeForCausalLM runs it (modeling_olmoe.py: OlmoeRMSNorm, OlmoeAttention with q_norm/k_norm over
the projected width and rotate_half RoPE, eager softmax attention in fp32 cast back, and
OlmoeSparseMoeBlock's per-expert loop: softmax router in fp32, top-k, one_hot mask, one
Linear-SiLU-Linear per expert on its gathered rows, index_add_), in bf16 or fp32, for
`make bench-real`'s comparison (issue 16). Weights are read from the model's safetensors (bf16
ones without a copy, through mmap).

    /usr/bin/python3 bench/torch_eager.py MODEL --tokens FILE --dtype bf16|fp32
        [--max-tokens N] [--seq-len 256] [--batch 4] [--threads T]

Counts as `submoe eval` does: non-overlapping windows of --seq-len tokens from the start,
tokens 1..seq_len-1 of each window predicted; tokens/s = tokens in the windows / seconds of the
forward passes (loading excluded). Prints one JSON line.
"""

import argparse
import json
import math
import mmap
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def load(model_dir, dtype):
    """name -> tensor in dtype; bf16 files stay mapped when dtype is bf16."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx)
             else ["model.safetensors"])
    w = {}
    for name in files:
        with open(os.path.join(model_dir, name), "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        n = struct.unpack("<Q", mm[:8])[0]
        header = json.loads(mm[8:8 + n])
        for k, v in header.items():
            if k == "__metadata__":
                continue
            b, e = v["data_offsets"]
            t = DT[v["dtype"]]
            count = (e - b) // torch.tensor([], dtype=t).element_size()
            x = torch.frombuffer(mm, dtype=t, count=count, offset=8 + n + b).view(v["shape"])
            w[k] = x if t == dtype else x.to(dtype)
    return w


def rmsnorm(x, weight, eps):
    dt = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_tables(theta, d, T, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]


def attention(cfg, w, p, x, cos, sin, mask):
    B, T, _ = x.shape
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    eps = cfg["rms_norm_eps"]
    q = rmsnorm(F.linear(x, w[p + "q_proj.weight"]), w[p + "q_norm.weight"], eps)
    k = rmsnorm(F.linear(x, w[p + "k_proj.weight"]), w[p + "k_norm.weight"], eps)
    v = F.linear(x, w[p + "v_proj.weight"])
    q = q.view(B, T, nh, hd).transpose(1, 2)
    k = k.view(B, T, nkv, hd).transpose(1, 2)
    v = v.view(B, T, nkv, hd).transpose(1, 2)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(nh // nkv, dim=1)
    v = v.repeat_interleave(nh // nkv, dim=1)
    s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
    s = F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
    o = torch.matmul(s, v).transpose(1, 2).reshape(B, T, nh * hd)
    return F.linear(o, w[p + "o_proj.weight"])


def sparse_moe(cfg, w, p, x):
    """OlmoeSparseMoeBlock.forward: the per-expert loop of transformers' eager MoE."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    router_logits = F.linear(x, w[p + "gate.weight"])
    rw = F.softmax(router_logits, dim=1, dtype=torch.float)
    rw, selected = torch.topk(rw, k, dim=-1)
    if cfg.get("norm_topk_prob", False):
        rw = rw / rw.sum(dim=-1, keepdim=True)
    rw = rw.to(x.dtype)
    out = torch.zeros_like(x)
    mask = F.one_hot(selected, num_classes=E).permute(2, 1, 0)
    for e in range(E):
        idx, top_x = torch.where(mask[e])
        if top_x.numel() == 0:
            continue
        q = f"{p}experts.{e}."
        cur = x[top_x]
        h = F.silu(F.linear(cur, w[q + "gate_proj.weight"])) * F.linear(cur, w[q + "up_proj.weight"])
        h = F.linear(h, w[q + "down_proj.weight"]) * rw[top_x, idx, None]
        out.index_add_(0, top_x, h.to(x.dtype))
    return out


def forward(cfg, w, ids, dtype):
    B, T = ids.shape
    H, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
    hd = cfg.get("head_dim") or H // cfg["num_attention_heads"]
    cos, sin = rope_tables(cfg.get("rope_theta", 10000.0), hd, T, dtype)
    mask = torch.full((T, T), float("-inf")).triu(1).to(dtype)
    h = F.embedding(ids, w["model.embed_tokens.weight"])
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        h = h + attention(cfg, w, p + "self_attn.", rmsnorm(h, w[p + "input_layernorm.weight"], eps), cos, sin, mask)
        x = rmsnorm(h, w[p + "post_attention_layernorm.weight"], eps).reshape(B * T, H)
        h = h + sparse_moe(cfg, w, p + "mlp.", x).view(B, T, H)
    h = rmsnorm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return F.linear(h, head)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="raw little-endian uint32 token file")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4, help="windows per forward pass")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    if cfg.get("model_type") != "olmoe":
        sys.exit(f"torch_eager.py: {a.model}: model_type {cfg.get('model_type')!r}, this script runs olmoe")
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    w = load(a.model, dtype)
    ids = np.fromfile(a.tokens, dtype="<u4").astype(np.int64)
    if a.max_tokens:
        ids = ids[:a.max_tokens]
    T = a.seq_len
    W = torch.from_numpy(ids[: len(ids) // T * T]).view(-1, T)
    if W.shape[0] == 0:
        sys.exit(f"torch_eager.py: {a.tokens}: fewer than {T} tokens")
    tot = 0.0
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, W.shape[0], a.batch):
            lg = forward(cfg, w, W[i:i + a.batch], dtype).float()
            tot += F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), W[i:i + a.batch, 1:].reshape(-1),
                                   reduction="sum").item()
    dt = time.time() - t0
    n = W.shape[0] * (T - 1)
    print(json.dumps({"model": a.model, "dtype": a.dtype, "perplexity": math.exp(tot / n), "predicted": n,
                      "seconds": round(dt, 3), "tokens_per_second": round(W.numel() / dt, 1),
                      "threads": a.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
