/* publish: moving a finished output (a file or a directory written under a temporary sibling
 * name) to its destination, the one way every command does it; and, for -o FILE, which file that
 * destination is (sm_output_target) and the whole write (sm_write_file_atomic).
 *
 * Without replace, the move cannot replace anything: an output someone else created at the
 * destination while the command ran stays, and the command fails (renameat2 RENAME_NOREPLACE).
 * With replace, a directory is exchanged with the existing one (RENAME_EXCHANGE), so no moment
 * exists without an output at the destination, and the old one is then removed; a file is
 * renamed over the old one (rename(2) is already atomic for files).
 *
 * Where the file system refuses renameat2's flags (EINVAL), the fallbacks keep the same rules
 * as far as POSIX allows: no-replace for a file is link(2) + unlink(2) (link fails on an existing
 * name); for a directory, mkdir(2) of the destination (fails on an existing name) and then
 * rename(2) over that empty directory (fails if anything was put into it meanwhile). Replacing a
 * directory falls back to moving the old one aside (NAME.old-PID) and the new one into place:
 * for a moment there is no output. */
#ifndef SM_PUBLISH_H
#define SM_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

/* The temporary sibling an output is written under: "FINAL.tmp-PID". Caller frees. */
char *sm_temp_sibling(const char *final);

/* Move tmp (a regular file or a directory) to final; see above. A symbolic link to a regular
 * file at final is written through (its file is replaced, the link stays); a device, pipe or
 * socket there is refused. Goes through the failure-injection hook (util/fault.h) once, and
 * refuses once a signal has arrived, so an interrupted command never publishes. On failure tmp
 * is left for the caller to remove. 0, or -1 with a message naming final. */
int sm_publish(const char *tmp, const char *final, bool replace);

/* Say (sm_warn) which temporaries of earlier runs to `final` are left beside it — siblings
 * "NAME.tmp-PID" and "NAME.old-PID" whose process no longer exists (a crash or a kill -9
 * between writing and publishing) — and how to remove them. Nothing is removed: they may hold
 * the only copy of an old output. */
void sm_report_stale(const char *final);

/* Where an output file given on the command line (-o FILE) goes, without ever replacing a
 * symbolic link or a device by a regular file:
 *   - a new path or a regular file: *target = path, replaced atomically (temporary + rename);
 *   - a symbolic link to a regular file: *target = the file it resolves to (replaced atomically;
 *     the link stays and now shows the new content);
 *   - a device, pipe or socket, directly or through links (/dev/null, a FIFO), and any name that
 *     goes through a /proc descriptor link (/dev/stdout, /dev/fd/N, whatever they point to):
 *     *direct = true, written in place with no temporary;
 *   - a directory or a dangling link: refused with a message.
 * *target is malloc'ed. 0, or -1 with a message. */
int sm_output_target(const char *path, char **target, bool *direct);
/* sm_write_file through sm_output_target: atomic for files, in place for devices. */
int sm_write_file_atomic(const char *path, const void *data, size_t n);

#endif
