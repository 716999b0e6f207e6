/* The gateway spool under I/O faults the real disk cannot produce on demand. This binary is
 * linked with -Wl,--wrap for openat, fstat, read, write, fdatasync, fsync, ftruncate, unlinkat,
 * fdopendir and pthread_create: each __wrap_ fails (or delays) the call when a test armed it and
 * otherwise calls the real one. Faults on file descriptors only hit the spool's segment files
 * (those the wrapped openat returned), never stderr or Check's pipes. Each case asserts what the
 * spool promises: an append is answered durable only once written and synced, a record is never
 * dropped because of a read error, a failed write that cannot be cut off is not replayed, and
 * the replayer retries until every record of a segment is delivered. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cm/log.h"
#include "gw_spool.h"
#include "gw_test_dir.h"
#include "../check_run.h"

/* ---- fault injection ---- */

enum fault_op {
    F_OPEN_READ,   /* openat of a segment for reading */
    F_OPEN_CREATE, /* openat creating a new segment */
    F_FSTAT,
    F_READ,
    F_WRITE,
    F_FDATASYNC,
    F_FSYNC,
    F_FTRUNCATE,
    F_UNLINKAT,
    F_RENAMEAT,   /* setting a damaged segment aside */
    F_FDOPENDIR,
    F_PTHREAD_CREATE,
    F_COUNT
};

struct fault {
    int fail;     /* fail this many calls */
    int err;      /* errno of a failed call */
    long delay_ms; /* instead of failing: delay this many calls by delay_ms */
    int calls;    /* calls seen (all, armed or not) */
};

static pthread_mutex_t flock_ = PTHREAD_MUTEX_INITIALIZER;
static struct fault faults[F_COUNT];
static atomic_bool seg_fd[1024]; /* fds of segment files */

static void arm(enum fault_op op, int fail, int err)
{
    pthread_mutex_lock(&flock_);
    faults[op].fail = fail;
    faults[op].err = err;
    pthread_mutex_unlock(&flock_);
}

static void arm_delay(enum fault_op op, int calls, long ms)
{
    pthread_mutex_lock(&flock_);
    faults[op].fail = calls;
    faults[op].err = 0;
    faults[op].delay_ms = ms;
    pthread_mutex_unlock(&flock_);
}

static int calls(enum fault_op op)
{
    int n;

    pthread_mutex_lock(&flock_);
    n = faults[op].calls;
    pthread_mutex_unlock(&flock_);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* 0: call the real function; else the errno to fail with. */
static int hit(enum fault_op op)
{
    int e = 0;
    long delay = 0;

    pthread_mutex_lock(&flock_);
    faults[op].calls++;
    if (faults[op].fail > 0) {
        faults[op].fail--;
        if (faults[op].delay_ms > 0) {
            delay = faults[op].delay_ms;
        } else {
            e = faults[op].err;
        }
    }
    pthread_mutex_unlock(&flock_);
    if (delay > 0) {
        sleep_ms(delay);
    }
    return e;
}

static bool is_seg_fd(int fd)
{
    return fd >= 0 && fd < 1024 && atomic_load(&seg_fd[fd]);
}

int __real_openat(int dirfd, const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);
int __real_fstat(int fd, struct stat *st);
int __wrap_fstat(int fd, struct stat *st);
ssize_t __real_read(int fd, void *buf, size_t n);
ssize_t __wrap_read(int fd, void *buf, size_t n);
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __real_ftruncate(int fd, off_t len);
int __wrap_ftruncate(int fd, off_t len);
int __real_unlinkat(int dirfd, const char *path, int flags);
int __wrap_unlinkat(int dirfd, const char *path, int flags);
int __real_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __real_close(int fd);
int __wrap_close(int fd);
DIR *__real_fdopendir(int fd);
DIR *__wrap_fdopendir(int fd);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

int __wrap_openat(int dirfd, const char *path, int flags, ...)
{
    bool seg = strncmp(path, "seg-", 4) == 0;
    mode_t mode = 0;
    int e = 0;
    int fd;

    if ((flags & O_CREAT) != 0) {
        va_list ap;
        va_start(ap, flags);
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start()ed; clang 14 FP */
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (seg && (flags & O_CREAT) != 0) {
        e = hit(F_OPEN_CREATE);
    } else if (seg && (flags & O_ACCMODE) == O_RDONLY) {
        e = hit(F_OPEN_READ);
    }
    if (e != 0) {
        errno = e;
        return -1;
    }
    fd = __real_openat(dirfd, path, flags, mode);
    if (seg && fd >= 0 && fd < 1024) {
        atomic_store(&seg_fd[fd], true);
    }
    return fd;
}

int __wrap_close(int fd)
{
    if (fd >= 0 && fd < 1024) {
        atomic_store(&seg_fd[fd], false);
    }
    return __real_close(fd);
}

int __wrap_fstat(int fd, struct stat *st)
{
    int e = is_seg_fd(fd) ? hit(F_FSTAT) : 0;

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_fstat(fd, st);
}

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    int e = is_seg_fd(fd) ? hit(F_READ) : 0;

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_read(fd, buf, n);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    int e = is_seg_fd(fd) ? hit(F_WRITE) : 0;

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_write(fd, buf, n);
}

int __wrap_fdatasync(int fd)
{
    int e = is_seg_fd(fd) ? hit(F_FDATASYNC) : 0;

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_fdatasync(fd);
}

int __wrap_fsync(int fd)
{
    int e = hit(F_FSYNC);

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_ftruncate(int fd, off_t len)
{
    int e = is_seg_fd(fd) ? hit(F_FTRUNCATE) : 0;

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_ftruncate(fd, len);
}

int __wrap_unlinkat(int dirfd, const char *path, int flags)
{
    int e = strncmp(path, "seg-", 4) == 0 ? hit(F_UNLINKAT) : 0;

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_unlinkat(dirfd, path, flags);
}

int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    int e = hit(F_RENAMEAT);

    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_renameat(olddirfd, oldpath, newdirfd, newpath);
}

DIR *__wrap_fdopendir(int fd)
{
    int e = hit(F_FDOPENDIR);

    if (e != 0) {
        errno = e;
        return NULL;
    }
    return __real_fdopendir(fd);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    int e = hit(F_PTHREAD_CREATE);

    if (e != 0) {
        return e;
    }
    return __real_pthread_create(t, a, fn, arg);
}

/* ---- fixtures ---- */

static char dir[256];

static void setup(void)
{
    cm_log_init("gw-spool-fault-test");
    pthread_mutex_lock(&flock_);
    memset(faults, 0, sizeof(faults));
    pthread_mutex_unlock(&flock_);
    gw_test_mkdtemp(dir, sizeof(dir), "/tmp/gw_spool_fault.XXXXXX");
}

static void teardown(void)
{
    pthread_mutex_lock(&flock_);
    memset(faults, 0, sizeof(faults));
    pthread_mutex_unlock(&flock_);
    gw_test_rmdir(dir);
}

static pthread_mutex_t dlock = PTHREAD_MUTEX_INITIALIZER;
static int n_durable;
static int n_failed;

static void on_done(void *opaque, bool durable)
{
    (void)opaque;
    pthread_mutex_lock(&dlock);
    if (durable) {
        n_durable++;
    } else {
        n_failed++;
    }
    pthread_mutex_unlock(&dlock);
}

static void reset_done(void)
{
    pthread_mutex_lock(&dlock);
    n_durable = n_failed = 0;
    pthread_mutex_unlock(&dlock);
}

static void expect_done(int durable, int failed)
{
    pthread_mutex_lock(&dlock);
    ck_assert_int_eq(n_durable, durable);
    ck_assert_int_eq(n_failed, failed);
    pthread_mutex_unlock(&dlock);
}

static struct gw_spool *open_ok(size_t max_bytes)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = gw_spool_open(dir, max_bytes, &err);

    ck_assert_msg(sp != NULL, "gw_spool_open: %s", err.msg);
    return sp;
}

/* Append one record and wait for its completion. */
static void put(struct gw_spool *sp, const char *value)
{
    struct cm_err err = {{0}};

    ck_assert_int_eq(gw_spool_append(sp, "terra", value, strlen(value), on_done, NULL, &err),
                     CM_OK);
    gw_spool_sync(sp, 10000);
}

static uint64_t records_at_open(void)
{
    struct gw_spool_stats st;
    struct gw_spool *sp = open_ok((size_t)64 << 20);

    gw_spool_stats(sp, &st);
    gw_spool_close(sp);
    return st.records;
}

static int count_segments(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "seg-", 4) == 0) {
            n++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* Path of the one segment file (asserts there is exactly one). */
static void only_segment(char *path, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "seg-", 4) == 0) {
            snprintf(path, cap, "%s/%s", dir, e->d_name);
            n++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    ck_assert_int_eq(n, 1);
}

static off_t file_size(const char *path)
{
    struct stat st;

    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

/* A spool directory holding one segment with `n` records "v0".."v<n-1>". */
static void make_segment(int n)
{
    struct gw_spool *sp = open_ok((size_t)1 << 20);

    reset_done();
    for (int i = 0; i < n; i++) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", i);
        put(sp, v);
    }
    gw_spool_close(sp);
    expect_done(n, 0);
}

/* ---- opening ---- */

START_TEST(test_open_refusals)
{
    struct cm_err err = {{0}};
    char file[] = "/tmp/gw_spool_fault_file.XXXXXX";
    char under[300];
    int fd = mkstemp(file);
    struct gw_spool *sp;

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_ptr_null(gw_spool_open("", 1024, &err));
    ck_assert_str_eq(err.msg, "SPOOL_DIR is empty or too long");
    snprintf(under, sizeof(under), "%s/spool", file);
    ck_assert_ptr_null(gw_spool_open(under, 1024, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "SPOOL_DIR cannot be created"));
    ck_assert_ptr_null(gw_spool_open(file, 1024, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "SPOOL_DIR cannot be opened"));
    unlink(file);

    arm(F_FDOPENDIR, 1, EMFILE);
    ck_assert_ptr_null(gw_spool_open(dir, 1024, &err));
    ck_assert_str_eq(err.msg, "SPOOL_DIR cannot be listed");

    arm(F_PTHREAD_CREATE, 1, EAGAIN);
    ck_assert_ptr_null(gw_spool_open(dir, 1024, &err));
    ck_assert_str_eq(err.msg, "cannot start the spool writer thread");

    /* The lock was released by every failed open: this one succeeds. */
    sp = open_ok(1024);
    arm(F_PTHREAD_CREATE, 1, EAGAIN);
    ck_assert_int_eq(gw_spool_start_replayer(sp, NULL, NULL, NULL, &err), CM_FATAL);
    ck_assert_str_eq(err.msg, "cannot start the spool replayer thread");
    gw_spool_close(sp);
}
END_TEST

START_TEST(test_record_key_too_long)
{
    static char key[70000];
    struct cm_err err = {{0}};
    struct gw_spool *sp = open_ok((size_t)1 << 20);
    struct gw_spool_stats st;

    memset(key, 'k', sizeof(key) - 1);
    ck_assert_int_eq(gw_spool_append(sp, key, "v", 1, on_done, NULL, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "spool_record_too_large");
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 0);
    gw_spool_close(sp);
}
END_TEST

/* ---- recovery ---- */

/* Names that only look like segments are not ours: left alone, not recovered. */
START_TEST(test_recovery_skips_foreign_names)
{
    static const char *const names[] = {"seg-00000000000000ab.spool", "seg-0000000000000001.spoox"};
    char path[512];

    for (size_t i = 0; i < 2; i++) {
        FILE *f;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs("not a segment", f);
        fclose(f);
    }
    ck_assert_uint_eq(records_at_open(), 0);
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        ck_assert_int_eq(access(path, F_OK), 0);
    }
}
END_TEST

/* A segment that cannot be read at open (open, fstat or read fails) is kept on disk untouched
 * and recovered by the next open: a transient I/O error never deletes accepted records. */
START_TEST(test_recovery_read_errors_keep_segment)
{
    static const enum fault_op ops[] = {F_OPEN_READ, F_FSTAT, F_READ};
    char path[512];
    off_t size;

    make_segment(3);
    only_segment(path, sizeof(path));
    size = file_size(path);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        arm(ops[i], 1, EIO);
        ck_assert_uint_eq(records_at_open(), 0);
        ck_assert_int_eq(file_size(path), size);
    }
    /* EINTR is retried, not an error. */
    arm(F_READ, 1, EINTR);
    ck_assert_uint_eq(records_at_open(), 3);
}
END_TEST

/* A torn tail whose cut fails: the intact records are kept and counted, and the replayer reads
 * only their bytes (never the torn rest still in the file). */
START_TEST(test_torn_tail_cut_fails)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp;
    char path[512];
    FILE *f;
    off_t size;

    make_segment(2);
    only_segment(path, sizeof(path));
    f = fopen(path, "a");
    ck_assert_ptr_nonnull(f);
    fputs("ASP1 torn", f);
    fclose(f);
    size = file_size(path);
    arm(F_FTRUNCATE, 1, EIO);
    sp = open_ok((size_t)1 << 20);
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 2);
    ck_assert_uint_eq(st.torn, 1);
    ck_assert_int_eq(file_size(path), size); /* the cut failed */
    (void)err;
    gw_spool_close(sp);
    /* The fsync after a successful cut may fail too: same outcome, now cut. */
    arm(F_FSYNC, 1, EIO);
    sp = open_ok((size_t)1 << 20);
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 2);
    ck_assert_int_lt(file_size(path), size);
    gw_spool_close(sp);
}
END_TEST

/* ---- writer ---- */

/* A failed write fails its round (not durable) and gives its room back; the next round works. */
START_TEST(test_write_failure_fails_round)
{
    struct gw_spool *sp = open_ok((size_t)1 << 20);
    struct gw_spool_stats st;

    reset_done();
    arm(F_WRITE, 1, EIO);
    put(sp, "lost");
    expect_done(0, 1);
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 0);
    ck_assert_uint_eq(st.bytes, 0);
    arm(F_WRITE, 1, EINTR); /* retried */
    put(sp, "kept");
    expect_done(1, 1);
    gw_spool_close(sp);
    ck_assert_uint_eq(records_at_open(), 1);
}
END_TEST

/* The segment cannot be created, or its directory entry not synced: the round fails, the next
 * one creates a segment again. */
START_TEST(test_segment_create_failure)
{
    struct gw_spool *sp = open_ok((size_t)1 << 20);

    reset_done();
    arm(F_OPEN_CREATE, 1, ENOSPC);
    put(sp, "a");
    expect_done(0, 1);
    arm(F_FSYNC, 1, EIO);
    put(sp, "b");
    expect_done(0, 2);
    put(sp, "c");
    expect_done(1, 2);
    gw_spool_close(sp);
    ck_assert_uint_eq(records_at_open(), 1);
}
END_TEST

/* ---- replay ---- */

struct sink {
    struct gw_spool *sp;
    pthread_mutex_t lock;
    char seen[64][16];
    int n;
    int retry_first;  /* answer CM_RETRY this many times */
    int fatal_at;     /* answer CM_FATAL to the produce call with this number (1-based), 0: never */
    int produced;     /* produce calls */
};

static struct sink sink;

static enum cm_rc sink_produce(void *arg, const char *key, size_t keylen, const void *value,
                               size_t len)
{
    struct sink *s = arg;
    enum cm_rc rc = CM_OK;

    ck_assert_uint_eq(keylen, 5);
    ck_assert_int_eq(memcmp(key, "terra", 5), 0);
    pthread_mutex_lock(&s->lock);
    s->produced++;
    if (s->retry_first > 0) {
        s->retry_first--;
        rc = CM_RETRY;
    } else if (s->produced == s->fatal_at) {
        rc = CM_FATAL;
    } else if (s->n < 64 && len < 16) {
        memcpy(s->seen[s->n], value, len);
        s->seen[s->n][len] = '\0';
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == CM_OK) {
        gw_spool_replay_report(s->sp, true);
    }
    return rc;
}

static bool sink_ready(void *arg)
{
    (void)arg;
    return true;
}

static void sink_start(struct gw_spool *sp, int retry_first, int fatal_at)
{
    struct cm_err err = {{0}};

    memset(&sink, 0, sizeof(sink));
    pthread_mutex_init(&sink.lock, NULL);
    sink.sp = sp;
    sink.retry_first = retry_first;
    sink.fatal_at = fatal_at;
    ck_assert_int_eq(gw_spool_start_replayer(sp, sink_produce, sink_ready, &sink, &err), CM_OK);
    /* Starting twice keeps the one replayer. */
    ck_assert_int_eq(gw_spool_start_replayer(sp, sink_produce, sink_ready, &sink, &err), CM_OK);
}

static int sink_seen(void)
{
    int n;

    pthread_mutex_lock(&sink.lock);
    n = sink.n;
    pthread_mutex_unlock(&sink.lock);
    return n;
}

static void wait_drained(struct gw_spool *sp)
{
    for (int i = 0; i < 1000 && gw_spool_backlog(sp); i++) {
        sleep_ms(20);
    }
    ck_assert(!gw_spool_backlog(sp));
}

/* A write that failed and could not be cut off stays in the file, but the segment is sealed at
 * its valid length: the replayer sends the records before it, never the failed one. */
START_TEST(test_failed_write_not_replayed)
{
    struct gw_spool *sp = open_ok((size_t)1 << 20);

    reset_done();
    put(sp, "A");
    arm(F_FDATASYNC, 1, EIO);
    arm(F_FTRUNCATE, 1, EIO);
    put(sp, "B");
    expect_done(1, 1);
    put(sp, "C"); /* a new segment */
    expect_done(2, 1);
    ck_assert_int_eq(count_segments(), 2);
    sink_start(sp, 0, 0);
    wait_drained(sp);
    ck_assert_int_eq(sink_seen(), 2);
    ck_assert_str_eq(sink.seen[0], "A");
    ck_assert_str_eq(sink.seen[1], "C");
    ck_assert_int_eq(count_segments(), 0);
    gw_spool_close(sp);
}
END_TEST

/* A failed first round with an uncuttable segment leaves an empty segment: it is removed. */
START_TEST(test_failed_first_round_removes_empty_segment)
{
    struct gw_spool *sp = open_ok((size_t)1 << 20);

    reset_done();
    arm(F_WRITE, 1, EIO);
    arm(F_FTRUNCATE, 1, EIO);
    put(sp, "lost");
    expect_done(0, 1);
    ck_assert_int_eq(count_segments(), 0);
    put(sp, "kept");
    expect_done(1, 1);
    gw_spool_close(sp);
    ck_assert_uint_eq(records_at_open(), 1);
}
END_TEST

/* Produce answers "retry" (queue full) then one record cannot be enqueued at all: the segment is
 * replayed again from its start and deleted only once every record was delivered. */
START_TEST(test_replay_retry_and_refusal)
{
    struct gw_spool *sp = open_ok((size_t)1 << 20);

    reset_done();
    put(sp, "r1");
    put(sp, "r2");
    sink_start(sp, 2, 4); /* calls 1-2 retry, 3 = r1 ok, 4 = r2 refused */
    wait_drained(sp);
    ck_assert_int_eq(sink_seen(), 3);
    ck_assert_str_eq(sink.seen[0], "r1");
    ck_assert_str_eq(sink.seen[1], "r1");
    ck_assert_str_eq(sink.seen[2], "r2");
    ck_assert_int_eq(count_segments(), 0);
    gw_spool_close(sp);
}
END_TEST

/* A segment replayed whose file cannot be removed: the spool still counts it as drained (the
 * file is replayed again after a restart; event_id absorbs the duplicates). */
START_TEST(test_replay_unlink_failure)
{
    struct gw_spool *sp;

    make_segment(2);
    sp = open_ok((size_t)1 << 20);
    arm(F_UNLINKAT, 1, EACCES);
    sink_start(sp, 0, 0);
    wait_drained(sp);
    ck_assert_int_eq(sink_seen(), 2);
    ck_assert_int_eq(count_segments(), 1);
    gw_spool_close(sp);
    ck_assert_uint_eq(records_at_open(), 2);
}
END_TEST

/* The replayer cannot read a segment once: it backs off and reads it again later. */
START_TEST(test_replay_read_failure_backs_off)
{
    struct gw_spool *sp;

    make_segment(1);
    sp = open_ok((size_t)1 << 20);
    arm(F_OPEN_READ, 1, EIO);
    sink_start(sp, 0, 0);
    wait_drained(sp);
    ck_assert_int_eq(sink_seen(), 1);
    ck_assert_str_eq(sink.seen[0], "v0");
    ck_assert_int_ge(calls(F_OPEN_READ), 2);
    gw_spool_close(sp);
}
END_TEST

/* A spool opened on a segment of two records whose second one is then damaged on disk (after
 * recovery); the segment's path in path[0..cap). */
static struct gw_spool *open_then_damage_second(char *path, size_t cap)
{
    struct gw_spool *sp;
    int fd;

    make_segment(2);
    sp = open_ok((size_t)1 << 20);
    only_segment(path, cap);
    fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    /* Second record: 12 header + 2 + 5 + 2 bytes after the first; damage its magic. */
    ck_assert_int_eq(pwrite(fd, "XXXX", 4, GW_SPOOL_RECORD_OVERHEAD + 5 + 2), 4);
    close(fd);
    return sp;
}

/* A record damaged on disk after recovery: the records before it are sent once, and the segment
 * (with the record behind the damage) is set aside as damaged-<seq>.spool, not deleted and not
 * retried forever. */
START_TEST(test_replay_corrupt_record_sets_segment_aside)
{
    struct gw_spool *sp;
    struct gw_spool_stats st;
    char path[512], aside[512];
    struct stat sb;

    sp = open_then_damage_second(path, sizeof(path));
    sink_start(sp, 0, 0);
    wait_drained(sp);
    ck_assert_int_eq(sink_seen(), 1);
    ck_assert_str_eq(sink.seen[0], "v0");
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 0);
    ck_assert_uint_eq(st.damaged, 1);
    ck_assert_int_eq(count_segments(), 0);
    snprintf(aside, sizeof(aside), "%s/damaged-%s", dir, strrchr(path, '/') + 1 + 4);
    ck_assert_msg(stat(aside, &sb) == 0, "%s", aside);
    gw_spool_close(sp);
}
END_TEST

/* The damaged segment cannot be renamed: it stays (nothing deleted) and is tried again. */
START_TEST(test_set_aside_fails_keeps_segment)
{
    struct gw_spool *sp;
    struct gw_spool_stats st;
    char path[512];

    sp = open_then_damage_second(path, sizeof(path));
    arm(F_RENAMEAT, 1000000, EIO);
    sink_start(sp, 0, 0);
    for (int i = 0; i < 500 && sink_seen() < 2; i++) {
        sleep_ms(20);
    }
    ck_assert_int_ge(sink_seen(), 2); /* v0 sent on each attempt */
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 2);
    ck_assert_int_eq(count_segments(), 1);
    gw_spool_close(sp);
}
END_TEST

/* ---- rotation and sync ---- */

/* Past 8 MiB the active segment is sealed and the next round opens a new one. */
START_TEST(test_segment_rotation)
{
    static char big[(size_t)1 << 20];
    struct cm_err err = {{0}};
    struct gw_spool *sp = open_ok((size_t)32 << 20);

    reset_done();
    memset(big, 'b', sizeof(big));
    for (int i = 0; i < 9; i++) {
        ck_assert_int_eq(gw_spool_append(sp, "terra", big, sizeof(big), on_done, NULL, &err),
                         CM_OK);
        gw_spool_sync(sp, 20000);
    }
    expect_done(9, 0);
    ck_assert_int_eq(count_segments(), 2);
    gw_spool_close(sp);
    ck_assert_uint_eq(records_at_open(), 9);
}
END_TEST

/* gw_spool_sync is bounded: a slow fdatasync outlasts it, and the append completes later. */
START_TEST(test_sync_is_bounded)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = open_ok((size_t)1 << 20);

    reset_done();
    arm_delay(F_FDATASYNC, 1, 1500);
    ck_assert_int_eq(gw_spool_append(sp, "terra", "slow", 4, on_done, NULL, &err), CM_OK);
    gw_spool_sync(sp, 999);
    expect_done(0, 0);
    gw_spool_sync(sp, 20000);
    expect_done(1, 0);
    gw_spool_close(sp);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gw_spool_fault");
    TCase *open_c = tcase_create("open");
    TCase *rec = tcase_create("recovery");
    TCase *wr = tcase_create("writer");
    TCase *rp = tcase_create("replay");
    TCase *all[] = {open_c, rec, wr, rp};

    check_add_cases(s, all, sizeof(all) / sizeof(all[0]), setup, teardown, 120);
    tcase_add_test(open_c, test_open_refusals);
    tcase_add_test(open_c, test_record_key_too_long);
    tcase_add_test(rec, test_recovery_skips_foreign_names);
    tcase_add_test(rec, test_recovery_read_errors_keep_segment);
    tcase_add_test(rec, test_torn_tail_cut_fails);
    tcase_add_test(wr, test_write_failure_fails_round);
    tcase_add_test(wr, test_segment_create_failure);
    tcase_add_test(wr, test_failed_first_round_removes_empty_segment);
    tcase_add_test(wr, test_segment_rotation);
    tcase_add_test(wr, test_sync_is_bounded);
    tcase_add_test(rp, test_failed_write_not_replayed);
    tcase_add_test(rp, test_replay_retry_and_refusal);
    tcase_add_test(rp, test_replay_unlink_failure);
    tcase_add_test(rp, test_replay_read_failure_backs_off);
    tcase_add_test(rp, test_replay_corrupt_record_sets_segment_aside);
    tcase_add_test(rp, test_set_aside_fails_keeps_segment);
    return s;
}

int main(void)
{
    return check_run(suite());
}
