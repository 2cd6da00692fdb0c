#!/usr/bin/env python3
"""Cross-check `submoe eval --task` against lm-evaluation-harness itself (not needed to build or
test). Builds a tiny MixtralForCausalLM with random weights from a config (transformers,
save_pretrained as safetensors) and a small BPE tokenizer.json with a BOS post-processor, writes a
task file, and runs (1) lm-eval's HFLM on it through a local multiple_choice task (acc, acc_norm
and every choice's log-likelihood) and (2) `submoe eval MODEL --task FILE --items TSV`; prints
the largest log-likelihood difference and both accuracies.

Needs a Python with torch, transformers (with Mixtral), lm-eval and datasets, e.g.
  /usr/bin/python3 -m venv --system-site-packages /tmp/venv   # over Debian's python3-torch
  /tmp/venv/bin/pip install "numpy<2" "transformers==4.44.2" lm-eval
Usage: tools/lmeval_check.py --submoe BUILD/src/submoe [--keep DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_forward import TASK_ITEMS, task_tokenizer_json  # noqa: E402


def build_model(d):
    from transformers import MixtralConfig, MixtralForCausalLM
    torch.manual_seed(7)
    cfg = MixtralConfig(vocab_size=65, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                        num_experts_per_tok=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                        rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=64, eos_token_id=64,
                        torch_dtype="float32")
    m = MixtralForCausalLM(cfg).float()
    with torch.no_grad():  # larger weights than the init's 0.02 so that choices differ clearly
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    m.save_pretrained(d, safe_serialization=True)
    tj = task_tokenizer_json()
    tj["added_tokens"] = [{"id": 64, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                           "normalized": False, "special": True}]
    tj["post_processor"] = {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}}],
                            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                     {"Sequence": {"id": "A", "type_id": 0}},
                                     {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"<s>": {"id": "<s>", "ids": [64], "tokens": ["<s>"]}}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "<s>",
                   "model_max_length": 256}, f)


def run_lmeval(d, task_file, inc):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    os.makedirs(inc, exist_ok=True)
    with open(os.path.join(inc, "submoe_check.yaml"), "w") as f:
        f.write("task: submoe_check\ndataset_path: json\n"
                f"dataset_kwargs:\n  data_files:\n    test: {task_file}\n"
                "test_split: test\noutput_type: multiple_choice\n"
                "doc_to_text: \"{{context}}\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{gold}}\"\n"
                "target_delimiter: \" \"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
                "  - metric: acc_bytes\n")
    lm = HFLM(pretrained=d, dtype="float32", device="cpu", batch_size=1)
    res = lm_eval.simple_evaluate(model=lm, tasks=["submoe_check"], num_fewshot=0, log_samples=True,
                                  task_manager=TaskManager(include_path=inc))
    r = res["results"]["submoe_check"]
    samples = sorted(res["samples"]["submoe_check"], key=lambda s: s["doc_id"])
    lls = [[float(x[0][0]) for x in s["resps"]] for s in samples]
    args = [[a for a in s["arguments"]] for s in samples]
    return (r["acc,none"], r["acc_norm,none"], r["acc_bytes,none"]), lls, args


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--submoe", required=True)
    ap.add_argument("--keep", help="keep the model and task in this directory")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="lmeval_check.")
    os.makedirs(work, exist_ok=True)
    d = os.path.join(work, "model")
    build_model(d)
    task_file = os.path.join(work, "task.jsonl")
    with open(task_file, "w") as f:
        f.writelines(json.dumps(it) + "\n" for it in TASK_ITEMS)
    (acc, acc_norm, acc_bytes), lls, args = run_lmeval(d, task_file, os.path.join(work, "tasks"))
    tsv = os.path.join(work, "items.tsv")
    out = subprocess.run([a.submoe, "eval", d, "--task", task_file, "--items", tsv, "--json"], check=True,
                         capture_output=True, text=True).stdout
    sm = json.loads(out)["tasks"][0]
    rows = [line.rstrip("\n").split("\t") for line in open(tsv)][1:]
    ours = {}
    for r in rows:
        ours.setdefault(int(r[1]), []).append(float(r[5]))
    worst = max(abs(x - y) for i, ll in enumerate(lls) for x, y in zip(ll, ours[i + 1]))
    import importlib.metadata as md
    print(json.dumps({"versions": {k: md.version(k) for k in ("lm_eval", "transformers", "torch", "tokenizers",
                                                              "datasets")},
                      "lm_eval": {"acc": acc, "acc_norm": acc_norm, "acc_bytes": acc_bytes},
                      "submoe": {k: sm[k] for k in ("acc", "acc_norm", "acc_bytes")},
                      "max_abs_loglik_diff": worst, "choices": sum(len(x) for x in lls),
                      "lm_eval_requests_item0": args[0]}, indent=1))
    if not a.keep:
        shutil.rmtree(work)
    same = all(abs(x - sm[k]) < 1e-9 for x, k in ((acc, "acc"), (acc_norm, "acc_norm"), (acc_bytes, "acc_bytes")))
    return 0 if worst <= 1e-4 and same else 1


if __name__ == "__main__":
    sys.exit(main())
