/* Process-wide Prometheus registry and text exposition.
 * Metrics are registered at start-up (single-threaded), then updated from any thread: each metric
 * has its own mutex and a small array of label series found by comparing label values. Label
 * values come from bounded sets, so the arrays stay short; a hard cap stops a bug from turning
 * into unbounded memory (extra series fold into one with the value "other"). */
#include "cm/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 4
#define MAX_SERIES 2048

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM, M_GAUGE_FN };

struct series {
    char *labels[MAX_LABELS];
    uint64_t hash; /* of the label values: compared before the strings */
    double value;
    double sum;
    uint64_t *counts; /* histogram: nbuckets + 1 (the last is +Inf) */
};

struct cm_metric {
    struct cm_metric *next;
    char *name;
    char *help;
    enum mtype type;
    int nlabels;
    char *label_names[MAX_LABELS];
    double *buckets;
    size_t nbuckets;
    double (*fn)(void *);
    void *fn_arg;
    pthread_mutex_t lock;
    struct series *series;
    size_t nseries, capseries;
    size_t last;              /* index of the series found last: tried first */
};

static struct cm_metric *registry_head;
static struct cm_metric **registry_tail = &registry_head;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

const double cm_metric_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t cm_metric_latency_nbuckets = CM_ARRAY_LEN(cm_metric_latency_buckets);

static struct cm_metric *metric_new(const char *name, const char *help, enum mtype type, int nlabels,
                                    va_list *ap)
{
    struct cm_metric *m = cm_xcalloc(1, sizeof(*m));

    cm_assert(strncmp(name, "auren_", 6) == 0);
    cm_assert(nlabels >= 0 && nlabels <= MAX_LABELS);
    m->name = cm_xstrdup(name);
    m->help = cm_xstrdup(help);
    m->type = type;
    m->nlabels = nlabels;
    for (int i = 0; i < nlabels; i++) {
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): caller va_start()s; FP */
        m->label_names[i] = cm_xstrdup(va_arg(*ap, const char *));
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_lock(&registry_lock);
    *registry_tail = m;
    registry_tail = &m->next;
    pthread_mutex_unlock(&registry_lock);
    return m;
}

struct cm_metric *cm_metric_counter(const char *name, const char *help, int nlabels, ...)
{
    va_list ap;
    struct cm_metric *m;

    va_start(ap, nlabels);
    m = metric_new(name, help, M_COUNTER, nlabels, &ap);
    va_end(ap);
    return m;
}

struct cm_metric *cm_metric_gauge(const char *name, const char *help, int nlabels, ...)
{
    va_list ap;
    struct cm_metric *m;

    va_start(ap, nlabels);
    m = metric_new(name, help, M_GAUGE, nlabels, &ap);
    va_end(ap);
    return m;
}

struct cm_metric *cm_metric_histogram(const char *name, const char *help, const double *buckets,
                                      size_t nbuckets, int nlabels, ...)
{
    va_list ap;
    struct cm_metric *m;

    va_start(ap, nlabels);
    m = metric_new(name, help, M_HISTOGRAM, nlabels, &ap);
    va_end(ap);
    m->buckets = cm_xmalloc(nbuckets * sizeof(double));
    memcpy(m->buckets, buckets, nbuckets * sizeof(double));
    m->nbuckets = nbuckets;
    return m;
}

struct cm_metric *cm_metric_gauge_fn(const char *name, const char *help, double (*fn)(void *),
                                     void *arg)
{
    struct cm_metric *m = metric_new(name, help, M_GAUGE_FN, 0, NULL);

    m->fn = fn;
    m->fn_arg = arg;
    return m;
}

static bool labels_match(const struct cm_metric *m, const struct series *s, const char **vals)
{
    for (int i = 0; i < m->nlabels; i++) {
        if (strcmp(s->labels[i], vals[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* FNV-1a over the label values, each with its terminating NUL. */
static uint64_t labels_hash(int n, const char **vals)
{
    uint64_t h = 14695981039346656037ULL;

    for (int i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)vals[i];

        do {
            h = (h ^ *p) * 1099511628211ULL;
        } while (*p++ != '\0');
    }
    return h;
}

/* Called with m->lock held. Hot callers (the processor counts every event by vendor and metric)
 * repeat the same labels in runs, so the last series found is tried before the scan; the scan
 * compares the hashes of the label values first (strcmp over ~100 series of the processor's
 * event counter was 2-3 % of its CPU; README, Performance). */
static struct series *find_series(struct cm_metric *m, va_list ap)
{
    const char *vals[MAX_LABELS];
    struct series *s;
    uint64_t h;

    for (int i = 0; i < m->nlabels; i++) {
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): caller va_start()s; FP */
        vals[i] = va_arg(ap, const char *);
        if (vals[i] == NULL) {
            vals[i] = "";
        }
    }
    h = labels_hash(m->nlabels, vals);
    if (m->last < m->nseries && m->series[m->last].hash == h &&
        labels_match(m, &m->series[m->last], vals)) {
        return &m->series[m->last];
    }
    for (size_t k = 0; k < m->nseries; k++) {
        if (m->series[k].hash == h && labels_match(m, &m->series[k], vals)) {
            m->last = k;
            return &m->series[k];
        }
    }
    if (m->nseries >= MAX_SERIES) {
        for (int i = 0; i < m->nlabels; i++) {
            vals[i] = "other";
        }
        for (size_t k = 0; k < m->nseries; k++) {
            if (m->nlabels > 0 && strcmp(m->series[k].labels[0], "other") == 0) {
                return &m->series[k];
            }
        }
        return &m->series[m->nseries - 1];
    }
    if (m->nseries == m->capseries) {
        m->capseries = m->capseries ? m->capseries * 2 : 8;
        m->series = cm_xrealloc(m->series, m->capseries * sizeof(*m->series));
    }
    s = &m->series[m->nseries++];
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < m->nlabels; i++) {
        s->labels[i] = cm_xstrdup(vals[i]);
    }
    s->hash = h;
    if (m->type == M_HISTOGRAM) {
        s->counts = cm_xcalloc(m->nbuckets + 1, sizeof(uint64_t));
    }
    return s;
}

static void update(struct cm_metric *m, int op, double v, va_list ap)
{
    struct series *s;

    pthread_mutex_lock(&m->lock);
    s = find_series(m, ap);
    switch (op) {
    case 0:
        s->value += v;
        break;
    case 1:
        s->value = v;
        break;
    default: {
        size_t i = 0;
        while (i < m->nbuckets && v > m->buckets[i]) {
            i++;
        }
        s->counts[i]++;
        s->sum += v;
        s->value += 1; /* count */
        break;
    }
    }
    pthread_mutex_unlock(&m->lock);
}

void cm_metric_inc(struct cm_metric *m, ...)
{
    va_list ap;

    va_start(ap, m);
    update(m, 0, 1, ap);
    va_end(ap);
}

void cm_metric_add(struct cm_metric *m, double v, ...)
{
    va_list ap;

    va_start(ap, v);
    update(m, 0, v, ap);
    va_end(ap);
}

void cm_metric_set(struct cm_metric *m, double v, ...)
{
    va_list ap;

    va_start(ap, v);
    update(m, 1, v, ap);
    va_end(ap);
}

void cm_metric_observe(struct cm_metric *m, double v, ...)
{
    va_list ap;

    cm_assert(m->type == M_HISTOGRAM);
    va_start(ap, v);
    update(m, 2, v, ap);
    va_end(ap);
}

static void put_escaped(struct cm_buf *out, const char *s, bool label)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\') {
            cm_buf_append_str(out, "\\\\");
        } else if (*s == '\n') {
            cm_buf_append_str(out, "\\n");
        } else if (label && *s == '"') {
            cm_buf_append_str(out, "\\\"");
        } else {
            cm_buf_append(out, s, 1);
        }
    }
}

static void put_number(struct cm_buf *out, double v)
{
    if (isinf(v)) {
        cm_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    } else if (isnan(v)) {
        cm_buf_append_str(out, "NaN");
    } else if (v == (double)(int64_t)v && fabs(v) < 1e15) {
        cm_buf_printf(out, "%lld", (long long)v);
    } else {
        cm_buf_printf(out, "%.17g", v);
    }
}

static void put_labels(struct cm_buf *out, const struct cm_metric *m, const struct series *s,
                       const char *le)
{
    bool any = m->nlabels > 0 || le != NULL;

    if (!any) {
        return;
    }
    cm_buf_append_str(out, "{");
    for (int i = 0; i < m->nlabels; i++) {
        cm_buf_printf(out, "%s%s=\"", i ? "," : "", m->label_names[i]);
        put_escaped(out, s->labels[i], true);
        cm_buf_append_str(out, "\"");
    }
    if (le != NULL) {
        cm_buf_printf(out, "%sle=\"%s\"", m->nlabels ? "," : "", le);
    }
    cm_buf_append_str(out, "}");
}

static void render_metric(struct cm_metric *m, struct cm_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram", "gauge"};

    cm_buf_printf(out, "# HELP %s ", m->name);
    put_escaped(out, m->help, false);
    cm_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
    if (m->type == M_GAUGE_FN) {
        cm_buf_printf(out, "%s ", m->name);
        put_number(out, m->fn(m->fn_arg));
        cm_buf_append_str(out, "\n");
        return;
    }
    pthread_mutex_lock(&m->lock);
    if (m->nlabels == 0 && m->nseries == 0 && m->type != M_HISTOGRAM) {
        cm_buf_printf(out, "%s 0\n", m->name);
    }
    for (size_t k = 0; k < m->nseries; k++) {
        const struct series *s = &m->series[k];
        if (m->type != M_HISTOGRAM) {
            cm_buf_append_str(out, m->name);
            put_labels(out, m, s, NULL);
            cm_buf_append_str(out, " ");
            put_number(out, s->value);
            cm_buf_append_str(out, "\n");
            continue;
        }
        uint64_t cum = 0;
        for (size_t i = 0; i <= m->nbuckets; i++) {
            char le[32];
            cum += s->counts[i];
            if (i < m->nbuckets) {
                snprintf(le, sizeof(le), "%g", m->buckets[i]);
            } else {
                cm_strlcpy(le, "+Inf", sizeof(le));
            }
            cm_buf_printf(out, "%s_bucket", m->name);
            put_labels(out, m, s, le);
            cm_buf_printf(out, " %llu\n", (unsigned long long)cum);
        }
        cm_buf_printf(out, "%s_sum", m->name);
        put_labels(out, m, s, NULL);
        cm_buf_append_str(out, " ");
        put_number(out, s->sum);
        cm_buf_printf(out, "\n%s_count", m->name);
        put_labels(out, m, s, NULL);
        cm_buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    pthread_mutex_unlock(&m->lock);
}

void cm_metrics_render(struct cm_buf *out)
{
    pthread_mutex_lock(&registry_lock);
    for (struct cm_metric *m = registry_head; m != NULL; m = m->next) {
        render_metric(m, out);
    }
    pthread_mutex_unlock(&registry_lock);
}

void cm_metrics_reset(void)
{
    struct cm_metric *m;
    struct cm_metric *next;

    pthread_mutex_lock(&registry_lock);
    for (m = registry_head; m != NULL; m = next) {
        next = m->next;
        for (size_t k = 0; k < m->nseries; k++) {
            for (int i = 0; i < m->nlabels; i++) {
                free(m->series[k].labels[i]);
            }
            free(m->series[k].counts);
        }
        for (int i = 0; i < m->nlabels; i++) {
            free(m->label_names[i]);
        }
        free(m->series);
        free(m->buckets);
        free(m->name);
        free(m->help);
        pthread_mutex_destroy(&m->lock);
        free(m);
    }
    registry_head = NULL;
    registry_tail = &registry_head;
    pthread_mutex_unlock(&registry_lock);
}
