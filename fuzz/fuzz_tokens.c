/* Fuzz token files: raw uint32 and .npy (int32/int64), chosen by the first byte. */
#include "fuzz.h"
#include "model/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sm_tokens t;
    const char *name = data[0] & 1 ? "tokens.npy" : "tokens.u32";
    if (sm_tokens_parse(name, (const char *)data + 1, size - 1, 50000, &t) == 0)
        sm_tokens_free(&t);
    return 0;
}
