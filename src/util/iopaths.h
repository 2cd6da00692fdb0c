/* iopaths: a command's input and output paths, and the one rule between them: an output is never
 * an input, never lies inside one, and never contains one (an output directory replaced with
 * --force would delete what it holds). Every command that writes lists its paths and calls
 * sm_check_output_paths before any work.
 *
 * Paths are compared as the files they name: symbolic links are followed (a Hugging Face
 * snapshot's files link into ../blobs: the blobs count), ".." and "." are resolved, a path that
 * does not exist yet is resolved through its nearest existing directory, and an existing file is
 * also matched by device and inode (a hard link to an input is that input). */
#ifndef SM_IOPATHS_H
#define SM_IOPATHS_H

typedef struct sm_path_entry {
    char *what;   /* for messages: "source model", "tokens file", "plan", ... */
    char *path;   /* as given */
} sm_path_entry;

typedef struct sm_paths {
    sm_path_entry *v;
    int n;
} sm_paths;

/* Add one path (ignored when path is NULL or empty). */
void sm_paths_add(sm_paths *l, const char *what, const char *path);
/* A model directory: the directory and every file in it (config.json, shards, index, tokenizer
 * files, ...), each followed through its links. */
void sm_paths_add_model(sm_paths *l, const char *dir);
void sm_paths_free(sm_paths *l);

/* Refuse an output that is, lies inside, or contains an input, or another output; then report
 * (sm_warn) temporaries earlier runs left beside each output (util/publish.h). Outputs that
 * are devices, pipes or sockets (/dev/null, a FIFO) are written in place and not compared.
 * 0, or -1 with a message naming the output and the input. */
int sm_check_output_paths(const sm_paths *inputs, const sm_paths *outputs);

#endif
