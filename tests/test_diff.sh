#!/bin/sh
# submoe diff maps experts through a submoe output's provenance (issue 19 item 7): a pruned copy
# compares at 0 error (kept experts against the slots that hold them, dropped ones only in A, the
# router's kept rows), factored experts are multiplied out, --json shapes are integer arrays, and
# a record that names another source, or none, falls back to names; a malformed one is refused.
set -u
. "$SRCDIR/tests/lib.sh"
scratch diff
calib="-t $SRCDIR/data/calib.u32 --samples 8 --seq-len 128 --keep 600 --heldout 120 -c $tmp/demo.stats"

# Pruning keeps 6 of 8 experts per layer and renumbers them.
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m prune-frequency $calib -o "$tmp/prune.yaml" -q
"$SUBMOE" apply "$tmp/prune.yaml" -o "$tmp/pruned" -q
check "the output records where every expert went" grep -q '"expert_slots": {' "$tmp/pruned/config.json"
"$SUBMOE" diff "$DEMO" "$tmp/pruned" --all >"$tmp/out"
st=$?
check "pruned copy: exit 0, nothing differs, the 24 dropped expert matrices only in A" \
    sh -c "[ $st -eq 0 ] && grep -q '^103 tensors compared, 0 differ (max relative error 0 .*); 24 only in A, 0 only in B, 0 of different shapes' '$tmp/out'"
check "... kept experts compared against their new slots" grep -q 'experts.7.w1.weight .* 0  vs .*experts.5.w1.weight' "$tmp/out"
check "... and the router's rows of the kept experts" grep -q 'gate.weight (rows of the kept experts)' "$tmp/out"
check "... dropped experts listed" test "$(grep -c '^only in A: model.layers.[0-3].block_sparse_moe.experts.[0-7].w[123].weight$' "$tmp/out")" -eq 24

# Without the record (an older output) the same copy is compared by name, and differs.
sed 's/"expert_slots"/"expert_slots_unknown"/' "$tmp/pruned/config.json" >"$tmp/cfg"
mkdir "$tmp/byname" && cp "$tmp/pruned/model.safetensors" "$tmp/byname/" && cp "$tmp/cfg" "$tmp/byname/config.json"
"$SUBMOE" diff "$DEMO" "$tmp/byname" >"$tmp/out"
check "without expert_slots: by name, renumbered experts differ, and said so" \
    sh -c "grep -q '^[0-9]* tensors compared, [1-9][0-9]* differ' '$tmp/out' && grep -q 'shape differs: .*gate.weight' '$tmp/out' && grep -q '^note: B.s provenance has no expert_slots' '$tmp/out'"

# --json: shapes are arrays of integers.
"$SUBMOE" diff "$DEMO" "$tmp/pruned" --json --all >"$tmp/j"
check "--json: \"shape\" is an array of integers" \
    sh -c "grep -A3 '\"shape\": \[' '$tmp/j' | sed -n 2p | grep -q '^ *256,\$'"
check "--json: no shape is a string" sh -c "! grep -q '\"shape\": \"' '$tmp/j'"
check "--json: experts_mapped true, 0 differ" sh -c "grep -q '\"experts_mapped\": true' '$tmp/j' && grep -q '\"differ\": 0,' '$tmp/j'"

# Factored experts (rank 32, remap router): A's expert i against its group's A·B.
sed 's/^  method: prune-frequency$/  method: submoe\n  rank: 32\n  router: remap/' "$tmp/prune.yaml" |
    sed 's/^    method: prune-frequency$/    method: submoe/; s/^    rank: full$/    rank: 32/' >"$tmp/r32.yaml"
"$SUBMOE" apply "$tmp/r32.yaml" -o "$tmp/r32" -q
"$SUBMOE" diff "$DEMO" "$tmp/r32" >"$tmp/out"
check "factored experts compared multiplied out, nothing only in B" \
    sh -c "grep -q 'w1.weight .*  vs .*w1.weight_a·.*w1.weight_b' '$tmp/out' && grep -q '^127 tensors compared, 96 differ.*; 0 only in A, 0 only in B, 0 of different shapes' '$tmp/out'"

# A record naming another source model: by name, and said so.
sed 's/"source_fingerprint": *"[^"]*"/"source_fingerprint":"fnv1a64:0000000000000000"/' "$tmp/pruned/config.json" >"$tmp/cfg"
mkdir "$tmp/alien" && cp "$tmp/pruned/model.safetensors" "$tmp/alien/" && cp "$tmp/cfg" "$tmp/alien/config.json"
"$SUBMOE" diff "$DEMO" "$tmp/alien" >"$tmp/out"
check "another source's record: a note, experts by name" \
    sh -c "grep -q '^note: B was made from another model' '$tmp/out' && grep -q '^[0-9]* tensors compared, [1-9][0-9]* differ' '$tmp/out'"

# A malformed record: one message naming the file, exit 1, no report.
sed '/"expert_slots"/,$ s/"0": \[/"0": [9, /' "$tmp/pruned/config.json" >"$tmp/cfg"
mkdir "$tmp/bad" && cp "$tmp/pruned/model.safetensors" "$tmp/bad/" && cp "$tmp/cfg" "$tmp/bad/config.json"
"$SUBMOE" diff "$DEMO" "$tmp/bad" >"$tmp/out" 2>"$tmp/err"
st=$?
check "malformed expert_slots: exit 1, the file and key named, no report" \
    sh -c "[ $st -eq 1 ] && grep -q 'bad/config.json: submoe_provenance.expert_slots.0: expected an array of 8 slots' '$tmp/err' && [ ! -s '$tmp/out' ] && [ \$(wc -l <'$tmp/err') -eq 1 ]"
[ "$fail" -eq 0 ]
