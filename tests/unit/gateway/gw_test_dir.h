/* Test helpers shared by the gateway suites that work on a real spool directory: a fresh one
 * under /tmp, and its removal (with the files in it, one level: the spool has no subdirectories).
 * Header-only (static inline) so each suite links no extra object. */
#ifndef GW_TEST_DIR_H
#define GW_TEST_DIR_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Create a fresh directory from `tmpl` ("/tmp/name.XXXXXX") into dir[cap]. */
static inline void gw_test_mkdtemp(char *dir, size_t cap, const char *tmpl)
{
    snprintf(dir, cap, "%s", tmpl);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Remove `dir` and the files in it (missing is fine). */
static inline void gw_test_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

#endif
