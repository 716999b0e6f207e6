/* Fuzz target: the gateway spool's reader and crash recovery (gw_spool.c). The input is the
 * content of one segment file, as a crash may have left it.
 * Invariants, on the bytes: every record the reader returns lies inside them, right after the
 * previous one, and its checksum holds (recomputed here bit by bit, independently of the
 * spool's table); the writer's encoding of its key and value is exactly its bytes; the valid
 * prefix read again gives the same records (reading after a cut is idempotent).
 * On a real directory (tmpfs when there is one): the input becomes seg-..01.spool and
 * gw_spool_open recovers it: it counts exactly the records above; when bytes follow them and an
 * intact record (found here independently) starts somewhere in those bytes, the segment is
 * damaged: counted as such, never cut, set aside whole as damaged-<seq>.spool when nothing
 * before the damage was valid; otherwise it counts a torn tail exactly when bytes follow and
 * leaves the file cut to the valid prefix (removed when nothing was valid);
 * then records taken from the input are appended through the real writer and, after close and
 * a second open (which finds nothing torn), the segment files hold the recovered records
 * followed by exactly the appended ones. Each such run starts two spools (two writer threads)
 * and costs about a hundred reader-only runs, so under libFuzzer it is done for one input in
 * FILE_EVERY, picked by the input's CRC so that a failure reproduces; the corpus replay
 * (FUZZ_REPLAY) does it for every input. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cm/log.h"
#include "fuzz_util.h"
#include "gw_spool.h"

#define FILE_EVERY 64
#define MAX_APPENDS 8
#define MAX_KEY 64
#define SEG_FIRST "seg-0000000000000001.spool"

static char spool_dir[256];

static uint32_t crc32_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void clear_dir(void);

static void remove_dir(void)
{
    clear_dir();
    rmdir(spool_dir);
}

static void make_dir_once(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

    if (spool_dir[0] != '\0') {
        return;
    }
    cm_log_level = -1; /* torn tails and damaged segments are expected here: no log lines */
    snprintf(spool_dir, sizeof(spool_dir), "%s/auren_spool_fuzz.XXXXXX", base);
    FUZZ_CHECK(mkdtemp(spool_dir) != NULL, "cannot create the spool directory");
    atexit(remove_dir);
}

static void path_of(const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", spool_dir, name);
}

/* Remove every file of the directory (segments and LOCK). */
static void clear_dir(void)
{
    DIR *d = opendir(spool_dir);
    struct dirent *e;
    char path[512];

    FUZZ_CHECK(d != NULL, "cannot list the spool directory");
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            path_of(e->d_name, path, sizeof(path));
            unlink(path);
        }
    }
    closedir(d);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_segment(const struct dirent *e)
{
    return strncmp(e->d_name, "seg-", 4) == 0;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    uint8_t *buf;
    size_t got = 0;

    FUZZ_CHECK(fd >= 0 && fstat(fd, &st) == 0, "cannot open a segment file");
    buf = malloc((size_t)st.st_size + 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        FUZZ_CHECK(n > 0, "short read of a segment file");
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

/* Is there a complete record whose checksum holds (bitwise) at some offset in data[from..size)? */
static bool intact_after(const uint8_t *data, size_t size, size_t from)
{
    for (size_t off = from; off + 12 <= size; off++) {
        const uint8_t *p = data + off;
        uint32_t plen;

        if (le32(p) != 0x31505341u) {
            continue;
        }
        plen = le32(p + 4);
        if (plen < 2 || plen > size - off - 12 ||
            crc32_bitwise(crc32_bitwise(0, p + 4, 4), p + 12, plen) != le32(p + 8) ||
            (size_t)(p[12] | p[13] << 8) + 2 > plen) {
            continue;
        }
        return true;
    }
    return false;
}

/* Every segment file, in sequence order, concatenated (each one must be whole records, but the
 * first may be a damaged segment: then only its first `damaged_valid` bytes are taken). */
static uint8_t *read_segments(size_t *len, bool damaged_first, size_t damaged_valid)
{
    struct dirent **names;
    int n = scandir(spool_dir, &names, is_segment, by_name);
    uint8_t *all = NULL;

    FUZZ_CHECK(n >= 0, "cannot list the spool directory");
    *len = 0;
    for (int i = 0; i < n; i++) {
        char path[512];
        size_t flen, valid;
        uint64_t recs;
        uint8_t *buf, *grown;

        path_of(names[i]->d_name, path, sizeof(path));
        buf = read_file(path, &flen);
        valid = gw_spool_valid_prefix(buf, flen, &recs);
        if (i == 0 && damaged_first) {
            FUZZ_CHECK(valid == damaged_valid && recs > 0, "the damaged segment changed");
            flen = valid;
        }
        FUZZ_CHECK(valid == flen && recs > 0, "a segment on disk is not whole records");
        grown = realloc(all, *len + flen + 1);
        FUZZ_CHECK(grown != NULL, "out of memory");
        all = grown;
        memcpy(all + *len, buf, flen);
        *len += flen;
        free(buf);
        free(names[i]);
    }
    free(names);
    return all;
}

/* Check every record of data[0..size) and return the valid length and the count. */
static size_t check_reader(const uint8_t *data, size_t size, uint64_t *records)
{
    struct gw_spool_record r;
    size_t off = 0, n, valid;
    uint64_t again;

    *records = 0;
    while ((n = gw_spool_record_at(data + off, size - off, &r)) > 0) {
        const uint8_t *rec = data + off;
        uint32_t plen = le32(rec + 4);
        uint8_t *enc;

        FUZZ_CHECK(n >= GW_SPOOL_RECORD_OVERHEAD && n <= size - off, "record outside the bytes");
        FUZZ_CHECK(le32(rec) == 0x31505341u, "record without the magic");
        FUZZ_CHECK((size_t)plen + 12 == n, "record size differs from its length field");
        FUZZ_CHECK(crc32_bitwise(crc32_bitwise(0, rec + 4, 4), rec + 12, plen) == le32(rec + 8),
                   "record returned with a wrong CRC");
        FUZZ_CHECK(gw_spool_crc32(0, rec, n) == crc32_bitwise(0, rec, n),
                   "table CRC differs from the bitwise CRC");
        FUZZ_CHECK((const uint8_t *)r.key == rec + GW_SPOOL_RECORD_OVERHEAD &&
                       r.value == rec + GW_SPOOL_RECORD_OVERHEAD + r.keylen &&
                       GW_SPOOL_RECORD_OVERHEAD + r.keylen + r.len == n,
                   "key or value outside the record");
        enc = malloc(n);
        FUZZ_CHECK(enc != NULL, "out of memory");
        gw_spool_encode(enc, r.key, r.keylen, r.value, r.len);
        FUZZ_CHECK(memcmp(enc, rec, n) == 0, "the writer encodes the record differently");
        free(enc);
        off += n;
        (*records)++;
    }
    valid = gw_spool_valid_prefix(data, size, &again);
    FUZZ_CHECK(valid == off && again == *records, "valid prefix differs from the record walk");
    FUZZ_CHECK(gw_spool_valid_prefix(data, valid, &again) == valid && again == *records,
               "reading the valid prefix again differs");
    return valid;
}

struct appends {
    size_t n;
    char key[MAX_APPENDS][MAX_KEY + 1];
    const uint8_t *value[MAX_APPENDS];
    size_t len[MAX_APPENDS];
};

/* Records to append: the input split at '\n' (at most MAX_APPENDS pieces); the key is a piece's
 * text up to its first NUL (at most MAX_KEY bytes), the value the whole piece. */
static void take_appends(const uint8_t *data, size_t size, struct appends *a)
{
    size_t start = 0;

    a->n = 0;
    while (a->n < MAX_APPENDS && start <= size) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t plen = nl != NULL ? (size_t)(nl - (data + start)) : size - start;
        size_t klen = 0;

        while (klen < plen && klen < MAX_KEY && data[start + klen] != '\0') {
            klen++;
        }
        memcpy(a->key[a->n], data + start, klen);
        a->key[a->n][klen] = '\0';
        a->value[a->n] = data + start;
        a->len[a->n] = plen;
        a->n++;
        if (nl == NULL) {
            break;
        }
        start += plen + 1;
    }
}

static void on_done(void *opaque, bool durable)
{
    size_t *count = opaque;

    FUZZ_CHECK(durable, "an append to the spool was not made durable");
    (*count)++;
}

static struct gw_spool *open_spool(struct gw_spool_stats *st)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = gw_spool_open(spool_dir, (size_t)1 << 30, &err);

    FUZZ_CHECK(sp != NULL, "gw_spool_open failed");
    gw_spool_stats(sp, st);
    return sp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t empty[1];
    const uint8_t *in = size > 0 ? data : empty;
    struct gw_spool_stats st, st2;
    struct gw_spool *sp;
    struct appends a;
    char path[512];
    struct stat fst;
    uint64_t records;
    size_t valid, done = 0, disk_len, off;
    uint8_t *disk;
    bool damaged;
    FILE *f;

    valid = check_reader(in, size, &records);
#ifndef FUZZ_REPLAY
    if (gw_spool_crc32(0, in, size) % FILE_EVERY != 0) {
        return 0;
    }
#endif

    make_dir_once();
    clear_dir();
    path_of(SEG_FIRST, path, sizeof(path));
    f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL && fwrite(in, 1, size, f) == size && fclose(f) == 0,
               "cannot write the segment file");

    damaged = valid < size && intact_after(in, size, valid + 1);
    sp = open_spool(&st);
    FUZZ_CHECK(st.recovered == records && st.records == records, "recovery counted differently");
    FUZZ_CHECK(st.bytes == valid, "recovery kept a different length");
    FUZZ_CHECK(st.damaged == (damaged ? 1u : 0u), "damage counted wrongly");
    FUZZ_CHECK(st.torn == (valid < size && !damaged ? 1u : 0u), "torn tail counted wrongly");
    if (damaged) {
        char aside[512];
        path_of("damaged-0000000000000001.spool", aside, sizeof(aside));
        if (records > 0) {
            FUZZ_CHECK(stat(path, &fst) == 0 && (size_t)fst.st_size == size,
                       "recovery cut or changed a damaged segment");
            FUZZ_CHECK(stat(aside, &fst) != 0, "a damaged segment was set aside before replay");
        } else {
            FUZZ_CHECK(stat(path, &fst) != 0, "a damaged segment without a record was kept");
            FUZZ_CHECK(stat(aside, &fst) == 0 && (size_t)fst.st_size == size,
                       "a damaged segment without a record was not set aside whole");
        }
    } else if (records > 0) {
        FUZZ_CHECK(stat(path, &fst) == 0 && (size_t)fst.st_size == valid,
                   "recovery did not cut the segment to its valid prefix");
    } else {
        FUZZ_CHECK(stat(path, &fst) != 0, "a segment without a record was kept");
    }

    take_appends(in, size, &a);
    for (size_t i = 0; i < a.n; i++) {
        struct cm_err err = {{0}};
        FUZZ_CHECK(gw_spool_append(sp, a.key[i], a.value[i], a.len[i], on_done, &done, &err) ==
                       CM_OK,
                   "gw_spool_append refused a record");
    }
    gw_spool_sync(sp, 10000);
    gw_spool_close(sp);
    FUZZ_CHECK(done == a.n, "not every append was completed");

    sp = open_spool(&st2);
    FUZZ_CHECK(st2.torn == 0, "a second recovery found a torn tail");
    FUZZ_CHECK(st2.damaged == (damaged && records > 0 ? 1u : 0u),
               "a second recovery saw the damage differently");
    FUZZ_CHECK(st2.recovered == records + a.n, "records lost or added between two opens");
    gw_spool_close(sp);

    disk = read_segments(&disk_len, damaged && records > 0, valid);
    FUZZ_CHECK(disk_len >= valid && (valid == 0 || memcmp(disk, in, valid) == 0),
               "the recovered records changed on disk");
    off = valid;
    for (size_t i = 0; i < a.n; i++) {
        struct gw_spool_record r;
        size_t n = gw_spool_record_at(disk + off, disk_len - off, &r);
        FUZZ_CHECK(n > 0, "an appended record is missing");
        FUZZ_CHECK(r.keylen == strlen(a.key[i]) && memcmp(r.key, a.key[i], r.keylen) == 0 &&
                       r.len == a.len[i] &&
                       (r.len == 0 || memcmp(r.value, a.value[i], r.len) == 0),
                   "an appended record reads back differently");
        off += n;
    }
    FUZZ_CHECK(off == disk_len, "more records on disk than were appended");
    free(disk);
    return 0;
}
