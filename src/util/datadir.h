/* datadir: where the bundled demo model and token files are. In the library (not main.c) because
 * the workbench and `submoe plan` look them up as well as the command dispatch. */
#ifndef SM_DATADIR_H
#define SM_DATADIR_H

/* Directory holding the bundled token files: $SUBMOE_DATA when set, else the source tree's data/
 * when run uninstalled, else pkgdatadir's. */
const char *sm_data_dir(void);
/* Directory of the bundled demo model: sm_data_dir()/demo. */
const char *sm_demo_dir(void);

/* The bundled token files (calib.u32, heldout.u32) hold bytes of English text, ids 0..255: token
 * ids only for a byte vocabulary. For a model with another vocabulary (`vocab` ≠ 256), -1 with one
 * message naming `file` and how to give the model's own tokens (`option` FILE, e.g. --tokens) or
 * text (--text FILE); 0 otherwise. Front ends call it only when the bundled file is their
 * default: a file the user names is used as given. */
int sm_bundled_tokens_check(int vocab, const char *file, const char *option);

#endif
