/* Fuzz the safetensors header parser and validator (st_open) and touch every tensor it accepts. */
#include "fuzz.h"
#include "model/st.h"
#include "util/diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    st_file *f = st_open(path);
    if (f) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < st_count(f); i++) {
            const sm_tensor *t = st_tensor(f, i);
            if (t->nbytes)
                sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
            (void)st_find(f, t->name);
        }
        (void)st_metadata(f, "format");
        (void)sink;
        st_close(f);
    }
    close(fd);
    return 0;
}
