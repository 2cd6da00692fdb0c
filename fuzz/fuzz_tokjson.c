/* Fuzz the tokenizer.json reader: any bytes as the file. What loads must encode a fixed text with
 * added-token strings, whitespace runs and non-ASCII, and decode its ids, without failing hard. */
#include "fuzz.h"
#include "text/tok.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char text[] = "Hello <s> world<|endoftext|>  \t\n12345 caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC -x- <mask> hello";
    sm_tok *t = sm_tok_load_mem("tokenizer.json", (const char *)data, size, NULL, NULL, 0);
    if (!t)
        return 0;
    sm_tok_ids ids = {0};
    if (sm_tok_encode(t, text, strlen(text), true, &ids) == 0)
        free(sm_tok_decode(t, ids.v, ids.n, false));
    free(ids.v);
    sm_tok_free(t);
    return 0;
}
