/* Fuzz target: one Avro single-object decoder of cm/records.h (cm_<record>_decode), as every
 * consumer of a Kafka topic calls it. Built once per record type with -DFUZZ_RECORD=<record>
 * (raw_webhook, biometric_event, fetch_job, dead_letter) and -DFUZZ_TYPE=<enum cm_record_type>.
 * Invariants: a value that decodes starts with the single-object marker, carries the type's
 * fingerprint (cm_records_peek_type agrees), re-encodes, and the re-encoding decodes and encodes
 * to the same bytes (a fixed point: nothing is lost or invented); a value that does not decode
 * fails with CM_INVALID and a reason. _fini() must release everything (LeakSanitizer). */
#include "cm/records.h"
#include "fuzz_util.h"

#ifndef FUZZ_RECORD
#error "build with -DFUZZ_RECORD=<record> -DFUZZ_TYPE=<enum cm_record_type>"
#endif

#define CAT3(a, b, c) a##b##c
#define FN(rec, op) CAT3(cm_, rec, op)
#define STRUCT_OF(rec) STRUCT_##rec
#define STRUCT_raw_webhook struct cm_raw_webhook
#define STRUCT_biometric_event struct cm_biometric_event
#define STRUCT_fetch_job struct cm_fetch_job
#define STRUCT_dead_letter struct cm_dead_letter
#define RECORD_T(rec) STRUCT_OF(rec)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    RECORD_T(FUZZ_RECORD) a, b;
    struct cm_buf e1, e2;
    struct cm_err err = {{0}};
    enum cm_record_type t;
    uint8_t *copy;
    enum cm_rc rc;

    if (!ready) {
        cm_records_init();
        ready = true;
    }
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    /* A heap copy of exactly `size` bytes, so reads past the value are caught. */
    copy = malloc(size > 0 ? size : 1);
    memcpy(copy, data, size);
    rc = FN(FUZZ_RECORD, _decode)(copy, size, &a, &err);
    if (rc != CM_OK) {
        FUZZ_CHECK(rc == CM_INVALID, "failure other than CM_INVALID");
        FUZZ_CHECK(err.msg[0] != '\0', "failure without a reason");
        FN(FUZZ_RECORD, _fini)(&a);
        free(copy);
        return 0;
    }
    FUZZ_CHECK(size >= 10 && copy[0] == 0xC3 && copy[1] == 0x01, "decoded without the marker");
    FUZZ_CHECK(cm_records_peek_type(copy, size, &t, &err) == CM_OK && t == FUZZ_TYPE,
               "peek_type disagrees with the decoder");
    cm_buf_init(&e1, 0);
    cm_buf_init(&e2, 0);
    FUZZ_CHECK(FN(FUZZ_RECORD, _encode)(&a, &e1, &err) == CM_OK, "decoded record not encodable");
    FUZZ_CHECK(FN(FUZZ_RECORD, _decode)(e1.data, e1.len, &b, &err) == CM_OK,
               "re-encoded record not decodable");
    FUZZ_CHECK(FN(FUZZ_RECORD, _encode)(&b, &e2, &err) == CM_OK, "second encoding failed");
    FUZZ_CHECK(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0,
               "encode(decode(x)) is not a fixed point");
    cm_buf_fini(&e1);
    cm_buf_fini(&e2);
    FN(FUZZ_RECORD, _fini)(&a);
    FN(FUZZ_RECORD, _fini)(&b);
    free(copy);
    return 0;
}
