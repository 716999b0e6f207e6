/* The gateway spool (see gw_spool.h for the format and the guarantees).
 * Locks: `io` is held by the writer while it writes and syncs a round, and by the replayer while
 * it seals the active segment; `lock` guards the queue, the segment list and the counters, and
 * is taken inside `io`, never the other way round. Completions and produce calls run with no
 * lock held. A segment's `bytes` is its valid length: the replayer never reads past it, so a
 * failed write that could not be cut off cannot hide the records written before it.
 * Logs carry segment numbers, counts and sizes only, never record contents. */
#include "gw_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cm/log.h"
#include "gw_metrics.h"

#define MAGIC 0x31505341u             /* "ASP1" little-endian */
#define HEADER_BYTES 12
#define SEGMENT_TARGET (8u << 20)     /* seal the active segment past this size */
#define REPLAY_IDLE_MS 100
#define REPLAY_BACKOFF_MIN_MS 200
#define REPLAY_BACKOFF_MAX_MS 5000
#define NAME_MAX_LEN 64

struct pending {
    struct pending *next;
    uint8_t *rec;
    size_t len;
    gw_spool_done_fn done;
    void *opaque;
};

struct segment {
    uint64_t seq;
    uint64_t bytes;   /* valid length: what the replayer reads */
    uint64_t records;
    bool damaged;     /* the file holds more than `bytes`: intact records follow bytes that are
                       * not, so it is set aside after the replay instead of being deleted */
};

struct gw_spool {
    char *dir;
    int dirfd;
    int lockfd;
    size_t max_bytes;

    pthread_mutex_t io;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* writer: work queued or stop */
    pthread_cond_t idle;  /* queue empty and no round in progress */
    struct pending *head, *tail;
    bool writing;
    bool stop;

    struct segment *segs; /* sealed, oldest first */
    size_t n_segs, cap_segs;
    uint64_t next_seq;
    int active_fd;        /* -1: none open */
    struct segment active;

    uint64_t bytes, records, torn, recovered, damaged;

    pthread_t writer;
    bool writer_running;

    pthread_t replayer;
    bool replayer_running;
    atomic_bool replay_stop;
    gw_spool_produce_fn produce;
    gw_spool_ready_fn ready;
    void *arg;
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    size_t r_outstanding;
    size_t r_failed;
};

/* ---- CRC-32 ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[i] = c;
    }
}

uint32_t gw_spool_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    }
    return ~crc;
}

/* ---- little helpers ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void seg_name(uint64_t seq, char *out, size_t outsz)
{
    snprintf(out, outsz, "seg-%016" PRIu64 ".spool", seq);
}

/* Where a damaged segment is kept for the operator: recovery never reads it again. */
static void damaged_name(uint64_t seq, char *out, size_t outsz)
{
    snprintf(out, outsz, "damaged-%016" PRIu64 ".spool", seq);
}

static bool parse_seg_name(const char *name, uint64_t *seq)
{
    char *end;
    unsigned long long v;

    if (strncmp(name, "seg-", 4) != 0 || strlen(name) != 4 + 16 + 6) {
        return false;
    }
    errno = 0;
    v = strtoull(name + 4, &end, 10);
    if (errno != 0 || end != name + 20 || strcmp(end, ".spool") != 0) {
        return false;
    }
    *seq = v;
    return true;
}

static void publish_stats(struct gw_spool *sp)
{
    cm_metric_set(gw_metrics.spool_bytes, (double)sp->bytes);
    cm_metric_set(gw_metrics.spool_records, (double)sp->records);
}

size_t gw_spool_record_at(const uint8_t *p, size_t avail, struct gw_spool_record *out)
{
    uint32_t plen;
    uint16_t kl;

    if (avail < HEADER_BYTES || get32(p) != MAGIC) {
        return 0;
    }
    plen = get32(p + 4);
    if (plen < 2 || plen > avail - HEADER_BYTES) {
        return 0;
    }
    if (gw_spool_crc32(gw_spool_crc32(0, p + 4, 4), p + HEADER_BYTES, plen) != get32(p + 8)) {
        return 0;
    }
    kl = (uint16_t)(p[HEADER_BYTES] | p[HEADER_BYTES + 1] << 8);
    if ((size_t)kl + 2 > plen) {
        return 0;
    }
    out->key = (const char *)p + HEADER_BYTES + 2;
    out->keylen = kl;
    out->value = p + HEADER_BYTES + 2 + kl;
    out->len = plen - 2 - kl;
    return HEADER_BYTES + (size_t)plen;
}

size_t gw_spool_valid_prefix(const uint8_t *buf, size_t len, uint64_t *records)
{
    struct gw_spool_record r;
    size_t off = 0, n;

    *records = 0;
    while ((n = gw_spool_record_at(buf + off, len - off, &r)) > 0) {
        off += n;
        (*records)++;
    }
    return off;
}

size_t gw_spool_next_intact(const uint8_t *buf, size_t len, size_t from)
{
    struct gw_spool_record r;

    /* candidates start with the magic's first byte ('A', little-endian); record_at checks the
     * rest of the magic before any checksum */
    for (size_t off = from; off + HEADER_BYTES <= len; off++) {
        const uint8_t *m = memchr(buf + off, (int)(MAGIC & 0xFF), len - off);
        if (m == NULL) {
            break;
        }
        off = (size_t)(m - buf);
        if (gw_spool_record_at(m, len - off, &r) > 0) {
            return off;
        }
    }
    return len;
}

void gw_spool_encode(uint8_t *out, const char *key, size_t keylen, const void *value, size_t len)
{
    size_t plen = 2 + keylen + len;

    put32(out, MAGIC);
    put32(out + 4, (uint32_t)plen);
    out[HEADER_BYTES] = (uint8_t)keylen;
    out[HEADER_BYTES + 1] = (uint8_t)(keylen >> 8);
    memcpy(out + HEADER_BYTES + 2, key, keylen);
    if (len > 0) {
        memcpy(out + HEADER_BYTES + 2 + keylen, value, len);
    }
    put32(out + 8, gw_spool_crc32(gw_spool_crc32(0, out + 4, 4), out + HEADER_BYTES, plen));
}

/* Read the first `limit` bytes of a segment (all of it when limit is 0); NULL when it cannot be
 * opened or read (a read error is never taken for the end of the file). */
static uint8_t *read_segment(struct gw_spool *sp, uint64_t seq, uint64_t limit, size_t *len)
{
    char name[NAME_MAX_LEN];
    struct stat st;
    uint8_t *buf;
    size_t want, got = 0;
    int fd;

    seg_name(seq, name, sizeof(name));
    fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    want = (size_t)st.st_size;
    if (limit != 0 && limit < want) {
        want = (size_t)limit;
    }
    buf = cm_xmalloc(want > 0 ? want : 1);
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            /* Unreadable, not short: recovery would cut (or delete) records it never saw. */
            close(fd);
            free(buf);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

/* ---- recovery ---- */

static void add_segment(struct gw_spool *sp, const struct segment *s)
{
    if (sp->n_segs == sp->cap_segs) {
        sp->cap_segs = sp->cap_segs ? sp->cap_segs * 2 : 16;
        sp->segs = cm_xrealloc(sp->segs, sp->cap_segs * sizeof(*sp->segs));
    }
    sp->segs[sp->n_segs++] = *s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Rename a damaged segment to damaged-<seq>.spool (the caller fsyncs the directory); false,
 * logged, when it cannot be (the segment then stays where it is: nothing is deleted). */
static bool set_aside(struct gw_spool *sp, uint64_t seq)
{
    char from[NAME_MAX_LEN], to[NAME_MAX_LEN];

    seg_name(seq, from, sizeof(from));
    damaged_name(seq, to, sizeof(to));
    if (renameat(sp->dirfd, from, sp->dirfd, to) != 0) {
        cm_log_error("spool.set_aside_failed", "segment=%" PRIu64 " errno=%d", seq, errno);
        return false;
    }
    cm_log_warn("spool.segment_set_aside", "segment=%" PRIu64 " file=%s", seq, to);
    return true;
}

/* Count segment `seq` as damaged after `kept` intact records (caller holds sp->lock, or is
 * recovery, which runs before the threads). */
static void count_damaged(struct gw_spool *sp, uint64_t seq, uint64_t kept)
{
    sp->damaged++;
    cm_metric_inc(gw_metrics.spool_damaged);
    cm_log_error("spool.damaged_segment", "segment=%" PRIu64 " kept_records=%" PRIu64, seq, kept);
}

/* Validate one segment left by an earlier run: keep the intact prefix, cut a torn tail. */
static void recover_segment(struct gw_spool *sp, uint64_t seq)
{
    char name[NAME_MAX_LEN];
    struct segment s = {.seq = seq};
    size_t len = 0, off = 0;
    uint8_t *buf = read_segment(sp, seq, 0, &len);

    seg_name(seq, name, sizeof(name));
    if (buf == NULL) {
        cm_log_warn("spool.segment_unreadable", "segment=%" PRIu64, seq);
        return;
    }
    off = gw_spool_valid_prefix(buf, len, &s.records);
    s.bytes = off;
    if (off < len && gw_spool_next_intact(buf, len, off + 1) < len) {
        /* Not a torn write (that would end the file): bytes changed after they were made
         * durable. Cutting here would delete the intact records behind them, and reading past
         * them could take a record a payload carries for one of ours, so the file stays whole:
         * its valid prefix is replayed, then it is set aside for the operator. */
        s.damaged = true;
        count_damaged(sp, seq, s.records);
    } else if (off < len) {
        int fd = openat(sp->dirfd, name, O_WRONLY | O_CLOEXEC);
        sp->torn++;
        cm_metric_inc(gw_metrics.spool_torn);
        cm_log_warn("spool.torn_tail", "segment=%" PRIu64 " kept_records=%" PRIu64
                    " cut_bytes=%zu", seq, s.records, len - off);
        if (fd >= 0) {
            if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
                cm_log_warn("spool.truncate_failed", "segment=%" PRIu64 " errno=%d", seq, errno);
            }
            close(fd);
        }
    }
    free(buf);
    if (s.records == 0) {
        if (!s.damaged) {
            unlinkat(sp->dirfd, name, 0);
        } else if (!set_aside(sp, seq)) {
            add_segment(sp, &s); /* kept, and set aside once the replayer gets to it */
        }
        return;
    }
    add_segment(sp, &s);
    sp->bytes += s.bytes;
    sp->records += s.records;
    sp->recovered += s.records;
}

static enum cm_rc recover(struct gw_spool *sp, struct cm_err *err)
{
    int fd = dup(sp->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;

    if (d == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return cm_err_set(err, CM_FATAL, "SPOOL_DIR cannot be listed");
    }
    while ((e = readdir(d)) != NULL) {
        uint64_t seq;
        if (!parse_seg_name(e->d_name, &seq)) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            seqs = cm_xrealloc(seqs, cap * sizeof(*seqs));
        }
        seqs[n++] = seq;
    }
    closedir(d);
    if (n > 0) {
        qsort(seqs, n, sizeof(*seqs), cmp_u64);
    }
    for (size_t i = 0; i < n; i++) {
        recover_segment(sp, seqs[i]);
        if (seqs[i] >= sp->next_seq) {
            sp->next_seq = seqs[i] + 1;
        }
    }
    free(seqs);
    fsync(sp->dirfd);
    if (sp->recovered > 0 || sp->torn > 0) {
        cm_log_info("spool.recovered", "segments=%zu records=%" PRIu64 " bytes=%" PRIu64
                    " torn=%" PRIu64, sp->n_segs, sp->records, sp->bytes, sp->torn);
    }
    return CM_OK;
}

/* ---- writer ---- */

/* Caller holds io and lock. */
static void seal_active(struct gw_spool *sp)
{
    if (sp->active_fd < 0) {
        return;
    }
    close(sp->active_fd);
    sp->active_fd = -1;
    if (sp->active.records > 0) {
        add_segment(sp, &sp->active);
    } else {
        char name[NAME_MAX_LEN];
        seg_name(sp->active.seq, name, sizeof(name));
        unlinkat(sp->dirfd, name, 0);
    }
    memset(&sp->active, 0, sizeof(sp->active));
}

static bool write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Write one round and make it durable. Caller holds io (not lock). */
static bool write_round(struct gw_spool *sp, struct pending *batch, uint64_t *nrec,
                        uint64_t *nbytes)
{
    uint64_t start;
    bool ok = true;

    *nrec = 0;
    *nbytes = 0;
    if (sp->active_fd < 0) {
        char name[NAME_MAX_LEN];
        int fd;

        pthread_mutex_lock(&sp->lock);
        sp->active.seq = sp->next_seq++;
        pthread_mutex_unlock(&sp->lock);
        seg_name(sp->active.seq, name, sizeof(name));
        fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || fsync(sp->dirfd) != 0) {
            cm_log_error("spool.open_failed", "segment=%" PRIu64 " errno=%d", sp->active.seq,
                         errno);
            if (fd >= 0) {
                close(fd);
            }
            return false;
        }
        sp->active_fd = fd;
        sp->active.bytes = 0;
        sp->active.records = 0;
    }
    start = sp->active.bytes;
    for (struct pending *p = batch; p != NULL && ok; p = p->next) {
        ok = write_all(sp->active_fd, p->rec, p->len);
        *nrec += 1;
        *nbytes += p->len;
    }
    if (ok) {
        ok = fdatasync(sp->active_fd) == 0;
    }
    if (!ok) {
        cm_log_error("spool.write_failed", "segment=%" PRIu64 " errno=%d", sp->active.seq, errno);
        if (ftruncate(sp->active_fd, (off_t)start) != 0) {
            /* the segment keeps its valid length; nothing more is appended to it */
            pthread_mutex_lock(&sp->lock);
            seal_active(sp);
            pthread_mutex_unlock(&sp->lock);
        }
        return false;
    }
    pthread_mutex_lock(&sp->lock);
    sp->active.bytes += *nbytes;
    sp->active.records += *nrec;
    if (sp->active.bytes >= SEGMENT_TARGET) {
        seal_active(sp);
    }
    pthread_mutex_unlock(&sp->lock);
    return true;
}

static void *writer_main(void *arg)
{
    struct gw_spool *sp = arg;

    pthread_mutex_lock(&sp->lock);
    for (;;) {
        struct pending *batch;
        uint64_t nrec = 0, nbytes = 0, qbytes = 0, qrec = 0;
        bool ok;

        while (sp->head == NULL && !sp->stop) {
            pthread_cond_wait(&sp->wake, &sp->lock);
        }
        if (sp->head == NULL) {
            break;
        }
        batch = sp->head;
        sp->head = sp->tail = NULL;
        sp->writing = true;
        pthread_mutex_unlock(&sp->lock);

        pthread_mutex_lock(&sp->io);
        ok = write_round(sp, batch, &nrec, &nbytes);
        pthread_mutex_unlock(&sp->io);

        for (struct pending *p = batch; p != NULL; p = p->next) {
            qbytes += p->len;
            qrec++;
        }
        pthread_mutex_lock(&sp->lock);
        if (!ok) {
            sp->bytes -= qbytes;
            sp->records -= qrec;
        }
        publish_stats(sp);
        pthread_mutex_unlock(&sp->lock);
        cm_metric_add(gw_metrics.spool_appends, (double)qrec, ok ? "written" : "failed");
        while (batch != NULL) {
            struct pending *p = batch;
            batch = p->next;
            p->done(p->opaque, ok);
            free(p->rec);
            free(p);
        }
        pthread_mutex_lock(&sp->lock);
        sp->writing = false;
        if (sp->head == NULL) {
            pthread_cond_broadcast(&sp->idle);
        }
    }
    sp->writing = false;
    pthread_cond_broadcast(&sp->idle);
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* ---- public: open, append ---- */

static enum cm_rc make_dir(const char *dir, struct cm_err *err)
{
    char path[4096];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(path)) {
        return cm_err_set(err, CM_INVALID, "SPOOL_DIR is empty or too long");
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char c = path[i];
            path[i] = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                return cm_err_set(err, CM_INVALID, "SPOOL_DIR cannot be created (errno %d)",
                                  errno);
            }
            path[i] = c;
        }
    }
    return CM_OK;
}

struct gw_spool *gw_spool_open(const char *dir, size_t max_bytes, struct cm_err *err)
{
    struct gw_spool *sp = cm_xcalloc(1, sizeof(*sp));

    gw_metrics_init();
    sp->dir = cm_xstrdup(dir);
    sp->dirfd = -1;
    sp->lockfd = -1;
    sp->active_fd = -1;
    sp->max_bytes = max_bytes;
    sp->next_seq = 1;
    pthread_mutex_init(&sp->io, NULL);
    pthread_mutex_init(&sp->lock, NULL);
    pthread_cond_init(&sp->wake, NULL);
    pthread_cond_init(&sp->idle, NULL);
    pthread_mutex_init(&sp->rlock, NULL);
    pthread_cond_init(&sp->rcond, NULL);
    atomic_init(&sp->replay_stop, false);
    if (make_dir(dir, err) != CM_OK) {
        goto fail;
    }
    sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        cm_err_set(err, CM_INVALID, "SPOOL_DIR cannot be opened (errno %d)", errno);
        goto fail;
    }
    sp->lockfd = openat(sp->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lockfd < 0 || flock(sp->lockfd, LOCK_EX | LOCK_NB) != 0) {
        cm_err_set(err, CM_INVALID, "SPOOL_DIR is locked by another gateway (or not writable)");
        goto fail;
    }
    if (recover(sp, err) != CM_OK) {
        goto fail;
    }
    publish_stats(sp);
    if (pthread_create(&sp->writer, NULL, writer_main, sp) != 0) {
        cm_err_set(err, CM_FATAL, "cannot start the spool writer thread");
        goto fail;
    }
    sp->writer_running = true;
    return sp;
fail:
    gw_spool_close(sp);
    return NULL;
}

enum cm_rc gw_spool_append(struct gw_spool *sp, const char *key, const void *value, size_t len,
                           gw_spool_done_fn done, void *opaque, struct cm_err *err)
{
    size_t keylen = strlen(key);
    size_t plen = 2 + keylen + len;
    size_t total = HEADER_BYTES + plen;
    struct pending *p;

    if (keylen > UINT16_MAX || plen > UINT32_MAX) {
        cm_metric_inc(gw_metrics.spool_appends, "refused");
        return cm_err_set(err, CM_RETRY, "spool_record_too_large");
    }
    pthread_mutex_lock(&sp->lock);
    if (sp->stop || sp->bytes + total > sp->max_bytes) {
        bool full = !sp->stop;
        pthread_mutex_unlock(&sp->lock);
        cm_metric_inc(gw_metrics.spool_appends, full ? "full" : "closed");
        return cm_err_set(err, CM_RETRY, full ? "spool_full" : "spool_closed");
    }
    sp->bytes += total;
    sp->records++;
    pthread_mutex_unlock(&sp->lock);

    p = cm_xcalloc(1, sizeof(*p));
    p->rec = cm_xmalloc(total);
    p->len = total;
    p->done = done;
    p->opaque = opaque;
    gw_spool_encode(p->rec, key, keylen, value, len);

    pthread_mutex_lock(&sp->lock);
    if (sp->tail != NULL) {
        sp->tail->next = p;
    } else {
        sp->head = p;
    }
    sp->tail = p;
    pthread_cond_signal(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    return CM_OK;
}

bool gw_spool_backlog(struct gw_spool *sp)
{
    bool any;

    pthread_mutex_lock(&sp->lock);
    any = sp->records > 0;
    pthread_mutex_unlock(&sp->lock);
    return any;
}

void gw_spool_stats(struct gw_spool *sp, struct gw_spool_stats *out)
{
    pthread_mutex_lock(&sp->lock);
    out->bytes = sp->bytes;
    out->records = sp->records;
    out->torn = sp->torn;
    out->recovered = sp->recovered;
    out->damaged = sp->damaged;
    pthread_mutex_unlock(&sp->lock);
}

void gw_spool_sync(struct gw_spool *sp, int timeout_ms)
{
    struct timespec until;

    if (sp == NULL) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&sp->lock);
    while ((sp->head != NULL || sp->writing) && sp->writer_running) {
        if (pthread_cond_timedwait(&sp->idle, &sp->lock, &until) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&sp->lock);
}

/* ---- replayer ---- */

void gw_spool_replay_report(struct gw_spool *sp, bool delivered)
{
    pthread_mutex_lock(&sp->rlock);
    if (sp->r_outstanding > 0) {
        sp->r_outstanding--;
    }
    if (!delivered) {
        sp->r_failed++;
    }
    if (sp->r_outstanding == 0) {
        pthread_cond_broadcast(&sp->rcond);
    }
    pthread_mutex_unlock(&sp->rlock);
}

/* The oldest sealed segment; seals the active one when it is all that is left. */
static bool next_segment(struct gw_spool *sp, struct segment *out)
{
    bool have;

    pthread_mutex_lock(&sp->lock);
    have = sp->n_segs > 0;
    if (!have && sp->active.records > 0) {
        pthread_mutex_unlock(&sp->lock);
        pthread_mutex_lock(&sp->io);
        pthread_mutex_lock(&sp->lock);
        seal_active(sp);
        have = sp->n_segs > 0;
        pthread_mutex_unlock(&sp->io);
    }
    if (have) {
        *out = sp->segs[0];
    }
    pthread_mutex_unlock(&sp->lock);
    return have;
}

/* Produce every record of `buf` up to the first one that is not intact (then *damaged); false
 * when stopped or a produce could not be enqueued. */
static bool produce_segment(struct gw_spool *sp, const uint8_t *buf, size_t len, size_t *sent,
                            bool *damaged)
{
    size_t off = 0;

    *sent = 0;
    while (off < len) {
        struct gw_spool_record r;
        size_t n = gw_spool_record_at(buf + off, len - off, &r);
        enum cm_rc rc;

        if (n == 0) {
            /* intact at recovery, so changed on disk since: what follows is set aside */
            *damaged = true;
            return true;
        }
        pthread_mutex_lock(&sp->rlock);
        sp->r_outstanding++;
        pthread_mutex_unlock(&sp->rlock);
        while ((rc = sp->produce(sp->arg, r.key, r.keylen, r.value, r.len)) == CM_RETRY &&
               !atomic_load(&sp->replay_stop)) {
            sleep_ms(20);
        }
        if (rc != CM_OK) {
            gw_spool_replay_report(sp, false); /* no report will come for this one */
            return false;
        }
        (*sent)++;
        off += n;
    }
    return true;
}

/* Wait for every report of this attempt. Never gives up early (a late report must not be
 * counted against the next attempt); message.timeout.ms bounds the wait, or the replayer stops. */
static bool wait_reports(struct gw_spool *sp)
{
    bool ok;

    pthread_mutex_lock(&sp->rlock);
    while (sp->r_outstanding > 0 && !atomic_load(&sp->replay_stop)) {
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&sp->rcond, &sp->rlock, &until);
    }
    ok = sp->r_outstanding == 0 && sp->r_failed == 0;
    pthread_mutex_unlock(&sp->rlock);
    return ok;
}

/* The segment was replayed (`sent` records of it): delete it, or set it aside when damaged;
 * false when a damaged one could not be set aside (it stays, and is replayed again). */
static bool drop_segment(struct gw_spool *sp, const struct segment *s, size_t sent)
{
    char name[NAME_MAX_LEN];

    seg_name(s->seq, name, sizeof(name));
    if (s->damaged) {
        if (!set_aside(sp, s->seq)) {
            return false;
        }
    } else if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT) {
        cm_log_error("spool.unlink_failed", "segment=%" PRIu64 " errno=%d", s->seq, errno);
    }
    fsync(sp->dirfd);
    pthread_mutex_lock(&sp->lock);
    if (sp->n_segs > 0 && sp->segs[0].seq == s->seq) {
        memmove(sp->segs, sp->segs + 1, (sp->n_segs - 1) * sizeof(*sp->segs));
        sp->n_segs--;
        sp->bytes -= s->bytes;
        sp->records -= s->records;
    }
    publish_stats(sp);
    pthread_mutex_unlock(&sp->lock);
    cm_metric_add(gw_metrics.spool_replayed, (double)sent);
    cm_log_info("spool.segment_replayed", "segment=%" PRIu64 " records=%zu", s->seq, sent);
    return true;
}

static void *replayer_main(void *arg)
{
    struct gw_spool *sp = arg;
    long backoff = REPLAY_BACKOFF_MIN_MS;

    while (!atomic_load(&sp->replay_stop)) {
        struct segment s;
        uint8_t *buf;
        size_t len = 0, sent = 0;
        bool ok, damaged = false;

        if (!sp->ready(sp->arg) || !next_segment(sp, &s)) {
            sleep_ms(REPLAY_IDLE_MS);
            continue;
        }
        buf = read_segment(sp, s.seq, s.bytes, &len);
        if (buf == NULL || len < s.bytes) {
            cm_log_error("spool.segment_unreadable", "segment=%" PRIu64, s.seq);
            free(buf);
            sleep_ms(REPLAY_BACKOFF_MAX_MS);
            continue;
        }
        pthread_mutex_lock(&sp->rlock);
        sp->r_failed = 0;
        pthread_mutex_unlock(&sp->rlock);
        ok = produce_segment(sp, buf, len, &sent, &damaged);
        ok = wait_reports(sp) && ok;
        free(buf);
        if (ok && damaged && !s.damaged) {
            s.damaged = true;
            pthread_mutex_lock(&sp->lock);
            if (sp->n_segs > 0 && sp->segs[0].seq == s.seq) {
                sp->segs[0].damaged = true; /* a failed set-aside retries without counting again */
            }
            count_damaged(sp, s.seq, sent);
            pthread_mutex_unlock(&sp->lock);
        }
        if (ok && drop_segment(sp, &s, sent)) {
            backoff = REPLAY_BACKOFF_MIN_MS;
            continue;
        }
        cm_log_warn("spool.replay_retry", "segment=%" PRIu64 " sent=%zu backoff_ms=%ld", s.seq,
                    sent, backoff);
        for (long waited = 0; waited < backoff && !atomic_load(&sp->replay_stop); waited += 50) {
            sleep_ms(50);
        }
        backoff = backoff * 2 > REPLAY_BACKOFF_MAX_MS ? REPLAY_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

enum cm_rc gw_spool_start_replayer(struct gw_spool *sp, gw_spool_produce_fn produce,
                                   gw_spool_ready_fn ready, void *arg, struct cm_err *err)
{
    if (sp->replayer_running) {
        return CM_OK;
    }
    sp->produce = produce;
    sp->ready = ready;
    sp->arg = arg;
    atomic_store(&sp->replay_stop, false);
    if (pthread_create(&sp->replayer, NULL, replayer_main, sp) != 0) {
        return cm_err_set(err, CM_FATAL, "cannot start the spool replayer thread");
    }
    sp->replayer_running = true;
    return CM_OK;
}

void gw_spool_stop_replayer(struct gw_spool *sp)
{
    if (sp == NULL || !sp->replayer_running) {
        return;
    }
    atomic_store(&sp->replay_stop, true);
    /* wake a replayer waiting for reports; its segment stays and is replayed after restart */
    pthread_mutex_lock(&sp->rlock);
    sp->r_outstanding = 0;
    sp->r_failed++;
    pthread_cond_broadcast(&sp->rcond);
    pthread_mutex_unlock(&sp->rlock);
    pthread_join(sp->replayer, NULL);
    sp->replayer_running = false;
}

void gw_spool_close(struct gw_spool *sp)
{
    if (sp == NULL) {
        return;
    }
    gw_spool_stop_replayer(sp);
    if (sp->writer_running) {
        pthread_mutex_lock(&sp->lock);
        sp->stop = true;
        pthread_cond_signal(&sp->wake);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->writer, NULL); /* completes what was queued first */
        sp->writer_running = false;
    }
    if (sp->active_fd >= 0) {
        close(sp->active_fd);
    }
    if (sp->lockfd >= 0) {
        close(sp->lockfd); /* releases the flock */
    }
    if (sp->dirfd >= 0) {
        close(sp->dirfd);
    }
    pthread_mutex_destroy(&sp->io);
    pthread_mutex_destroy(&sp->lock);
    pthread_cond_destroy(&sp->wake);
    pthread_cond_destroy(&sp->idle);
    pthread_mutex_destroy(&sp->rlock);
    pthread_cond_destroy(&sp->rcond);
    free(sp->segs);
    free(sp->dir);
    free(sp);
}
