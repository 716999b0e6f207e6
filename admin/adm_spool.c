/* auren-admin spool: a gateway spool segment the gateway set aside as damaged-<seq>.spool
 * (gw_spool.h), for the operator who has to recover the records behind the damage.
 * - scan: walks the whole file with the gateway's own reader, record by record; where bytes do
 *   not read as a record it looks for the next intact one, so it lists the records before and
 *   after every damaged range. Each line carries the record's offset and metadata (event id,
 *   vendor, kind, received time, body size) and never a byte of its key, headers or body.
 * - replay: sends the records at the offsets the operator chose to biometric.raw.v1 with the
 *   key and value the gateway spooled, idempotent with acks=all, and waits for every delivery
 *   report. A duplicate of a record that did reach Kafka is absorbed downstream by its event id.
 * Why nothing is replayed without an offset: behind damaged bytes the reader cannot tell one of
 * our records from the bytes of a webhook body that imitate one (a body may hold anything that
 * passed its vendor's signature), so the operator compares each candidate with the segment's
 * time window and the gateway logs before choosing it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "adm.h"
#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/records.h"
#include "gw_spool.h"

#define SPOOL_FILE_MAX ((size_t)1 << 31) /* far above a segment (SPOOL_SEGMENT_BYTES) */
#define FLUSH_TIMEOUT_MS 30000

struct spool_file {
    uint8_t *buf;
    size_t len;
};

static enum cm_rc file_load(const char *path, struct spool_file *f, struct cm_err *err)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    size_t got;

    memset(f, 0, sizeof(*f));
    if (fp == NULL) {
        return cm_err_set(err, CM_INVALID, "%s: %s", path, strerror(errno));
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return cm_err_set(err, CM_INVALID, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SPOOL_FILE_MAX) {
        fclose(fp);
        return cm_err_set(err, CM_INVALID, "%s: %lld bytes is larger than any spool segment",
                          path, (long long)st.st_size);
    }
    f->len = (size_t)st.st_size;
    f->buf = cm_xmalloc(f->len > 0 ? f->len : 1);
    got = fread(f->buf, 1, f->len, fp);
    fclose(fp);
    if (got != f->len) {
        free(f->buf);
        f->buf = NULL;
        return cm_err_set(err, CM_FATAL, "%s: short read (%zu of %zu bytes)", path, got, f->len);
    }
    return CM_OK;
}

/* A string of the record fit to print: what a forged record carries could hold anything
 * (terminal escapes included), so anything but [a-z0-9_.-] prints as "?". */
static const char *printable(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 64) {
        return "?";
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' ||
              *p == '-')) {
            return "?";
        }
    }
    return s;
}

static void format_time(int64_t us, char *out, size_t outsz)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    size_t n;

    if (us < 0 || gmtime_r(&secs, &tm) == NULL ||
        (n = strftime(out, outsz, "%Y-%m-%dT%H:%M:%S", &tm)) == 0 || outsz - n < 6) {
        snprintf(out, outsz, "?");
        return;
    }
    snprintf(out + n, outsz - n, ".%03dZ", (int)((us / 1000) % 1000));
}

/* One record of the file: its line, and whether it decodes as a raw webhook (replayable). */
static bool describe(const struct gw_spool_record *r, size_t off, size_t size, bool after_damage,
                     FILE *out)
{
    struct cm_raw_webhook raw;
    struct cm_err err = { { 0 } };
    char when[40];

    memset(&raw, 0, sizeof(raw));
    if (cm_raw_webhook_decode(r->value, r->len, &raw, &err) != CM_OK) {
        fprintf(out, "record offset=%zu bytes=%zu after_damage=%s raw_webhook=no\n", off, size,
                after_damage ? "yes" : "no");
        cm_raw_webhook_fini(&raw);
        return false;
    }
    format_time(raw.received_at_us, when, sizeof(when));
    fprintf(out,
            "record offset=%zu bytes=%zu after_damage=%s raw_webhook=yes event_id=%s vendor=%s"
            " kind=%s received_at=%s body_bytes=%zu\n",
            off, size, after_damage ? "yes" : "no", printable(raw.event_id),
            printable(raw.vendor), raw.kind == CM_RAW_API_RECORD ? "api_record" : "webhook", when,
            raw.body_len);
    cm_raw_webhook_fini(&raw);
    return true;
}

enum cm_rc adm_spool_scan(const char *path, FILE *out, struct cm_err *err)
{
    struct spool_file f;
    size_t off = 0, records = 0, replayable = 0, damaged_ranges = 0, damaged_bytes = 0;
    size_t behind = 0;
    enum cm_rc rc = file_load(path, &f, err);

    if (rc != CM_OK) {
        return rc;
    }
    while (off < f.len) {
        struct gw_spool_record r;
        size_t n = gw_spool_record_at(f.buf + off, f.len - off, &r);

        if (n > 0) {
            replayable += describe(&r, off, n, damaged_ranges > 0, out) ? 1 : 0;
            behind += damaged_ranges > 0 ? 1 : 0;
            records++;
            off += n;
            continue;
        }
        size_t next = gw_spool_next_intact(f.buf, f.len, off + 1);
        fprintf(out, "unreadable offset=%zu bytes=%zu%s\n", off, next - off,
                next == f.len ? " (to the end of the file)" : "");
        damaged_ranges++;
        damaged_bytes += next - off;
        off = next;
    }
    fprintf(out,
            "spool scan: %zu bytes, %zu records (%zu decode as raw webhooks, %zu after a damaged"
            " range), %zu unreadable ranges (%zu bytes)\n",
            f.len, records, replayable, behind, damaged_ranges, damaged_bytes);
    free(f.buf);
    return CM_OK;
}

struct replay_state {
    size_t delivered;
    size_t failed;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct replay_state *st = opaque;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        st->delivered++;
    } else {
        st->failed++;
        /* the opaque points into the caller's offsets, alive until the flush returns */
        cm_log_error("spool.replay_failed", "offset=%zu err=%s", *(const size_t *)m->_private,
                     rd_kafka_err2name(m->err));
    }
}

static rd_kafka_t *new_producer(const char *brokers, struct replay_state *st, struct cm_err *err)
{
    rd_kafka_conf_t *conf = cm_kafka_conf_new(brokers, err);
    char errstr[256];
    rd_kafka_t *p;

    if (conf == NULL) {
        return NULL;
    }
    /* The gateway's own guarantees for raw records: idempotent, every in-sync replica. */
    if (cm_kafka_set(conf, "enable.idempotence", "true", err) != CM_OK ||
        cm_kafka_set(conf, "acks", "all", err) != CM_OK ||
        cm_kafka_set_default(conf, "compression.type", "lz4", err) != CM_OK ||
        cm_kafka_set_default(conf, "message.max.bytes", "33554432", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (p == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka producer: %s", errstr);
    }
    return p;
}

/* Every chosen offset must start an intact record that decodes as a raw webhook. */
static enum cm_rc check_offsets(const struct spool_file *f, const size_t *offsets, size_t n,
                                struct cm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        struct gw_spool_record r;
        struct cm_raw_webhook raw;
        struct cm_err derr = { { 0 } };
        bool ok;

        if (offsets[i] >= f->len ||
            gw_spool_record_at(f->buf + offsets[i], f->len - offsets[i], &r) == 0) {
            return cm_err_set(err, CM_INVALID,
                              "offset %zu does not start an intact record (see spool scan)",
                              offsets[i]);
        }
        memset(&raw, 0, sizeof(raw));
        ok = cm_raw_webhook_decode(r.value, r.len, &raw, &derr) == CM_OK;
        cm_raw_webhook_fini(&raw);
        if (!ok) {
            return cm_err_set(err, CM_INVALID, "offset %zu: the record is not a raw webhook",
                              offsets[i]);
        }
    }
    return CM_OK;
}

enum cm_rc adm_spool_replay(const char *brokers, const char *path, const size_t *offsets, size_t n,
                            FILE *out, struct cm_err *err)
{
    struct spool_file f;
    struct replay_state st = { 0, 0 };
    rd_kafka_t *p = NULL;
    enum cm_rc rc = file_load(path, &f, err);

    if (rc == CM_OK) {
        rc = check_offsets(&f, offsets, n, err);
    }
    if (rc == CM_OK && (p = new_producer(brokers, &st, err)) == NULL) {
        rc = CM_INVALID;
    }
    for (size_t i = 0; rc == CM_OK && i < n; i++) {
        struct gw_spool_record r;
        rd_kafka_resp_err_t e;

        (void)gw_spool_record_at(f.buf + offsets[i], f.len - offsets[i], &r);
        do {
            e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(CM_TOPIC_RAW),
                                  RD_KAFKA_V_KEY(r.key, r.keylen),
                                  RD_KAFKA_V_VALUE((void *)r.value, r.len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE((void *)&offsets[i]), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 100);
            }
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = cm_err_set(err, CM_FATAL, "produce offset %zu: %s", offsets[i],
                            rd_kafka_err2name(e));
        }
    }
    if (p != NULL) {
        rd_kafka_flush(p, FLUSH_TIMEOUT_MS);
        size_t unreported = (size_t)rd_kafka_outq_len(p);
        if (rc == CM_OK && (st.failed > 0 || st.delivered < n)) {
            rc = cm_err_set(err, CM_RETRY,
                            "%zu of %zu records not delivered (%zu failed, %zu without a report)"
                            "; run replay again for them: a delivered one is absorbed by its"
                            " event id",
                            n - st.delivered, n, st.failed, unreported);
        }
        rd_kafka_destroy(p);
    }
    if (rc == CM_OK) {
        fprintf(out, "spool replay: %zu records delivered to %s\n", st.delivered, CM_TOPIC_RAW);
    }
    free(f.buf);
    return rc;
}
