/* Fuzz the sharded-model index (model.safetensors.index.json): a fixed config and shard, the
 * index from the input, opened with sm_model_open (names, shard paths, coverage checks). */
#include "fuzz.h"
#include "fuzz_model.h"
#include "model/model.h"
#include "util/fileio.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[160];
    const char *base = fuzz_model();
    if (!base)
        return 0;
    if (!dir[0]) { /* a sharded copy: config.json + the shard under its shard name */
        snprintf(dir, sizeof dir, "%s/sharded", base);
        mkdir(dir, 0755);
        char a[256], b[256];
        size_t len;
        snprintf(a, sizeof a, "%s/config.json", base);
        snprintf(b, sizeof b, "%s/config.json", dir);
        char *t = sm_read_file(a, 1 << 20, &len);
        if (!t || sm_write_file(b, t, len))
            return 0;
        free(t);
        snprintf(a, sizeof a, "%s/model.safetensors", base);
        snprintf(b, sizeof b, "%s/model-00001-of-00001.safetensors", dir);
        t = sm_read_file(a, 1 << 26, &len);
        if (!t || sm_write_file(b, t, len))
            return 0;
        free(t);
    }
    char idx[256];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    if (sm_write_file(idx, data, size))
        return 0;
    sm_model *m = sm_model_open(dir);
    if (m) {
        (void)sm_model_param_count(m);
        sm_model_close(m);
    }
    return 0;
}
