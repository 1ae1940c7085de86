/* m5ctl subscriber import: the subscriber file. One subscriber a line, three fields separated
 * by spaces or tabs: `SUPI K_AUSF ueSvcId`, the SUPI as `subscriber add --supi` takes it (the
 * IMSI as 5-15 digits, TS 23.003 cl. 2.2), K_AUSF as 64 hex digits (TS 33.501 Annex A.7),
 * the UE Service ID as m5s's binding API accepts it (1-128 printable ASCII characters without
 * spaces, docs/admin-api.md). Blank lines and lines starting with '#' are ignored, and so is a
 * fourth field starting with '#' and the rest of its line. The whole file is checked before
 * anything is sent: a bad line, or a SUPI or UE Service ID given twice, refuses all of it.
 * Kept apart from the HTTP side so that tests/unit/test_ctl_import_file.c can run it alone. */
#ifndef M5_TOOLS_CTL_IMPORT_FILE_H
#define M5_TOOLS_CTL_IMPORT_FILE_H

#include "crypto/akma.h"
#include "msg/msg.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define M5CTL_IMPORT_LINE_MAX 1024   /* characters of one line, without its newline */
#define M5CTL_IMPORT_MAX 1000000     /* subscribers in one file */
#define M5CTL_IMPORT_ERRORS_SHOWN 20 /* bad lines printed; a count says how many more */

typedef struct {
  uint32_t line; /* 1-based line number in the file */
  char supi[16]; /* digits */
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  uint8_t kausf[M5_AKMA_KEY_LEN]; /* secret: the list's owner wipes it */
} m5ctl_import_entry_t;

typedef struct {
  m5ctl_import_entry_t *v;
  size_t n, cap;
} m5ctl_import_list_t;

/* One line (without its newline; a trailing '\r' is ignored). 1 with *e filled, 0 for a blank
 * or comment line, -1 with the reason in why (one phrase naming the field; never the key's
 * text). The caller wipes line and e. */
int m5ctl_import_parse_line(const char *line, m5ctl_import_entry_t *e, char *why, size_t cap);

/* Reads all of the file path ("-": standard input) into list (empty on entry) and checks it.
 * 0 when every line is good; else M5_EINVAL after printing "path:LINE: reason" on err for each
 * bad line (in line order, at most M5CTL_IMPORT_ERRORS_SHOWN, then how many more) and a last
 * "m5ctl: path: refused" line, or M5_EIO/M5_ENOMEM after printing why; on failure list is
 * left empty. The stream's buffer is ours and wiped once the stream is closed, as is every
 * copy of a line. */
int m5ctl_import_read(const char *path, FILE *err, m5ctl_import_list_t *list);

/* Wipes the keys and frees the list. */
void m5ctl_import_list_free(m5ctl_import_list_t *list);

#endif
