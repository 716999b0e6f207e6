/* The gateway spool on a real directory: appends are durable before their completion, recovery
 * keeps every intact record and cuts (and counts) a torn tail, the byte bound refuses instead of
 * evicting, one directory serves one gateway, and the replayer drains in order, deleting a
 * segment only after every one of its records was reported delivered (a failed report replays
 * the segment again). */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gw_spool.h"
#include "gw_test_dir.h"
#include "../check_run.h"

static char dir[256];

static void setup(void)
{
    gw_test_mkdtemp(dir, sizeof(dir), "/tmp/gw_spool_test.XXXXXX");
}

static void teardown(void)
{
    gw_test_rmdir(dir);
}

struct done_log {
    pthread_mutex_t lock;
    int durable;
    int failed;
};

static struct done_log dlog = {PTHREAD_MUTEX_INITIALIZER, 0, 0};

static void on_done(void *opaque, bool durable)
{
    (void)opaque;
    pthread_mutex_lock(&dlog.lock);
    if (durable) {
        dlog.durable++;
    } else {
        dlog.failed++;
    }
    pthread_mutex_unlock(&dlog.lock);
}

static void append_n(struct gw_spool *sp, int from, int n)
{
    struct cm_err err = {{0}};

    for (int i = from; i < from + n; i++) {
        char value[64];
        int len = snprintf(value, sizeof(value), "record-%04d", i);
        ck_assert_int_eq(gw_spool_append(sp, "terra", value, (size_t)len, on_done, NULL, &err),
                         CM_OK);
    }
}

/* The one segment file in `dir` (asserts there is exactly one). */
static void only_segment(char *path, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "seg-", 4) == 0) {
            snprintf(path, cap, "%s/%s", dir, e->d_name);
            n++;
        }
    }
    closedir(d);
    ck_assert_int_eq(n, 1);
}

static int count_segments(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        n += strncmp(e->d_name, "seg-", 4) == 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* A spool of n records ("record-0000"...) on disk, closed. */
static void write_records(int n)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = gw_spool_open(dir, 1 << 20, &err);

    ck_assert_msg(sp != NULL, "%s", err.msg);
    append_n(sp, 0, n);
    gw_spool_sync(sp, 5000);
    gw_spool_close(sp);
}

/* What a fresh start finds in `dir`. */
static struct gw_spool_stats reopened(size_t max_bytes)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp = gw_spool_open(dir, max_bytes, &err);

    ck_assert_msg(sp != NULL, "%s", err.msg);
    gw_spool_stats(sp, &st);
    gw_spool_close(sp);
    return st;
}

START_TEST(test_crc32_reference_value)
{
    ck_assert_uint_eq(gw_spool_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(gw_spool_crc32(gw_spool_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}
END_TEST

/* gw_spool_next_intact finds the next record whose checksum holds, past any garbage. */
START_TEST(test_next_intact)
{
    static const uint8_t magic[4] = {'A', 'S', 'P', '1'};
    uint8_t seg[64];
    size_t a = GW_SPOOL_RECORD_OVERHEAD + 5 + 3;

    memset(seg, 'A', sizeof(seg));
    memcpy(seg + 3, magic, sizeof(magic)); /* a magic without a record */
    gw_spool_encode(seg + 20, "terra", 5, "abc", 3);
    ck_assert_uint_eq(gw_spool_next_intact(seg, 20 + a, 0), 20);
    ck_assert_uint_eq(gw_spool_next_intact(seg, 20 + a, 20), 20);
    ck_assert_uint_eq(gw_spool_next_intact(seg, 20 + a, 21), 20 + a);
    ck_assert_uint_eq(gw_spool_next_intact(seg, 20 + a - 1, 0), 20 + a - 1); /* cut short */
    ck_assert_uint_eq(gw_spool_next_intact(seg, 0, 0), 0);
}
END_TEST

/* The reader on bytes (what recovery and the replayer use): records come back as encoded, and
 * the valid prefix stops at the first record that is cut short or whose checksum fails. */
START_TEST(test_reader_on_bytes)
{
    uint8_t seg[3 * 32];
    struct gw_spool_record r;
    uint64_t records;
    size_t a = GW_SPOOL_RECORD_OVERHEAD + 5 + 3, b = GW_SPOOL_RECORD_OVERHEAD + 0 + 0;

    gw_spool_encode(seg, "terra", 5, "abc", 3);
    gw_spool_encode(seg + a, "", 0, NULL, 0);
    ck_assert_uint_eq(gw_spool_record_at(seg, a + b, &r), a);
    ck_assert_uint_eq(r.keylen, 5);
    ck_assert_int_eq(memcmp(r.key, "terra", 5), 0);
    ck_assert_uint_eq(r.len, 3);
    ck_assert_int_eq(memcmp(r.value, "abc", 3), 0);
    ck_assert_uint_eq(gw_spool_valid_prefix(seg, a + b, &records), a + b);
    ck_assert_uint_eq(records, 2);
    ck_assert_uint_eq(gw_spool_valid_prefix(seg, a + b - 1, &records), a); /* torn */
    ck_assert_uint_eq(records, 1);
    ck_assert_uint_eq(gw_spool_record_at(seg, a - 1, &r), 0);
    seg[a - 1] ^= 0x01; /* a flipped value byte fails the checksum */
    ck_assert_uint_eq(gw_spool_valid_prefix(seg, a + b, &records), 0);
    ck_assert_uint_eq(records, 0);
}
END_TEST

START_TEST(test_appends_survive_reopen)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp = gw_spool_open(dir, 1 << 20, &err);

    ck_assert_msg(sp != NULL, "%s", err.msg);
    dlog.durable = dlog.failed = 0;
    append_n(sp, 0, 25);
    gw_spool_sync(sp, 5000);
    ck_assert_int_eq(dlog.durable, 25);
    ck_assert(gw_spool_backlog(sp));
    gw_spool_close(sp);

    st = reopened(1 << 20);
    ck_assert_uint_eq(st.recovered, 25);
    ck_assert_uint_eq(st.records, 25);
    ck_assert_uint_eq(st.torn, 0);
}
END_TEST

START_TEST(test_torn_tail_is_cut_and_counted)
{
    struct gw_spool_stats st;
    char path[512];
    struct stat sb;
    int fd;

    write_records(10);
    only_segment(path, sizeof(path));
    ck_assert_int_eq(stat(path, &sb), 0);
    /* a crash in the middle of the last write: its last 5 bytes never reached the disk */
    ck_assert_int_eq(truncate(path, sb.st_size - 5), 0);
    /* and a write that began but whose header is garbage */
    fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "ASP1garbage", 11), 11);
    close(fd);

    st = reopened(1 << 20);
    ck_assert_uint_eq(st.recovered, 9);
    ck_assert_uint_eq(st.torn, 1);
    /* the cut is permanent: a second start finds no torn tail */
    st = reopened(1 << 20);
    ck_assert_uint_eq(st.recovered, 9);
    ck_assert_uint_eq(st.torn, 0);
}
END_TEST

START_TEST(test_full_spool_refuses_never_evicts)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp = gw_spool_open(dir, 1 << 20, &err);
    static char big[300 * 1024];
    int accepted = 0;

    ck_assert_msg(sp != NULL, "%s", err.msg);
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 5; i++) {
        if (gw_spool_append(sp, "app", big, sizeof(big), on_done, NULL, &err) == CM_OK) {
            accepted++;
        } else {
            ck_assert_str_eq(err.msg, "spool_full");
        }
    }
    ck_assert_int_eq(accepted, 3);
    gw_spool_sync(sp, 5000);
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.records, 3);
    ck_assert_uint_le(st.bytes, 1 << 20);
    gw_spool_close(sp);
}
END_TEST

START_TEST(test_one_gateway_per_directory)
{
    struct cm_err err = {{0}};
    struct gw_spool *a = gw_spool_open(dir, 1 << 20, &err);
    struct gw_spool *b;

    ck_assert_ptr_nonnull(a);
    b = gw_spool_open(dir, 1 << 20, &err);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(err.msg, "locked"));
    gw_spool_close(a);
    b = gw_spool_open(dir, 1 << 20, &err);
    ck_assert_ptr_nonnull(b);
    gw_spool_close(b);
}
END_TEST

/* ---- replay ---- */

struct sink {
    struct gw_spool *sp;
    pthread_mutex_t lock;
    char seen[400][16];
    int n;
    int fail_first; /* report this many deliveries as failed */
    atomic_bool up;
};

static struct sink sink;

static enum cm_rc sink_produce(void *arg, const char *key, size_t keylen, const void *value,
                               size_t len)
{
    struct sink *s = arg;
    bool ok;

    ck_assert_uint_eq(keylen, 5);
    ck_assert_int_eq(memcmp(key, "terra", 5), 0);
    pthread_mutex_lock(&s->lock);
    ok = s->fail_first <= 0;
    if (!ok) {
        s->fail_first--;
    } else if (s->n < 400 && len < 16) {
        memcpy(s->seen[s->n], value, len);
        s->seen[s->n][len] = '\0';
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
    gw_spool_replay_report(s->sp, ok);
    return CM_OK;
}

static bool sink_ready(void *arg)
{
    return atomic_load(&((struct sink *)arg)->up);
}

static void sink_init(struct gw_spool *sp, int fail_first, bool up)
{
    memset(&sink, 0, sizeof(sink));
    pthread_mutex_init(&sink.lock, NULL);
    sink.sp = sp;
    sink.fail_first = fail_first;
    atomic_init(&sink.up, up);
}

static void wait_drained(struct gw_spool *sp)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000000L};

    for (int i = 0; i < 1000 && gw_spool_backlog(sp); i++) {
        nanosleep(&ts, NULL);
    }
}

START_TEST(test_replay_in_order_then_delete)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = gw_spool_open(dir, 1 << 20, &err);

    ck_assert_ptr_nonnull(sp);
    sink_init(sp, 0, false);
    append_n(sp, 0, 40);
    gw_spool_sync(sp, 5000);
    ck_assert_int_eq(gw_spool_start_replayer(sp, sink_produce, sink_ready, &sink, &err), CM_OK);
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 300000000L}, NULL);
    ck_assert_int_eq(sink.n, 0); /* nothing leaves while the broker is down */
    ck_assert_int_eq(count_segments(), 1);
    atomic_store(&sink.up, true);
    wait_drained(sp);
    ck_assert(!gw_spool_backlog(sp));
    ck_assert_int_eq(sink.n, 40);
    for (int i = 0; i < 40; i++) {
        char want[16];
        snprintf(want, sizeof(want), "record-%04d", i);
        ck_assert_str_eq(sink.seen[i], want);
    }
    ck_assert_int_eq(count_segments(), 0);
    gw_spool_close(sp);
}
END_TEST

START_TEST(test_failed_report_keeps_segment_and_replays)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = gw_spool_open(dir, 1 << 20, &err);

    ck_assert_ptr_nonnull(sp);
    sink_init(sp, 1, true);
    append_n(sp, 0, 5);
    gw_spool_sync(sp, 5000);
    ck_assert_int_eq(gw_spool_start_replayer(sp, sink_produce, sink_ready, &sink, &err), CM_OK);
    wait_drained(sp);
    ck_assert(!gw_spool_backlog(sp));
    /* first attempt: record 0 failed, 1..4 delivered; the segment was replayed whole */
    ck_assert_int_eq(sink.n, 4 + 5);
    ck_assert_str_eq(sink.seen[0], "record-0001");
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof(want), "record-%04d", i);
        ck_assert_str_eq(sink.seen[4 + i], want);
    }
    gw_spool_close(sp);
}
END_TEST

/* ---- damaged segments ---- */

#define REC_BYTES (GW_SPOOL_RECORD_OVERHEAD + 5 + 11) /* key "terra", value "record-NNNN" */

/* Flip one byte inside record `k` of the one segment in `dir`; its size in *size. */
static void damage_record(int k, off_t *size)
{
    char path[512];
    struct stat sb;
    uint8_t b;
    int fd;

    only_segment(path, sizeof(path));
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &b, 1, (off_t)k * REC_BYTES + 20), 1);
    b ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)k * REC_BYTES + 20), 1);
    ck_assert_int_eq(fstat(fd, &sb), 0);
    close(fd);
    *size = sb.st_size;
}

/* The size of dir/damaged-<seq>.spool for the only such file, or -1 when there is none. */
static off_t damaged_file_size(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    off_t size = -1;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "damaged-", 8) == 0) {
            char path[512];
            struct stat sb;
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            ck_assert_int_eq(stat(path, &sb), 0);
            size = sb.st_size;
            n++;
        }
    }
    closedir(d);
    ck_assert_int_le(n, 1);
    return size;
}

static void expect_replayed(int n)
{
    ck_assert_int_eq(sink.n, n);
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "record-%04d", i);
        ck_assert_str_eq(sink.seen[i], want);
    }
}

/* A byte changed in the middle of a durable segment is not a torn tail: recovery cuts nothing
 * (the six intact records behind it stay on disk), the four before it replay, and the whole file
 * is then kept as damaged-<seq>.spool, which a later start ignores. */
START_TEST(test_damaged_segment_is_set_aside_not_cut)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp;
    char path[512];
    struct stat sb;
    off_t size;

    write_records(10);
    damage_record(4, &size);

    st = reopened(1 << 20);
    ck_assert_uint_eq(st.recovered, 4);
    ck_assert_uint_eq(st.records, 4);
    ck_assert_uint_eq(st.bytes, 4 * REC_BYTES);
    ck_assert_uint_eq(st.torn, 0);
    ck_assert_uint_eq(st.damaged, 1);
    only_segment(path, sizeof(path));
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_size, size); /* nothing was cut */

    sp = gw_spool_open(dir, 1 << 20, &err);
    ck_assert_ptr_nonnull(sp);
    sink_init(sp, 0, true);
    ck_assert_int_eq(gw_spool_start_replayer(sp, sink_produce, sink_ready, &sink, &err), CM_OK);
    wait_drained(sp);
    ck_assert(!gw_spool_backlog(sp));
    expect_replayed(4);
    gw_spool_close(sp);
    ck_assert_int_eq(count_segments(), 0);
    ck_assert_int_eq(damaged_file_size(), size);

    st = reopened(1 << 20);
    ck_assert_uint_eq(st.recovered, 0);
    ck_assert_uint_eq(st.damaged, 0);
    ck_assert_int_eq(damaged_file_size(), size);
}
END_TEST

/* Damage at the first record: nothing to replay, set aside at once by recovery. */
START_TEST(test_damaged_first_record_is_set_aside_at_open)
{
    struct gw_spool_stats st;
    off_t size;

    write_records(3);
    damage_record(0, &size);
    st = reopened(1 << 20);
    ck_assert_uint_eq(st.recovered, 0);
    ck_assert_uint_eq(st.damaged, 1);
    ck_assert_int_eq(count_segments(), 0);
    ck_assert_int_eq(damaged_file_size(), size);
}
END_TEST

/* Bytes that change after recovery: the replayer sends the records before them, does not loop
 * on the damage, sets the segment aside and goes on with the next one. */
START_TEST(test_damage_after_recovery_does_not_block_the_replay)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp = gw_spool_open(dir, 1 << 20, &err);
    off_t size;

    ck_assert_msg(sp != NULL, "%s", err.msg);
    sink_init(sp, 0, true);
    append_n(sp, 0, 10);
    gw_spool_sync(sp, 5000);
    damage_record(7, &size);
    ck_assert_int_eq(gw_spool_start_replayer(sp, sink_produce, sink_ready, &sink, &err), CM_OK);
    wait_drained(sp);
    ck_assert(!gw_spool_backlog(sp));
    expect_replayed(7);
    gw_spool_stats(sp, &st);
    ck_assert_uint_eq(st.damaged, 1);
    ck_assert_uint_eq(st.records, 0);
    ck_assert_int_eq(damaged_file_size(), size);
    /* what comes next is replayed as usual */
    append_n(sp, 10, 2);
    gw_spool_sync(sp, 5000);
    wait_drained(sp);
    ck_assert_int_eq(sink.n, 9);
    ck_assert_str_eq(sink.seen[8], "record-0011");
    gw_spool_close(sp);
    ck_assert_int_eq(count_segments(), 0);
}
END_TEST

/* ---- group commit ---- */

struct appender {
    struct gw_spool *sp;
    int base;
};

static void *append_thread(void *arg)
{
    struct appender *a = arg;

    append_n(a->sp, a->base, 200);
    return NULL;
}

START_TEST(test_concurrent_appends_all_durable)
{
    struct cm_err err = {{0}};
    struct gw_spool *sp = gw_spool_open(dir, 8 << 20, &err);
    struct appender a[4];
    pthread_t th[4];
    struct gw_spool_stats st;

    ck_assert_ptr_nonnull(sp);
    dlog.durable = dlog.failed = 0;
    for (int i = 0; i < 4; i++) {
        a[i].sp = sp;
        a[i].base = i * 1000;
        ck_assert_int_eq(pthread_create(&th[i], NULL, append_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    gw_spool_sync(sp, 10000);
    ck_assert_int_eq(dlog.durable, 800);
    ck_assert_int_eq(dlog.failed, 0);
    gw_spool_close(sp);
    st = reopened(8 << 20);
    ck_assert_uint_eq(st.recovered, 800);
}
END_TEST

static Suite *gw_spool_suite(void)
{
    Suite *s = suite_create("gw_spool");
    TCase *disk = tcase_create("disk");
    TCase *replay = tcase_create("replay");

    tcase_add_checked_fixture(disk, setup, teardown);
    tcase_add_checked_fixture(replay, setup, teardown);
    tcase_set_timeout(replay, 60);
    tcase_set_timeout(disk, 60);
    tcase_add_test(disk, test_crc32_reference_value);
    tcase_add_test(disk, test_reader_on_bytes);
    tcase_add_test(disk, test_next_intact);
    tcase_add_test(disk, test_appends_survive_reopen);
    tcase_add_test(disk, test_torn_tail_is_cut_and_counted);
    tcase_add_test(disk, test_full_spool_refuses_never_evicts);
    tcase_add_test(disk, test_one_gateway_per_directory);
    tcase_add_test(disk, test_concurrent_appends_all_durable);
    tcase_add_test(replay, test_replay_in_order_then_delete);
    tcase_add_test(replay, test_damaged_segment_is_set_aside_not_cut);
    tcase_add_test(replay, test_damaged_first_record_is_set_aside_at_open);
    tcase_add_test(replay, test_damage_after_recovery_does_not_block_the_replay);
    tcase_add_test(replay, test_failed_report_keeps_segment_and_replays);
    suite_add_tcase(s, disk);
    suite_add_tcase(s, replay);
    return s;
}

int main(void)
{
    return check_run(gw_spool_suite());
}
