#!/usr/bin/python3
"""Train a tiny byte-level Mixtral-layout demo model on the KJV corpus.

Default (sparse upcycling, DESIGN.md 3.2b):
  phase 1: train a dense model (one SwiGLU FFN of width intermediate_size per layer);
  phase 2: copy the FFN into every expert with a tiny relative gaussian perturbation,
           start a fresh random router, continue training as an MoE with Mixtral's
           load-balancing auxiliary loss.
--scratch: train the MoE from random initialisation (no dense phase).

The result is written in Hugging Face layout (config.json + model.safetensors, BF16),
then reloaded from the file and evaluated in fp32 on the held-out tokens; the held-out
perplexity, routing frequencies and a training summary go to OUT/reference.json.

Example:
  /usr/bin/python3 tools/train_demo.py --corpus kjv.txt --heldout data/heldout.u32 \
      --out data/demo --dense-steps 600 --moe-steps 500
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as mr  # noqa: E402
from make_tokens import split_corpus  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--corpus", required=True, help="plain-text corpus (tools/make_corpus.sh)")
    ap.add_argument("--heldout", required=True, help="held-out token file (uint32)")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--scratch", action="store_true", help="train the MoE from scratch")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--inter", type=int, default=256, help="expert (and dense FFN) width")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dense-steps", type=int, default=600, help="phase 1 (ignored with --scratch)")
    ap.add_argument("--moe-steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak LR of the dense / scratch phase")
    ap.add_argument("--moe-lr", type=float, default=2e-3, help="peak LR of the upcycled MoE phase")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="cosine floor / peak")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--noise", type=float, default=1e-3,
                    help="relative std of the perturbation of the copied experts")
    ap.add_argument("--aux-coef", type=float, default=0.02, help="router_aux_loss_coef")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--bench", type=int, default=0,
                    help="only time this many steps of each phase and exit")
    return ap.parse_args(argv)


def lr_at(step, steps, peak, warmup, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def make_optimizer(model, lr, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)


class Batches:
    """Random windows of seq_len+1 bytes from the training text (seeded generator)."""

    def __init__(self, train_bytes, seq_len, batch, seed):
        self.data = torch.from_numpy(np.frombuffer(train_bytes, dtype=np.uint8).astype(np.int64))
        self.T, self.B = seq_len, batch
        self.g = torch.Generator().manual_seed(seed)

    def next(self):
        off = torch.randint(0, len(self.data) - self.T - 1, (self.B,), generator=self.g)
        idx = off[:, None] + torch.arange(self.T + 1)[None, :]
        w = self.data[idx]
        return w[:, :-1], w[:, 1:]


def train_phase(name, model, batches, steps, peak, args, log, moe):
    opt = make_optimizer(model, peak, args.weight_decay)
    cfg = model.cfg
    model.train()
    t0 = time.time()
    ema = None
    window_ce = []
    n = steps if not args.bench else args.bench
    for step in range(n):
        lr = lr_at(step, steps, peak, args.warmup, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches.next()
        logits, routers = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss = ce
        aux = None
        if moe and args.aux_coef > 0:
            aux = mr.load_balancing_loss(routers, cfg["num_local_experts"],
                                         cfg["num_experts_per_tok"])
            loss = ce + args.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        c = ce.item()
        window_ce.append(c)
        ema = c if ema is None else 0.95 * ema + 0.05 * c
        if (step + 1) % args.log_every == 0 or step == n - 1:
            el = time.time() - t0
            rec = {"phase": name, "step": step + 1, "ce": round(sum(window_ce) / len(window_ce), 4),
                   "lr": round(lr, 6), "elapsed_s": round(el, 1)}
            if aux is not None:
                rec["aux"] = round(aux.item(), 4)
            log.append(rec)
            print("[%s] step %4d/%d  ce %.4f (ema %.4f)%s  lr %.2e  %.1fs (%.2fs/step)"
                  % (name, step + 1, steps, rec["ce"], ema,
                     "  aux %.4f" % aux.item() if aux is not None else "",
                     lr, el, el / (step + 1)), flush=True)
            window_ce = []
    return time.time() - t0, ema


def upcycle(dense, cfg, noise, gen):
    moe = mr.MixtralForCausalLM(cfg)
    moe.init_weights()
    dsd = dense.state_dict()
    with torch.no_grad():
        for n, p in moe.named_parameters():
            if ".block_sparse_moe." not in n:
                p.copy_(dsd[n])
        for L, layer in enumerate(moe.model.layers):
            ffn = dense.model.layers[L].mlp.ffn
            blk = layer.block_sparse_moe
            nn_init_std = cfg["initializer_range"]
            blk.gate.weight.normal_(0.0, nn_init_std, generator=gen)   # fresh router
            for ex in blk.experts:
                for w in ("w1", "w2", "w3"):
                    src = getattr(ffn, w).weight
                    eps = torch.randn(src.shape, generator=gen) * (noise * src.std())
                    getattr(ex, w).weight.copy_(src + eps)
    return moe


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cfg = mr.make_config(hidden_size=args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                         head_dim=args.head_dim, num_local_experts=args.experts,
                         num_experts_per_tok=args.top_k, intermediate_size=args.inter,
                         router_aux_loss_coef=args.aux_coef)
    with open(args.corpus, "rb") as f:
        train_bytes, _ = split_corpus(f.read())
    batches = Batches(train_bytes, args.seq_len, args.batch, args.seed)
    heldout = mr.read_tokens(args.heldout)
    log = []
    summary = {"mode": "scratch" if args.scratch else "upcycled", "seed": args.seed,
               "batch": args.batch, "seq_len": args.seq_len, "threads": args.threads,
               "optimizer": "AdamW(betas=(0.9,0.95), eps=1e-8)",
               "weight_decay": args.weight_decay, "grad_clip": args.clip,
               "warmup": args.warmup, "schedule": "linear warmup, cosine to %g x peak"
               % args.min_lr_frac, "aux_coef": args.aux_coef,
               "train_bytes": len(train_bytes)}
    t_start = time.time()

    if args.scratch:
        model = mr.MixtralForCausalLM(cfg)
        model.init_weights()
        summary.update(moe_steps=args.moe_steps, lr=args.lr)
        t, ema = train_phase("moe", model, batches, args.moe_steps, args.lr, args, log, True)
        summary["moe_seconds"] = round(t, 1)
    else:
        dense = mr.MixtralForCausalLM(cfg, dense=True)
        dense.init_weights()
        summary.update(dense_steps=args.dense_steps, dense_lr=args.lr,
                       moe_steps=args.moe_steps, moe_lr=args.moe_lr, noise=args.noise)
        t, ema = train_phase("dense", dense, batches, args.dense_steps, args.lr, args, log, False)
        summary["dense_seconds"] = round(t, 1)
        if not args.bench:
            ppl, _, _ = mr.perplexity(dense, heldout, args.seq_len)
            summary["dense_heldout_ppl_fp32"] = round(ppl, 4)
            summary["dense_final_train_ce_ema"] = round(ema, 4)
            print("dense model held-out perplexity (fp32 weights): %.4f" % ppl, flush=True)
        gen = torch.Generator().manual_seed(args.seed + 1)
        model = upcycle(dense, cfg, args.noise, gen)
        del dense
        if not args.bench:
            ppl, _, _ = mr.perplexity(model, heldout, args.seq_len)
            summary["upcycled_initial_heldout_ppl_fp32"] = round(ppl, 4)
            print("upcycled model before MoE training: held-out perplexity %.4f" % ppl, flush=True)
        t, ema = train_phase("moe", model, batches, args.moe_steps, args.moe_lr, args, log, True)
        summary["moe_seconds"] = round(t, 1)
    if args.bench:
        return
    summary["final_train_ce_ema"] = round(ema, 4)
    summary["total_seconds"] = round(time.time() - t_start, 1)
    model.eval()
    ppl32, _, _ = mr.perplexity(model, heldout, args.seq_len)
    summary["heldout_ppl_fp32_weights"] = round(ppl32, 4)

    nparams = sum(p.numel() for p in model.parameters())
    cfgk = model.cfg
    per_expert = 3 * cfgk["hidden_size"] * cfgk["intermediate_size"]
    summary["parameters"] = nparams
    summary["active_parameters"] = nparams - cfgk["num_hidden_layers"] * per_expert * (
        cfgk["num_local_experts"] - cfgk["num_experts_per_tok"])
    mr.save_model(model, args.out, metadata={"source": "submoe tools/train_demo.py",
                                             "mode": summary["mode"],
                                             "seed": str(args.seed)})

    # Evaluate exactly what was stored: reload the bf16 weights from the file.
    stored = mr.load_model(args.out)
    ppl, nll, count = mr.perplexity(stored, heldout, args.seq_len)
    freqs = mr.routing_frequencies(stored, heldout, args.seq_len)
    ref = {"heldout_ppl": round(ppl, 6), "seq_len": args.seq_len, "tokens": int(len(heldout)),
           "predicted_tokens": count, "mean_nll": round(nll, 8),
           "heldout_file": "heldout.u32", "weights": "bf16 as stored, evaluated in fp32",
           "routing_freq": [[round(v, 5) for v in f] for f in freqs],
           "training": summary, "loss_log": log}
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("parameters %d (active per token %d)" % (nparams, summary["active_parameters"]))
    print("held-out perplexity: fp32 weights %.4f, stored bf16 weights %.4f over %d tokens"
          % (ppl32, ppl, count))
    for L, fr in enumerate(freqs):
        print("layer %d routing freq (share of tokens, sums to k): %s"
              % (L, " ".join("%.3f" % v for v in fr)))
    print("total wall-clock %.1fs" % summary["total_seconds"])


if __name__ == "__main__":
    main()
