/* Fuzz config.json together with real weights: model.c's resolution of a config against the
 * tensors of every architecture and layout (names, dense/MoE layers, shared experts, fused
 * tensors, shapes), which fuzz_config (config alone) and fuzz_index (one fixed Mixtral) miss.
 * The first input byte picks one of ten tiny synth models (five architectures, per-expert and
 * fused); the rest replaces its config.json. Whatever opens is used: every weight looked up and
 * touched, every MoE layer loaded as fp32. */
#include "fuzz.h"
#include "forward/moelayer.h"
#include "model/model.h"
#include "model/synth.h"
#include "util/fileio.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define VARIANTS (2 * SM_ARCH_COUNT)

static char root[128];
static int ready[VARIANTS];

static void cleanup(void)
{
    sm_remove_tree(root);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/dev/shm/submoe-fuzz-resolve-%ld", (long)getpid());
    mkdir(root, 0755);
    atexit(cleanup);
    for (int v = 0; v < VARIANTS; v++) {
        sm_synth_opts o;
        sm_synth_defaults(&o, (sm_arch)(v / 2));
        o.layers = 2, o.hidden = 8, o.intermediate = 8, o.experts = 4, o.clusters = 2;
        o.heads = 2, o.kv_heads = 1, o.vocab = 16, o.dense_intermediate = 16, o.shared_intermediate = 8;
        o.shared_experts = 1, o.quiet = true;
        o.layout = v % 2 ? SM_LAYOUT_FUSED : SM_LAYOUT_PER_EXPERT;
        o.dtype = v % 3 == 0 ? SM_DT_F32 : v % 3 == 1 ? SM_DT_BF16 : SM_DT_F16;
        char dir[192];
        snprintf(dir, sizeof dir, "%s/%d", root, v);
        mkdir(dir, 0755);
        ready[v] = sm_synth_write(&o, dir) == 0;
    }
}

static void touch(const sm_weight *w)
{
    if (w->rows < 1 || w->cols < 1 || w->cols > 1 << 16)
        return;
    float buf[1 << 16];
    sm_weight_rows_to_f32(w, w->rows - 1, 1, buf); /* the last row: the end of the view */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0])
        setup();
    if (size < 1 || !ready[data[0] % VARIANTS])
        return 0;
    char dir[192], cfg[224];
    snprintf(dir, sizeof dir, "%s/%d", root, data[0] % VARIANTS);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (sm_write_file(cfg, data + 1, size - 1))
        return 0;
    sm_model *m = sm_model_open(dir);
    if (!m)
        return 0;
    const sm_config *c = sm_model_config(m);
    for (int l = 0; l < c->n_layers; l++) {
        int E = sm_model_layer_experts(m, l);
        (void)sm_model_router_rows(m, l);
        (void)sm_model_expert_map(m, l);
        for (int r = 0; r < SM_W_ROLE_COUNT; r++) {
            sm_weight w;
            bool expert = r == SM_W_EXPERT_GATE || r == SM_W_EXPERT_UP || r == SM_W_EXPERT_DOWN;
            for (int i = 0; i < (expert ? E : 1); i++)
                if (sm_model_has(m, (sm_wrole)r, l) && sm_model_weight(m, (sm_wrole)r, l, i, &w) == 0)
                    touch(&w);
        }
        if (c->is_moe[l]) {
            sm_moe_layer ml;
            if (sm_moe_layer_load(m, l, &ml) == 0)
                sm_moe_layer_free(&ml);
        }
    }
    char fp[32];
    sm_model_fingerprint(m, fp);
    (void)sm_model_param_count(m);
    (void)sm_model_expert_params(m);
    (void)sm_model_active_params(m);
    sm_model_close(m);
    return 0;
}
