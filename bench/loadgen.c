/* bench-loadgen: the project's HTTP/1.1 load generator. One thread, epoll, many keep-alive
 * connections; every request is prepared before the timed window (bench/prepare.py writes them
 * signed, byte for byte, into a file this program maps), so the window measures the server only.
 *
 *   closed loop (--rate 0): each connection sends its next request as soon as the previous
 *     answer is complete; throughput is what the server sustains at that concurrency.
 *   open loop (--rate R): request i is due at start + i/R whether or not the server keeps up;
 *     its latency runs from that due time (not from when a connection was free), so a stalled
 *     server is charged for the requests it delayed (no coordinated omission).
 *
 * Latencies go into a log-linear histogram (HdrHistogram-like: 2^7 linear sub-buckets per power
 * of two, under 1% relative error). Only answers completed inside the measured window count;
 * a warm-up precedes it. Output: one JSON object on stdout. Answers must carry Content-Length
 * (libmicrohttpd does for buffer responses); "Connection: close" reopens the connection. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 7
#define SUB_COUNT (1u << SUB_BITS)
#define EXP_COUNT 40
#define HIST_SLOTS ((EXP_COUNT + 1) * SUB_COUNT)
#define RESP_BUF 8192
#define MAX_EVENTS 256

struct lg_hist {
    uint64_t counts[HIST_SLOTS];
    uint64_t total;
    uint64_t max;
    double sum;
};

struct lg_req {
    const char *data;
    size_t len;
};

struct lg_conn {
    int fd;
    bool busy;
    bool connecting;
    const struct lg_req *req;
    size_t sent;
    int64_t t0_ns;          /* latency origin: due time (open loop) or send time (closed) */
    char buf[RESP_BUF];
    size_t have;
    struct lg_conn *next_idle;
};

struct lg {
    struct sockaddr_in addr;
    int ep;
    struct lg_req *reqs;
    size_t nreqs;
    size_t next_req;
    struct lg_conn *conns;
    size_t nconns;
    struct lg_conn *idle;
    double rate;
    int64_t start_ns;
    int64_t measure_ns;     /* window start */
    int64_t end_ns;         /* window end */
    uint64_t scheduled;     /* open loop: requests made due so far */
    uint64_t sent_total;
    struct lg_hist hist;    /* every answer in the window */
    struct lg_hist hist_ok; /* 2xx answers in the window */
    uint64_t status[6];     /* by class 1xx..5xx, in the window */
    uint64_t codes[600];
    uint64_t io_errors;
    uint64_t reconnects;
    uint64_t max_backlog;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static size_t hist_index(uint64_t v)
{
    unsigned e = 0;

    while ((v >> e) >= SUB_COUNT * 2 && e + 1 < EXP_COUNT) {
        e++;
    }
    if (e == 0) {
        return (size_t)(v < 2 * SUB_COUNT ? v : 2 * SUB_COUNT - 1);
    }
    /* Exponent e covers [SUB_COUNT << e, SUB_COUNT << (e + 1)) in SUB_COUNT steps. */
    return (size_t)((e + 1) * SUB_COUNT + ((v >> e) - SUB_COUNT));
}

static uint64_t hist_value(size_t idx)
{
    size_t e;

    if (idx < 2 * SUB_COUNT) {
        return idx;
    }
    e = idx / SUB_COUNT - 1;
    /* Upper edge of the bucket: a conservative percentile. */
    return ((uint64_t)(idx % SUB_COUNT + SUB_COUNT + 1) << e) - 1;
}

static void hist_add(struct lg_hist *h, uint64_t v)
{
    size_t i = hist_index(v);

    if (i >= HIST_SLOTS) {
        i = HIST_SLOTS - 1;
    }
    h->counts[i]++;
    h->total++;
    h->sum += (double)v;
    if (v > h->max) {
        h->max = v;
    }
}

static uint64_t hist_pct(const struct lg_hist *h, double pct)
{
    uint64_t want;
    uint64_t seen = 0;

    if (h->total == 0) {
        return 0;
    }
    want = (uint64_t)((pct / 100.0) * (double)h->total + 0.999999);
    if (want == 0) {
        want = 1;
    }
    for (size_t i = 0; i < HIST_SLOTS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

static void load_requests(struct lg *lg, const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    const unsigned char *p;
    size_t off = 8;
    uint32_t n;

    if (fd < 0 || fstat(fd, &st) != 0) {
        die(path);
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        die("mmap");
    }
    close(fd);
    if (st.st_size < 8 || memcmp(p, "ALG1", 4) != 0) {
        fprintf(stderr, "loadgen: %s is not a request file (ALG1)\n", path);
        exit(2);
    }
    memcpy(&n, p + 4, 4);
    lg->reqs = calloc(n, sizeof(*lg->reqs));
    if (lg->reqs == NULL || n == 0) {
        fprintf(stderr, "loadgen: empty request file\n");
        exit(2);
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len;
        if (off + 4 > (size_t)st.st_size) {
            fprintf(stderr, "loadgen: truncated request file\n");
            exit(2);
        }
        memcpy(&len, p + off, 4);
        off += 4;
        if (off + len > (size_t)st.st_size) {
            fprintf(stderr, "loadgen: truncated request file\n");
            exit(2);
        }
        lg->reqs[i].data = (const char *)p + off;
        lg->reqs[i].len = len;
        off += len;
    }
    lg->nreqs = n;
}

static void conn_open(struct lg *lg, struct lg_conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        die("socket");
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&lg->addr, sizeof(lg->addr)) != 0 &&
        errno != EINPROGRESS) {
        die("connect");
    }
    c->connecting = true;
    c->have = 0;
    if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        die("epoll_ctl");
    }
}

static void conn_reopen(struct lg *lg, struct lg_conn *c)
{
    epoll_ctl(lg->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    lg->reconnects++;
    c->sent = 0; /* a request still owned by this connection is sent again once connected */
    conn_open(lg, c);
}

static void push_idle(struct lg *lg, struct lg_conn *c)
{
    c->busy = false;
    c->next_idle = lg->idle;
    lg->idle = c;
}

/* Write what remains of the current request; false when the socket broke. */
static bool conn_flush(struct lg_conn *c)
{
    while (c->sent < c->req->len) {
        ssize_t n = send(c->fd, c->req->data + c->sent, c->req->len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    return true;
}

static void conn_start(struct lg *lg, struct lg_conn *c, int64_t t0)
{
    c->busy = true;
    c->req = &lg->reqs[lg->next_req];
    lg->next_req = (lg->next_req + 1) % lg->nreqs;
    c->sent = 0;
    c->have = 0;
    c->t0_ns = t0;
    lg->sent_total++;
    if (!c->connecting && !conn_flush(c)) {
        lg->io_errors++;
        conn_reopen(lg, c);
    }
}

/* A complete answer in c->buf? Returns its total length and status, 0 when incomplete,
 * -1 when it cannot be parsed. */
static long parse_answer(struct lg_conn *c, int *status, bool *close_after)
{
    char *hdr_end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    size_t head;
    long clen = -1;

    if (hdr_end == NULL) {
        return c->have >= RESP_BUF ? -1 : 0;
    }
    head = (size_t)(hdr_end - c->buf) + 4;
    if (c->have < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) {
        return -1;
    }
    *status = (c->buf[9] - '0') * 100 + (c->buf[10] - '0') * 10 + (c->buf[11] - '0');
    *close_after = false;
    for (char *line = memchr(c->buf, '\n', head); line != NULL && line < hdr_end;
         line = memchr(line + 1, '\n', (size_t)(hdr_end - line))) {
        char *l = line + 1;
        if (strncasecmp(l, "content-length:", 15) == 0) {
            clen = strtol(l + 15, NULL, 10);
        } else if (strncasecmp(l, "connection:", 11) == 0) {
            char *v = l + 11;
            while (*v == ' ') {
                v++;
            }
            *close_after = strncasecmp(v, "close", 5) == 0;
        } else if (strncasecmp(l, "transfer-encoding:", 18) == 0) {
            return -1;
        }
    }
    if (clen < 0) {
        clen = 0;
    }
    if (c->have < head + (size_t)clen) {
        return 0;
    }
    return (long)(head + (size_t)clen);
}

static void record(struct lg *lg, int status, int64_t t0, int64_t t1)
{
    uint64_t us;

    if (t1 < lg->measure_ns || t1 > lg->end_ns) {
        return;
    }
    us = (uint64_t)((t1 - t0) / 1000);
    hist_add(&lg->hist, us);
    if (status >= 200 && status < 300) {
        hist_add(&lg->hist_ok, us);
    }
    if (status >= 100 && status < 600) {
        lg->status[status / 100]++;
        lg->codes[status]++;
    }
}

static void conn_readable(struct lg *lg, struct lg_conn *c)
{
    for (;;) {
        ssize_t n;
        long used;
        int status = 0;
        bool close_after = false;

        if (c->have >= RESP_BUF) {
            lg->io_errors++;
            conn_reopen(lg, c);
            return;
        }
        n = recv(c->fd, c->buf + c->have, RESP_BUF - c->have, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            if (c->busy) {
                lg->io_errors++;
                record(lg, 599, c->t0_ns, now_ns());
                push_idle(lg, c);
            }
            conn_reopen(lg, c);
            return;
        }
        if (n < 0) {
            return;
        }
        c->have += (size_t)n;
        if (!c->busy) {
            continue; /* stray bytes: ignored until the next request resets the buffer */
        }
        used = parse_answer(c, &status, &close_after);
        if (used < 0) {
            lg->io_errors++;
            push_idle(lg, c);
            conn_reopen(lg, c);
            return;
        }
        if (used > 0) {
            record(lg, status, c->t0_ns, now_ns());
            push_idle(lg, c);
            if (close_after) {
                conn_reopen(lg, c);
                return;
            }
        }
    }
}

/* Open loop: hand every due request to an idle connection. Closed loop: keep all busy. */
static void dispatch(struct lg *lg, int64_t t)
{
    if (lg->rate > 0) {
        uint64_t due = (uint64_t)((double)(t - lg->start_ns) * lg->rate / 1e9);
        uint64_t backlog;
        if (t >= lg->end_ns) {
            due = (uint64_t)((double)(lg->end_ns - lg->start_ns) * lg->rate / 1e9);
        }
        while (lg->scheduled < due && lg->idle != NULL) {
            struct lg_conn *c = lg->idle;
            int64_t due_ns = lg->start_ns + (int64_t)((double)lg->scheduled * 1e9 / lg->rate);
            lg->idle = c->next_idle;
            lg->scheduled++;
            conn_start(lg, c, due_ns);
        }
        backlog = due > lg->scheduled ? due - lg->scheduled : 0;
        if (backlog > lg->max_backlog) {
            lg->max_backlog = backlog;
        }
        return;
    }
    while (lg->idle != NULL && t < lg->end_ns) {
        struct lg_conn *c = lg->idle;
        lg->idle = c->next_idle;
        conn_start(lg, c, now_ns());
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench-loadgen --target HOST:PORT --requests FILE [--connections N]\n"
            "                     [--duration S] [--warmup S] [--rate R]\n"
            "  --rate 0 (default): closed loop at full speed; R > 0: open loop, R requests/s\n");
    exit(2);
}

static void print_hist(const char *name, const struct lg_hist *h, bool comma)
{
    printf("\"%s\":{\"count\":%" PRIu64 ",\"mean_us\":%.1f,\"p50_us\":%" PRIu64
           ",\"p90_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
           ",\"max_us\":%" PRIu64 "}%s",
           name, h->total, h->total ? h->sum / (double)h->total : 0.0, hist_pct(h, 50),
           hist_pct(h, 90), hist_pct(h, 99), hist_pct(h, 99.9), h->max, comma ? "," : "");
}

static void report(const struct lg *lg, double window_s)
{
    bool first = true;

    printf("{\"mode\":\"%s\",\"rate\":%.1f,\"connections\":%zu,\"window_s\":%.3f,",
           lg->rate > 0 ? "open" : "closed", lg->rate, lg->nconns, window_s);
    printf("\"answers\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"throughput\":%.1f,"
           "\"ok_throughput\":%.1f,",
           lg->hist.total, lg->hist_ok.total, (double)lg->hist.total / window_s,
           (double)lg->hist_ok.total / window_s);
    printf("\"codes\":{");
    for (int i = 100; i < 600; i++) {
        if (lg->codes[i] > 0) {
            printf("%s\"%d\":%" PRIu64, first ? "" : ",", i, lg->codes[i]);
            first = false;
        }
    }
    printf("},\"io_errors\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"max_backlog\":%" PRIu64
           ",\"sent\":%" PRIu64 ",",
           lg->io_errors, lg->reconnects, lg->max_backlog, lg->sent_total);
    print_hist("latency", &lg->hist, true);
    print_hist("latency_ok", &lg->hist_ok, false);
    printf("}\n");
}

int main(int argc, char **argv)
{
    static struct lg lg;
    struct epoll_event evs[MAX_EVENTS];
    const char *target = NULL;
    const char *file = NULL;
    double duration = 10;
    double warmup = 2;
    long nconns = 64;
    char host[64];
    const char *colon;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
        }
        if (strcmp(a, "--target") == 0) {
            target = v;
        } else if (strcmp(a, "--requests") == 0) {
            file = v;
        } else if (strcmp(a, "--connections") == 0) {
            nconns = strtol(v, NULL, 10);
        } else if (strcmp(a, "--duration") == 0) {
            duration = strtod(v, NULL);
        } else if (strcmp(a, "--warmup") == 0) {
            warmup = strtod(v, NULL);
        } else if (strcmp(a, "--rate") == 0) {
            lg.rate = strtod(v, NULL);
        } else {
            usage();
        }
        i++;
    }
    colon = target != NULL ? strrchr(target, ':') : NULL;
    if (colon == NULL || file == NULL || nconns < 1 || nconns > 60000 || duration <= 0 ||
        warmup < 0 || (size_t)(colon - target) >= sizeof(host)) {
        usage();
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';
    lg.addr.sin_family = AF_INET;
    lg.addr.sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
    if (inet_pton(AF_INET, host, &lg.addr.sin_addr) != 1) {
        usage();
    }
    load_requests(&lg, file);
    lg.ep = epoll_create1(EPOLL_CLOEXEC);
    if (lg.ep < 0) {
        die("epoll_create1");
    }
    lg.nconns = (size_t)nconns;
    lg.conns = calloc(lg.nconns, sizeof(*lg.conns));
    if (lg.conns == NULL) {
        die("calloc");
    }
    for (size_t i = 0; i < lg.nconns; i++) {
        conn_open(&lg, &lg.conns[i]);
        push_idle(&lg, &lg.conns[i]);
    }
    lg.start_ns = now_ns();
    lg.measure_ns = lg.start_ns + (int64_t)(warmup * 1e9);
    lg.end_ns = lg.measure_ns + (int64_t)(duration * 1e9);
    for (;;) {
        int64_t t = now_ns();
        int timeout_ms = 1;
        int n;
        bool busy = false;

        if (t >= lg.end_ns) {
            for (size_t i = 0; i < lg.nconns && !busy; i++) {
                busy = lg.conns[i].busy;
            }
            /* Answers still outstanding at the end are not waited for beyond 2 s. */
            if (!busy || t >= lg.end_ns + 2000000000LL) {
                break;
            }
        } else {
            dispatch(&lg, t);
        }
        if (lg.rate <= 0) {
            timeout_ms = 10;
        }
        n = epoll_wait(lg.ep, evs, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct lg_conn *c = evs[i].data.ptr;
            if (c->connecting && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr != 0) {
                    errno = soerr;
                    die("connect");
                }
                c->connecting = false;
            }
            if (c->busy && (evs[i].events & EPOLLOUT) && c->sent < c->req->len &&
                !conn_flush(c)) {
                lg.io_errors++;
                conn_reopen(&lg, c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                conn_readable(&lg, c);
            }
        }
    }
    report(&lg, duration);
    return 0;
}
