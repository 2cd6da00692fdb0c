#!/bin/sh
# The workbench's E (issue 19 item 5) on the demo through tmux, at 80x24 and at 200x60: from the
# plan view it writes the whole-model chart, from the heatmap the layer's similarity heatmap, from
# the spectrum the group's spectrum — SVG, PDF, PNG (its figure's size, not blank: figures_check)
# and CSV into the directory the prompt asks for (default submoe-figures), with a status line
# naming the files; Esc cancels without writing.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuiexport
check_bin=$BUILDDIR/tests/figures_check

# figure_ok DIR BASE W H: the four files, the PNG's size and pixels
figure_ok() {
    "$check_bin" png "$1/$2.png" "$3" "$4" 16 && [ -s "$1/$2.svg" ] && [ "$(head -c 5 "$1/$2.pdf")" = "%PDF-" ] &&
        [ -s "$1/$2.csv" ]
}

for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/tmux$size.sock"
    dir=$tmp/$size
    mkdir "$dir"
    tui_session "$dir" "'$DEMO'"
    check "$size: calibrates and previews every layer" wait_for 'every layer previewed' 300
    keys E
    check "$size: E asks for the directory, submoe-figures first" wait_for 'directory submoe-figures' 10
    keys Escape
    check "$size: Esc cancels" wait_for 'export cancelled' 10
    check_expr "$size: and writes nothing" "[ ! -e '$dir/submoe-figures' ]"

    keys E
    wait_for 'directory submoe-figures' 10
    keys Enter
    check "$size: from the plan view, the model chart, its files named" \
        wait_for 'submoe-figures/model\.\{svg,pdf,png,csv\}, model-frequency\.csv' 20
    check "$size: model.{svg,pdf,png,csv}, 960x214" figure_ok "$dir/submoe-figures" model 960 214
    check_eq "$size: model.csv has the 4 MoE layers" "$(($(wc -l <"$dir/submoe-figures/model.csv") - 1))" 4
    check "$size: and model-frequency.csv" test -s "$dir/submoe-figures/model-frequency.csv"

    keys 2 E
    wait_for 'directory submoe-figures' 10
    keys Enter
    check "$size: from the heatmap, layer 0's output similarity" \
        wait_for 'submoe-figures/layer0-similarity-output\.\{svg,pdf,png,csv\}' 20
    check "$size: its files, 720x640" figure_ok "$dir/submoe-figures" layer0-similarity-output 720 640
    check_eq "$size: its CSV has the 8x8 cells" \
        "$(($(wc -l <"$dir/submoe-figures/layer0-similarity-output.csv") - 1))" 64

    keys 3
    check "$size: the spectrum is computed" wait_for 'keeps [0-9.]+% of the energy|ranks unused' 60
    keys E
    wait_for 'directory submoe-figures' 10
    keys Enter
    check "$size: from the spectrum, the group's spectrum" wait_for 'submoe-figures/layer0-group0-spectrum\.\{svg,pdf,png,csv\}' 20
    check "$size: its files, 960x420" figure_ok "$dir/submoe-figures" layer0-group0-spectrum 960 420
    check_expr "$size: the plan's rank marked once per matrix" \
        "[ \$(awk -F, 'NR > 1 { r += \$5 } END { print r }' '$dir/submoe-figures/layer0-group0-spectrum.csv') -eq 3 ]"

    tui_quit "$size"
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]
