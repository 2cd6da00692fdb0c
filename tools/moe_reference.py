"""PyTorch reference of the Mixtral architecture (Hugging Face MixtralForCausalLM
semantics), plus load/save in HF layout and evaluation helpers.

Written from the published semantics, with no dependency on `transformers`:
  embeddings -> per layer:
      h = x + o_proj(attn(rope(q_proj(rms1(x))), rope(k_proj(.)), v_proj(.)))   (GQA, causal)
      out = h + moe(rms2(h))
  -> final RMSNorm -> lm_head (untied).
RMSNorm: weight * x / sqrt(mean(x^2) + eps), computed in fp32.
RoPE: HF rotate_half convention (dimension i pairs with i + head_dim/2), theta = rope_theta.
MoE (Mixtral): logits = gate(x); p = softmax(logits) over all E (fp32); top-k; the k weights
renormalised to sum to 1; out = sum_k w_k * E_k(x), E(x) = w2(silu(w1 x) * w3 x).
A `dense` variant (one SwiGLU FFN per layer instead of the MoE block) is used for the
first phase of sparse upcycling; it is never written out.

Usable as a library by other reference scripts:
    from moe_reference import load_model, perplexity, routing_frequencies, read_tokens
"""

import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


DEFAULT_CONFIG = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "router_aux_loss_coef": 0.02,
    "output_router_logits": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "sliding_window": None,
    "use_cache": True,
    "bos_token_id": None,
    "eos_token_id": None,
    "torch_dtype": "bfloat16",
}


def make_config(**over):
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(over)
    if cfg.get("head_dim") is None:
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg


# --------------------------------------------------------------------------- modules

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    def __init__(self, head_dim, theta):
        super().__init__()
        inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, T, device=None):
        t = torch.arange(T, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()            # [T, head_dim]


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg["num_key_value_heads"]
        self.hd = cfg["head_dim"]
        self.q_proj = nn.Linear(H, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(H, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(H, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, H, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv              # query head h uses kv head h // rep
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        # scores = q k^T / sqrt(head_dim) (scale applied to q: same maths, cheaper)
        att = torch.matmul(q * (1.0 / math.sqrt(self.hd)), k.transpose(-1, -2))
        att = att + mask
        att = torch.softmax(att.float(), dim=-1).to(q.dtype)
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(y)


class Expert(nn.Module):
    """Mixtral expert: w1 = gate [I,H], w3 = up [I,H], w2 = down [H,I]."""

    def __init__(self, H, I):
        super().__init__()
        self.w1 = nn.Linear(H, I, bias=False)
        self.w2 = nn.Linear(I, H, bias=False)
        self.w3 = nn.Linear(H, I, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoeBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H, I = cfg["hidden_size"], cfg["intermediate_size"]
        self.E = cfg["num_local_experts"]
        self.k = cfg["num_experts_per_tok"]
        self.gate = nn.Linear(H, self.E, bias=False)
        self.experts = nn.ModuleList([Expert(H, I) for _ in range(self.E)])

    def forward(self, x):
        """x [B,T,H] -> (out [B,T,H], router_logits [B*T,E], selected [B*T,k])."""
        B, T, H = x.shape
        xf = x.reshape(-1, H)
        logits = self.gate(xf)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        w, sel = torch.topk(probs, self.k, dim=-1)
        w = (w / w.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(xf)
        for e in range(self.E):
            tok, slot = torch.where(sel == e)
            if tok.numel() == 0:
                continue
            y = self.experts[e](xf[tok]) * w[tok, slot, None]
            out.index_add_(0, tok, y)
        return out.view(B, T, H), logits, sel


class DenseMLP(nn.Module):
    """SwiGLU FFN of the dense phase (same parameterisation as one Mixtral expert)."""

    def __init__(self, cfg):
        super().__init__()
        self.ffn = Expert(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x):
        return self.ffn(x), None, None


class DecoderLayer(nn.Module):
    def __init__(self, cfg, dense=False):
        super().__init__()
        H, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(H, eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(H, eps)
        if dense:
            self.mlp = DenseMLP(cfg)
        else:
            self.block_sparse_moe = SparseMoeBlock(cfg)
        self.dense = dense

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        ffn = self.mlp if self.dense else self.block_sparse_moe
        y, logits, sel = ffn(self.post_attention_layernorm(x))
        return x + y, logits, sel


class Model(nn.Module):
    def __init__(self, cfg, dense=False):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg, dense)
                                     for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.rotary = Rotary(cfg["head_dim"], cfg["rope_theta"])


class MixtralForCausalLM(nn.Module):
    def __init__(self, cfg, dense=False):
        super().__init__()
        self.cfg = cfg
        self.dense = dense
        self.model = Model(cfg, dense)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    def init_weights(self, std=None):
        """HF-style init: every Linear/Embedding ~ N(0, initializer_range), norms = 1."""
        std = self.cfg["initializer_range"] if std is None else std
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    def forward(self, ids, return_hidden=False):
        """ids [B,T] long -> logits [B,T,V], list of per-layer (router_logits, selected)."""
        B, T = ids.shape
        x = self.model.embed_tokens(ids)
        cos, sin = self.model.rotary(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        routers = []
        hidden = []
        for layer in self.model.layers:
            x, logits, sel = layer(x, cos, sin, mask)
            routers.append((logits, sel))
            if return_hidden:
                hidden.append(x)
        x = self.model.norm(x)
        logits = self.lm_head(x)
        if return_hidden:
            return logits, routers, hidden
        return logits, routers


def load_balancing_loss(routers, num_experts, top_k):
    """Mixtral/Switch auxiliary loss exactly as HF's load_balancing_loss_func (no
    attention mask): router logits of all layers are concatenated, then
    E * sum_{slot,e} mean_t(onehot(topk)[t,slot,e]) * mean_t(softmax(logits)[t,e])."""
    logits = torch.cat([r[0] for r in routers], dim=0)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    _, sel = torch.topk(probs, top_k, dim=-1)
    mask = F.one_hot(sel, num_experts).float()          # [N, k, E]
    tokens_per_expert = mask.mean(dim=0)                 # [k, E]
    prob_per_expert = probs.mean(dim=0)                  # [E]
    return (tokens_per_expert * prob_per_expert.unsqueeze(0)).sum() * num_experts


# --------------------------------------------------------------------------- I/O

def hf_state_dict(model):
    """Tensors in HF order/names (model must be the MoE variant)."""
    sd = model.state_dict()
    cfg = model.cfg
    names = ["model.embed_tokens.weight"]
    for L in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % L
        names.append(p + "input_layernorm.weight")
        for n in ("q", "k", "v", "o"):
            names.append(p + "self_attn.%s_proj.weight" % n)
        names.append(p + "post_attention_layernorm.weight")
        names.append(p + "block_sparse_moe.gate.weight")
        for e in range(cfg["num_local_experts"]):
            for w in ("w1", "w2", "w3"):
                names.append(p + "block_sparse_moe.experts.%d.%s.weight" % (e, w))
    names += ["model.norm.weight", "lm_head.weight"]
    assert set(names) == set(sd.keys()), set(names) ^ set(sd.keys())
    return {n: sd[n] for n in names}


def save_model(model, out_dir, metadata=None):
    os.makedirs(out_dir, exist_ok=True)
    cfg = {k: v for k, v in model.cfg.items()}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    st_io.save(os.path.join(out_dir, "model.safetensors"), hf_state_dict(model),
               dtype="BF16", metadata=metadata)


def load_model(model_dir):
    """Build the fp32 MoE model from config.json + model.safetensors (weights exactly as
    stored, e.g. bf16-rounded)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = make_config(**json.load(f))
    model = MixtralForCausalLM(cfg)
    tensors, _ = st_io.load(os.path.join(model_dir, "model.safetensors"), torch=True)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError("weights do not match config: missing %s unexpected %s"
                         % (missing, unexpected))
    model.eval()
    return model


def read_tokens(path):
    return np.fromfile(path, dtype="<u4").astype(np.int64)


def write_tokens(path, toks):
    np.asarray(toks, dtype="<u4").tofile(path)


# --------------------------------------------------------------------------- evaluation

def windows(tokens, seq_len):
    n = len(tokens) // seq_len
    return torch.from_numpy(np.asarray(tokens[: n * seq_len], dtype=np.int64)).view(n, seq_len)


@torch.no_grad()
def perplexity(model, tokens, seq_len=256, batch=16):
    """Non-overlapping windows of seq_len; predict tokens 1..seq_len-1 of each window
    from the preceding ones in the window.  Returns (ppl, mean_nll, n_predicted)."""
    model.eval()
    W = windows(tokens, seq_len)
    total, count = 0.0, 0
    for i in range(0, W.shape[0], batch):
        ids = W[i:i + batch]
        logits, _ = model(ids)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                              ids[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += ids[:, 1:].numel()
    mean = total / count
    return math.exp(mean), mean, count


@torch.no_grad()
def routing_frequencies(model, tokens, seq_len=256, batch=16):
    """Per MoE layer, f_i = share of tokens whose top-k contains expert i (sums to k)."""
    model.eval()
    E = model.cfg["num_local_experts"]
    W = windows(tokens, seq_len)
    counts = torch.zeros(model.cfg["num_hidden_layers"], E, dtype=torch.float64)
    n = 0
    for i in range(0, W.shape[0], batch):
        ids = W[i:i + batch]
        _, routers = model(ids)
        for L, (_, sel) in enumerate(routers):
            counts[L] += torch.bincount(sel.reshape(-1), minlength=E).double()
        n += ids.numel()
    return (counts / n).tolist()


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="evaluate a Mixtral-layout model directory")
    ap.add_argument("model_dir")
    ap.add_argument("tokens")
    ap.add_argument("--seq-len", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(2)
    m = load_model(a.model_dir)
    toks = read_tokens(a.tokens)
    ppl, nll, n = perplexity(m, toks, a.seq_len)
    print("perplexity %.4f  (mean nll %.5f over %d predicted tokens)" % (ppl, nll, n))
    for L, f in enumerate(routing_frequencies(m, toks, a.seq_len)):
        print("layer %d routing freq: %s" % (L, " ".join("%.3f" % v for v in f)))
