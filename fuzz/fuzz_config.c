/* Fuzz config.json interpretation for the five architectures (sm_config_parse). */
#include "fuzz.h"
#include "model/arch.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    sm_config c;
    if (sm_config_parse("config.json", text, &c) == 0) {
        for (int l = 0; l < c.n_layers; l++)
            (void)sm_config_layer_experts(&c, l), (void)sm_config_router_rows(&c, l);
        sm_config_free(&c);
    }
    free(text);
    return 0;
}
