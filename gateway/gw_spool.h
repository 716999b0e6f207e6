/* The gateway's durable spool: where an accepted webhook goes when Kafka cannot take it in time
 * (broker unreachable, a failed delivery, a report that does not come), so that a 2xx still means
 * "durable". Append-only segment files seg-<seq>.spool in SPOOL_DIR; each record is
 *   magic "ASP1" | u32 length | u32 CRC-32 (of length and payload) | payload = u16 key length,
 *   key, value (all little-endian)
 * Appends from concurrent requests are queued and written by one writer thread, which makes each
 * round durable with one fdatasync before it calls any completion (group commit). The spool is
 * bounded by SPOOL_MAX_BYTES (queued plus on disk): a full spool refuses the append, it never
 * drops or evicts an accepted record. A replayer thread drains sealed segments to Kafka in order
 * and unlinks a segment only after every one of its records has a successful delivery report;
 * a segment with a failed report is replayed whole again (duplicates are absorbed downstream by
 * the deterministic event_id). Opening the spool recovers the segments left by a crash, keeps
 * every record whose checksum holds and cuts (and counts) a torn tail. A segment where intact
 * records follow bytes that are not (changed on disk after they were made durable) is never
 * cut: its valid prefix is replayed and the file is then renamed damaged-<seq>.spool for the
 * operator (counted; recovery ignores such files). The replayer does the same with a segment
 * that became damaged after recovery.
 * Ownership: gw_spool_open returns new; gw_spool_close (NULL-safe) completes queued appends,
 * stops the threads and frees. Thread: every function from any thread; completions run on the
 * writer thread, produce_fn on the replayer thread. */
#ifndef GW_SPOOL_H
#define GW_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cm/common.h"

struct gw_spool;

#define GW_SPOOL_RECORD_OVERHEAD 14 /* header (12) + key length (2) */

/* Completion of one append: durable = written and fdatasync'ed. */
typedef void (*gw_spool_done_fn)(void *opaque, bool durable);
/* Replayer: enqueue one record to Kafka. CM_OK when a report will follow (delivered to
 * gw_spool_replay_report), CM_RETRY to try again shortly. */
typedef enum cm_rc (*gw_spool_produce_fn)(void *arg, const char *key, size_t keylen,
                                          const void *value, size_t len);
/* Replayer: may records be sent now (a broker is up)? */
typedef bool (*gw_spool_ready_fn)(void *arg);

struct gw_spool_stats {
    uint64_t bytes;    /* on disk and queued */
    uint64_t records;  /* on disk and queued, not yet replayed */
    uint64_t torn;     /* records cut from torn tails at recovery */
    uint64_t recovered; /* records found at open */
    uint64_t damaged;   /* segments found damaged (set aside after their valid prefix replays) */
};

/* Open (creating) `dir`, take its lock (a second gateway on the same directory fails), recover
 * the segments in it and start the writer thread. CM_INVALID / CM_FATAL with err on failure. */
struct gw_spool *gw_spool_open(const char *dir, size_t max_bytes, struct cm_err *err);

/* Queue one record (copied). CM_OK: `done` will be called exactly once. CM_RETRY: the spool is
 * full (err "spool_full") or failed (err "spool_failed"); `done` is not called. */
enum cm_rc gw_spool_append(struct gw_spool *sp, const char *key, const void *value, size_t len,
                           gw_spool_done_fn done, void *opaque, struct cm_err *err);

/* true while records wait in the spool (new records should queue behind them). */
bool gw_spool_backlog(struct gw_spool *sp);
void gw_spool_stats(struct gw_spool *sp, struct gw_spool_stats *out);

/* Start the replayer (once). */
enum cm_rc gw_spool_start_replayer(struct gw_spool *sp, gw_spool_produce_fn produce,
                                   gw_spool_ready_fn ready, void *arg, struct cm_err *err);
/* The delivery report of one replayed record. */
void gw_spool_replay_report(struct gw_spool *sp, bool delivered);
/* Stop the replayer (waits for it; records it had in flight stay in their segment). */
void gw_spool_stop_replayer(struct gw_spool *sp);
/* Wait until every queued append is completed (bounded by timeout_ms). */
void gw_spool_sync(struct gw_spool *sp, int timeout_ms);

void gw_spool_close(struct gw_spool *sp);

/* One record as the reader sees it: pointers into the segment bytes it was read from. */
struct gw_spool_record {
    const char *key;
    size_t keylen;
    const uint8_t *value;
    size_t len;
};

/* The reader (recovery and the replayer both use it), on a segment's bytes: the record at the
 * start of p[0..avail) into *out, returning its total size; 0 when those bytes are not a
 * complete record whose checksum holds (a torn tail). Never reads past p + avail. */
size_t gw_spool_record_at(const uint8_t *p, size_t avail, struct gw_spool_record *out);
/* The length of the run of intact records at the start of buf[0..len) (what recovery keeps; the
 * rest is a torn tail) and their count in *records. */
size_t gw_spool_valid_prefix(const uint8_t *buf, size_t len, uint64_t *records);
/* The offset of the first complete record whose checksum holds at or after `from` in
 * buf[0..len), or len when there is none (recovery tells a torn tail, which has none after its
 * valid prefix, from damaged bytes, which have intact records behind them). */
size_t gw_spool_next_intact(const uint8_t *buf, size_t len, size_t from);
/* The writer's encoding of one record into out[0 .. GW_SPOOL_RECORD_OVERHEAD + keylen + len);
 * the caller ensures keylen <= UINT16_MAX and 2 + keylen + len <= UINT32_MAX. */
void gw_spool_encode(uint8_t *out, const char *key, size_t keylen, const void *value,
                     size_t len);

/* CRC-32 (IEEE 802.3, as zlib's crc32) continuing from `crc` (0 to start). */
uint32_t gw_spool_crc32(uint32_t crc, const void *data, size_t len);

#endif
