/* datadir: where the bundled demo model and token files are. In the library (not main.c) because
 * the workbench and `submoe plan` look them up as well as the command dispatch. */
#ifndef SM_DATADIR_H
#define SM_DATADIR_H

/* Directory holding the bundled token files: $SUBMOE_DATA when set, else the source tree's data/
 * when run uninstalled, else pkgdatadir's. */
const char *sm_data_dir(void);
/* Directory of the bundled demo model: sm_data_dir()/demo. */
const char *sm_demo_dir(void);

#endif
