#!/bin/sh
# Seed corpora for the fuzz harnesses, from the repository's own files: the corrupt-model corpus,
# the demo configs, the plan tests, and small synthetic models, token files and stats files made
# with submoe itself. Usage: fuzz/make_seeds.sh SUBMOE OUTDIR   (run from the source tree)
set -eu
S=$1
out=$2
rm -rf "$out"
mkdir -p "$out/st" "$out/config" "$out/tokens" "$out/plan" "$out/index" "$out/calib"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
for d in tests/corrupt/*/; do
    n=$(basename "$d")
    [ -f "$d/model.safetensors" ] && cp "$d/model.safetensors" "$out/st/$n"
    [ -f "$d/config.json" ] && cp "$d/config.json" "$out/config/$n"
    [ -f "$d/model.safetensors.index.json" ] && cp "$d/model.safetensors.index.json" "$out/index/$n"
    i=$((i + 1))
done
cp data/demo/config.json "$out/config/demo"
cp data/demo-scratch/config.json "$out/config/demo-scratch"
for a in mixtral qwen2_moe qwen3_moe olmoe deepseek; do
    "$S" synth --arch $a --layers 2 --hidden 16 --intermediate 32 --experts 4 --clusters 2 --heads 2 --kv-heads 1 \
        --vocab 32 -q --out "$tmp/$a"
    cp "$tmp/$a/config.json" "$out/config/synth-$a"
    cp "$tmp/$a/model.safetensors" "$out/st/synth-$a"
done
"$S" synth --arch mixtral --layers 2 --hidden 16 --intermediate 32 --experts 4 --clusters 2 --heads 2 --kv-heads 1 \
    --vocab 32 -q --shard-size 20K --out "$tmp/sharded"
cp "$tmp/sharded/model.safetensors.index.json" "$out/index/synth-sharded"
for p in tests/plans/*.yaml; do cp "$p" "$out/plan/$(basename "$p")"; done
# tokens: first byte 0 = raw uint32, 1 = .npy
printf '\000' >"$out/tokens/u32"
head -c 64 data/calib.u32 >>"$out/tokens/u32"
python3 - "$out/tokens" <<'PY' 2>/dev/null || true
import struct, sys
d = sys.argv[1]
for name, descr, fmt, size in (("npy-i4", "<i4", "<i", 4), ("npy-i8", "<i8", "<q", 8)):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (8,), }" % descr
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    body = b"".join(struct.pack(fmt, i) for i in range(8))
    open(f"{d}/{name}", "wb").write(b"\x01" + b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body)
PY
# a stats file for the harnesses' fixed model (the same synth options as fuzz_model.h)
"$S" synth --arch mixtral --layers 2 --hidden 16 --intermediate 32 --experts 4 --clusters 2 --heads 2 --kv-heads 1 \
    --vocab 32 -q --out "$tmp/fm"
head -c 4096 data/calib.u32 | od -An -v -tu4 -w4 | awk '{ printf "%c%c%c%c", $1 % 32, 0, 0, 0 }' >"$tmp/t.u32"
"$S" calibrate "$tmp/fm" --tokens "$tmp/t.u32" --samples 4 --seq-len 32 --keep 64 --sample 16 -q -o "$out/calib/stats"
echo "seeds: $(find "$out" -type f | wc -l) files in $out"
