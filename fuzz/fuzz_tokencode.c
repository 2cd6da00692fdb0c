/* Fuzz encoding arbitrary bytes: the first byte picks one of three small tokenizers (byte-level,
 * SentencePiece-like, components), the rest is the text, repaired to UTF-8 as submoe tokenize does.
 * Every id must be inside the vocabulary, and decoding the ids must not fail. */
#include "fuzz.h"
#include "fuzz_tok_model.h"
#include "text/tok.h"
#include "text/tok_utf8.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sm_tok *toks[3];
    if (size < 1)
        return 0;
    int which = data[0] % 3;
    if (!toks[which]) { /* built once: the tokenizer is the fixed part, the text the fuzzed one */
        char *json = fuzz_tok_json(which);
        toks[which] = json ? sm_tok_load_mem("fuzz.json", json, strlen(json), NULL, NULL, 0) : NULL;
        free(json);
        if (!toks[which])
            abort();
    }
    size_t len, first, nbad;
    char *text = sm_tok_utf8_repair((const char *)data + 1, size - 1, &len, &first, &nbad);
    sm_tok_ids ids = {0};
    if (sm_tok_encode(toks[which], text, len, data[0] & 4, &ids) == 0) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.v[i] < 0 || ids.v[i] >= sm_tok_vocab_size(toks[which]))
                abort();
        free(sm_tok_decode(toks[which], ids.v, ids.n, data[0] & 8));
    }
    free(ids.v);
    free(text);
    return 0;
}
