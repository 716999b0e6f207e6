/* auren-persister: consumes biometric.normalized.v1 and stores each BiometricEvent once in
 * PostgreSQL (biometric_events), committing Kafka offsets only after the database commit.
 * Table of contents: config, logging, codec, loop, ops server, run, teardown in reverse.
 * SIGTERM/SIGINT finish the current batch and exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/httpd.h"
#include "cm/log.h"
#include "cm/records.h"
#include "pers_cfg.h"
#include "pers_loop.h"

static struct pers_loop *volatile running;

static void on_signal(int sig)
{
    if (running != NULL) {
        pers_loop_stop(running);
    }
}

int main(int argc, char **argv)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};
    struct pers_loop *loop;
    struct cm_httpd *httpd;
    enum cm_rc rc;

    memset(&cfg, 0, sizeof(cfg));
    cm_cfg_load_or_exit("persister", pers_cfg_fields, &cfg, argc, argv);
    if (pers_cfg_check(&cfg, &err) != CM_OK) {
        fprintf(stderr, "auren-persister: config: %s\n", err.msg);
        pers_cfg_fini(&cfg);
        return 2;
    }
    cm_log_init("persister");
    cm_records_init();

    loop = pers_loop_new(&cfg, &err);
    if (loop == NULL) {
        fprintf(stderr, "auren-persister: config: %s\n", err.msg);
        pers_cfg_fini(&cfg);
        return 2;
    }
    httpd = cm_httpd_start((uint16_t)cfg.http_port, pers_loop_ready, loop, &err);
    if (httpd == NULL) {
        cm_log_error("httpd.start_failed", "port=%ld err=%s", cfg.http_port, err.msg);
        pers_loop_free(loop);
        pers_cfg_fini(&cfg);
        return 1;
    }
    running = loop;
    cm_signals_install(on_signal);

    rc = pers_loop_run(loop);

    running = NULL;
    cm_httpd_stop(httpd);
    pers_loop_free(loop);
    pers_cfg_fini(&cfg);
    return rc == CM_OK ? 0 : 1;
}
