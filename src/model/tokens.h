/* tokens: token-id files for calibration and evaluation.
 *
 * Two formats, chosen by content (not name): a NumPy .npy file (magic "\x93NUMPY", versions 1-3,
 * little-endian int32 or int64, C order, any shape, flattened) or else raw little-endian uint32
 * ids (the file size must be a multiple of 4). Every id is checked against the vocabulary: an id
 * >= vocab (or negative in .npy) is refused with its position. Errors name the file. */
#ifndef SM_TOKENS_H
#define SM_TOKENS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sm_tokens {
    int32_t *ids;
    size_t n;
} sm_tokens;

/* Read a token file. vocab > 0 enables the range check. 0 or -1 with a message. */
int sm_tokens_read(const char *path, int vocab, sm_tokens *out);
/* Parse a token file already in memory (path is used in messages). */
int sm_tokens_parse(const char *path, const void *data, size_t len, int vocab, sm_tokens *out);
void sm_tokens_free(sm_tokens *t);

#endif
