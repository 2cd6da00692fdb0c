/* Fuzz the stats/activations file reader (sm_calib_read) against a fixed tiny model, and use
 * whatever it accepts: inputs and statistics of every MoE layer. */
#include "fuzz.h"
#include "fuzz_model.h"
#include "forward/moelayer.h"
#include "pipeline/calib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sm_model *m;
    if (!m) {
        const char *dir = fuzz_model();
        if (!dir || !(m = sm_model_open(dir)))
            return 0;
    }
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    sm_calib *c = sm_calib_read(m, path, -1);
    if (c) {
        const sm_config *cfg = sm_model_config(m);
        for (int l = 0; l < cfg->n_layers; l++) {
            const float *x;
            int64_t mf, mh;
            if (!cfg->is_moe[l] || sm_calib_inputs(c, l, &x, &mf, NULL, &mh))
                continue;
            sm_moe_layer ml;
            const sm_layer_analysis *a;
            if (sm_moe_layer_load(m, l, &ml) == 0) {
                (void)sm_calib_analysis(c, l, &ml.block, false, NULL, &a);
                sm_moe_layer_free(&ml);
            }
        }
        sm_calib_free(c);
    }
    close(fd);
    return 0;
}
