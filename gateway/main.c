/* auren-gateway: authenticate vendor webhooks, answer their handshakes, and enqueue each raw
 * request to biometric.raw.v1, answering 2xx only once Kafka has acknowledged it.
 * Signals are blocked in every thread and taken here with sigtimedwait, so shutdown runs on the
 * main thread in a fixed order (gw_server_shutdown). */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "cm/log.h"
#include "cm/records.h"
#include "gw_cfg.h"
#include "gw_server.h"

/* Wait for SIGTERM/SIGINT, or a fatal producer error. Returns the exit status. */
static int wait_for_stop(struct gw_server *srv, const sigset_t *stop)
{
    const struct timespec tick = {.tv_sec = 1, .tv_nsec = 0};

    for (;;) {
        int sig = sigtimedwait(stop, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            cm_log_info("gateway.signal", "sig=%d", sig);
            return 0;
        }
        if (gw_server_failed(srv)) {
            cm_log_error("gateway.fatal", "reason=kafka_producer_failed");
            return 1;
        }
    }
}

int main(int argc, char **argv)
{
    struct gw_cfg cfg;
    struct gw_server *srv;
    struct cm_err err = {{0}};
    sigset_t stop;
    int status;

    cm_log_init("gateway");
    gw_cfg_load_or_exit(&cfg, argc, argv);
    cm_records_init();

    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before any thread starts: all inherit it */
    signal(SIGPIPE, SIG_IGN);

    srv = gw_server_new(&cfg, NULL, &err);
    if (srv == NULL) {
        cm_log_error("gateway.start_failed", "reason=%s", err.msg);
        gw_cfg_fini(&cfg);
        return 1;
    }
    status = wait_for_stop(srv, &stop);
    gw_server_shutdown(srv);
    gw_server_free(srv);
    gw_cfg_fini(&cfg);
    return status;
}
