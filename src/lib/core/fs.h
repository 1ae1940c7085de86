/* File system helpers for the daemons' data files. */
#ifndef M5_CORE_FS_H
#define M5_CORE_FS_H

#include <stddef.h>
#include <sys/types.h>

/* Creates the directories leading to the file at path (not the file), each with mode (e.g.
 * 0700 for directories holding secrets); existing ones are kept as they are. On failure
 * writes "cannot create directory D for <what>: <reason>" into err and returns M5_EIO (or
 * M5_ERANGE for an over-long path). */
int m5_fs_mkdir_parents(const char *path, mode_t mode, const char *what, char *err, size_t errlen);

#endif
