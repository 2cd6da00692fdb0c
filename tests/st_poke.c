/* st_poke: overwrite elements of one tensor of a safetensors file in place, so shell tests can
 * plant NaN, Inf or huge values without Python.
 *
 *   st_poke FILE TENSOR VALUE [FIRST [COUNT]]
 *
 * VALUE is parsed with strtod ("nan", "inf", "-inf", "3e38") and stored in the tensor's dtype
 * with the library's conversion (so 3e38 into F16 becomes Inf, as a real export would). Without
 * FIRST every element is set; COUNT defaults to 1. */
#include "model/dtype.h"
#include "model/st.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: st_poke FILE TENSOR VALUE [FIRST [COUNT]]\n");
        return 2;
    }
    st_file *f = st_open(argv[1]);
    if (!f) {
        fprintf(stderr, "st_poke: cannot open %s\n", argv[1]);
        return 1;
    }
    const sm_tensor *t = st_find(f, argv[2]);
    if (!t) {
        fprintf(stderr, "st_poke: %s has no tensor '%s'\n", argv[1], argv[2]);
        return 1;
    }
    float v = strtof(argv[3], NULL);
    uint64_t first = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    uint64_t count = argc > 5 ? strtoull(argv[5], NULL, 10) : argc > 4 ? 1 : t->numel;
    if (first > t->numel || count > t->numel - first) {
        fprintf(stderr, "st_poke: elements [%llu, +%llu) outside '%s'\n", (unsigned long long)first,
                (unsigned long long)count, argv[2]);
        return 1;
    }
    /* Tensors tile the data section from offset 0 (the reader refuses holes), so a tensor's file
     * offset is 8 + header length + its distance from the first tensor's data. */
    FILE *fp = fopen(argv[1], "r+b");
    unsigned char hdr[8];
    if (!fp || fread(hdr, 1, 8, fp) != 8) {
        fprintf(stderr, "st_poke: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | hdr[i];
    size_t es = sm_dtype_size(t->dtype);
    long long off = (long long)(8 + hlen) + ((const char *)t->data - (const char *)st_tensor(f, 0)->data) +
                    (long long)(first * es);
    unsigned char elem[4];
    sm_from_f32(t->dtype, &v, elem, 1);
    int rc = fseek(fp, off, SEEK_SET);
    for (uint64_t i = 0; i < count && rc == 0; i++)
        rc = fwrite(elem, es, 1, fp) == 1 ? 0 : -1;
    if (fclose(fp) != 0 || rc != 0) {
        fprintf(stderr, "st_poke: %s: write failed\n", argv[1]);
        return 1;
    }
    st_close(f);
    return 0;
}
