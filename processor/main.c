/* auren-processor: consumes raw vendor webhooks from biometric.raw.v1, normalizes them into
 * BiometricEvents (biometric.normalized.v1) and fetch jobs (biometric.fetch.v1), keeps the per-user
 * Redis series current and dead-letters what it cannot handle (biometric.dlq.v1). A second thread,
 * the fetcher (proc_fetch.h, FETCHER_ENABLED), turns fetch jobs into vendor API calls whose
 * answers come back on biometric.raw.v1 as api_record.
 * main() is the table of contents: configuration, loop, ops server, run, teardown. SIGTERM/SIGINT
 * finish the current batch, close the consumer, flush the producer and exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/httpd.h"
#include "cm/log.h"
#include "cm/records.h"
#include "proc_cfg.h"
#include "proc_fetch.h"
#include "proc_loop.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    struct proc_cfg cfg = { .kafka_brokers = NULL }; /* cm_cfg_load frees STR fields first */
    struct proc_loop *loop;
    struct proc_fetcher *fetcher = NULL;
    struct cm_httpd *httpd;
    struct cm_err err = { .msg = "" };
    enum cm_rc rc;

    cm_log_init("processor");
    cm_cfg_load_or_exit("processor", proc_cfg_fields, &cfg, argc, argv);
    if (proc_cfg_check(&cfg, &err) != CM_OK) {
        fprintf(stderr, "auren-processor: config: %s\n", err.msg);
        cm_cfg_free(proc_cfg_fields, &cfg);
        return 2;
    }
    cm_records_init();
    cm_signals_install(on_signal);

    loop = proc_loop_new(&cfg, &err);
    if (loop == NULL) {
        fprintf(stderr, "auren-processor: %s\n", err.msg);
        cm_cfg_free(proc_cfg_fields, &cfg);
        return 2;
    }
    if (cfg.fetcher_enabled) {
        fetcher = proc_fetcher_new(&cfg, &err);
        if (fetcher == NULL || proc_fetcher_start(fetcher, &err) != CM_OK) {
            fprintf(stderr, "auren-processor: fetcher: %s\n", err.msg);
            proc_fetcher_free(fetcher);
            proc_loop_free(loop);
            cm_cfg_free(proc_cfg_fields, &cfg);
            return 2;
        }
    }
    httpd = cm_httpd_start((uint16_t)cfg.http_port, proc_loop_ready, loop, &err);
    if (httpd == NULL) {
        cm_log_error("httpd.failed", "port=%ld reason=%s", cfg.http_port, err.msg);
        proc_fetcher_free(fetcher);
        proc_loop_free(loop);
        cm_cfg_free(proc_cfg_fields, &cfg);
        return 1;
    }

    rc = proc_loop_run(loop, &stop_requested, &err);
    if (rc != CM_OK) {
        cm_log_error("processor.failed", "rc=%s reason=%s", cm_rc_str(rc), err.msg);
    }

    cm_httpd_stop(httpd);
    proc_fetcher_free(fetcher); /* stops and joins the thread first */
    proc_loop_free(loop);
    cm_cfg_free(proc_cfg_fields, &cfg);
    cm_log_info("processor.stopped", "rc=%s", cm_rc_str(rc));
    return rc == CM_OK ? 0 : 1;
}
