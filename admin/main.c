/* auren-admin: command line of the operator tool. Parses the command and its options, reads
 * DATABASE_URL / KAFKA_BROKERS (or their _FILE forms) with the local defaults, and hands the
 * work to adm_*.c. Exit status: 0 done, 1 the work failed, 2 usage or configuration error
 * (always one line on stderr). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "adm.h"
#include "cm/cfg.h"
#include "cm/log.h"
#include "cm/vault.h"
#include "cm/records.h"

#ifndef AUREN_SOURCE_DIR
#error "AUREN_SOURCE_DIR must be defined by the build"
#endif

#define TOPICS_TIMEOUT_MS 30000

static const char usage_text[] =
    "auren-admin: operator tool of the Auren Biometric Bridge\n"
    "\n"
    "Usage:\n"
    "  auren-admin migrate [--dir DIR]\n"
    "      Apply the schemas/sql/NNN_name.sql files not yet in schema_migrations.\n"
    "  auren-admin topics create [--partitions N] [--replication-factor N]\n"
    "      Create the biometric.* topics; existing ones are left as they are.\n"
    "  auren-admin connections add --vendor V --vendor-user-id X --user-id Y\n"
    "                  [--access-token-file F [--refresh-token-file F] [--expires-in SECONDS]\n"
    "                   [--scopes S]]\n"
    "      Tokens are read from files (never from the command line), sealed with the active\n"
    "      TOKEN_ENCRYPTION_KEYS key and never printed.\n"
    "  auren-admin connections list [--vendor V]\n"
    "  auren-admin connections revoke --vendor V --vendor-user-id X\n"
    "  auren-admin keys rotate\n"
    "      Re-seal every stored token under the first (active) TOKEN_ENCRYPTION_KEYS key.\n"
    "  auren-admin dlq list\n"
    "      Dead letters per stage and reason: total, pending replay, oldest and newest age.\n"
    "  auren-admin dlq replay\n"
    "      Send each pending dead letter's record back to its source topic, exactly once.\n"
    "  auren-admin spool scan FILE\n"
    "      List the records and unreadable ranges of a gateway spool segment (a\n"
    "      damaged-<seq>.spool): offsets and metadata, never a payload.\n"
    "  auren-admin spool replay FILE OFFSET...\n"
    "      Send the records at those offsets (from spool scan) to biometric.raw.v1.\n"
    "  auren-admin --help\n"
    "\n"
    "Environment (NAME_FILE reads NAME from a file):\n"
    "  DATABASE_URL              " ADM_DEFAULT_DATABASE_URL "\n"
    "  KAFKA_BROKERS             " ADM_DEFAULT_KAFKA_BROKERS
    " (KAFKA_FOO_BAR is passed to librdkafka as foo.bar)\n"
    "  MIGRATIONS_DIR            " AUREN_SOURCE_DIR "/schemas/sql\n"
    "  TOKEN_ENCRYPTION_KEYS     kid:base64key,... (connections add with tokens, keys rotate)\n"
    "  TOPIC_PARTITIONS          6\n"
    "  TOPIC_REPLICATION_FACTOR  1\n"
    "\n"
    "Exit status: 0 done, 1 failed, 2 usage or configuration error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("auren-admin: ", stderr);
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start()ed; clang 14 FP */
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see auren-admin --help)\n", stderr);
    return ADM_EXIT_USAGE;
}

static int fail(const struct cm_err *err)
{
    fprintf(stderr, "auren-admin: %s\n", err->msg);
    return ADM_EXIT_FAIL;
}

/* NAME (or NAME_FILE) as a new string, `def` when unset; NULL (message printed) when the file
 * cannot be read. */
static char *env_or(const char *name, const char *def)
{
    struct cm_err err = { { 0 } };
    char *v = cm_cfg_getenv(name, &err);

    if (v == NULL && err.msg[0] != '\0') {
        fprintf(stderr, "auren-admin: config: %s\n", err.msg);
        return NULL;
    }
    return v != NULL ? v : cm_xstrdup(def);
}

static bool parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = (int)v;
    return true;
}

/* getopt_long over argv[0..argc) where argv[0] is the (sub)command named `what` in messages.
 * Returns the option's value
 * char, -1 at the end, or '?' after printing a usage error. */
static int next_opt(int argc, char **argv, const struct option *opts, const char *what,
                    int *status)
{
    int c = getopt_long(argc, argv, ":h", opts, NULL);

    if (c == '?') {
        *status = usage_error("%s: unknown option '%s'", what, argv[optind - 1]);
    } else if (c == ':') {
        *status = usage_error("%s: option '%s' needs a value", what, argv[optind - 1]);
        c = '?';
    } else if (c == -1 && optind < argc) {
        *status = usage_error("%s: unexpected argument '%s'", what, argv[optind]);
        c = '?';
    }
    return c;
}

static void reset_getopt(void)
{
    optind = 0; /* glibc: 0 re-initialises the scanner for a new argv */
    opterr = 0;
}

static PGconn *connect_db(int *status)
{
    struct cm_err err = { { 0 } };
    PGconn *pg;
    char *url = env_or("DATABASE_URL", ADM_DEFAULT_DATABASE_URL);

    if (url == NULL) {
        *status = ADM_EXIT_USAGE;
        return NULL;
    }
    pg = adm_pg_connect(url, &err);
    free(url);
    if (pg == NULL) {
        *status = fail(&err);
    }
    return pg;
}

static int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct adm_migrate_set set = { 0 };
    struct cm_err err = { { 0 } };
    const char *dir_opt = NULL;
    char *dir = NULL;
    int status = ADM_EXIT_OK;
    PGconn *pg;
    int c;

    reset_getopt();
    while ((c = next_opt(argc, argv, opts, "migrate", &status)) != -1) {
        if (c == '?') {
            return status;
        }
        if (c == 'h') {
            fputs(usage_text, stdout);
            return ADM_EXIT_OK;
        }
        dir_opt = optarg;
    }
    dir = dir_opt != NULL ? cm_xstrdup(dir_opt)
                          : env_or("MIGRATIONS_DIR", AUREN_SOURCE_DIR "/schemas/sql");
    if (dir == NULL) {
        return ADM_EXIT_USAGE;
    }
    if (adm_migrate_scan(dir, &set, &err) != CM_OK) {
        fprintf(stderr, "auren-admin: %s: %s\n", dir, err.msg);
        free(dir);
        return ADM_EXIT_FAIL;
    }
    free(dir);
    pg = connect_db(&status);
    if (pg != NULL) {
        if (adm_migrate_apply(pg, &set, stdout, &err) != CM_OK) {
            status = fail(&err);
        }
        PQfinish(pg);
    }
    adm_migrate_set_fini(&set);
    return status;
}

static int cmd_topics(int argc, char **argv)
{
    static const struct option opts[] = {
        { "partitions", required_argument, NULL, 'p' },
        { "replication-factor", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct adm_topics_opts o = { .timeout_ms = TOPICS_TIMEOUT_MS };
    struct cm_err err = { { 0 } };
    const char *partitions = NULL;
    const char *replication = NULL;
    char *env_partitions = NULL;
    char *env_replication = NULL;
    char *brokers = NULL;
    int status = ADM_EXIT_OK;
    int c;

    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            fputs(usage_text, stdout);
            return ADM_EXIT_OK;
        }
        return usage_error("topics: expected 'topics create'");
    }
    argc--;
    argv++;
    reset_getopt();
    while ((c = next_opt(argc, argv, opts, "topics create", &status)) != -1) {
        if (c == '?') {
            return status;
        }
        if (c == 'h') {
            fputs(usage_text, stdout);
            return ADM_EXIT_OK;
        }
        if (c == 'p') {
            partitions = optarg;
        } else {
            replication = optarg;
        }
    }
    env_partitions = env_or("TOPIC_PARTITIONS", "6");
    env_replication = env_or("TOPIC_REPLICATION_FACTOR", "1");
    brokers = env_or("KAFKA_BROKERS", ADM_DEFAULT_KAFKA_BROKERS);
    if (env_partitions == NULL || env_replication == NULL || brokers == NULL) {
        status = ADM_EXIT_USAGE;
    } else if (!parse_int(partitions != NULL ? partitions : env_partitions, 1, 10000,
                          &o.partitions)) {
        status = usage_error("topics create: %s must be an integer from 1 to 10000",
                             partitions != NULL ? "--partitions" : "TOPIC_PARTITIONS");
    } else if (!parse_int(replication != NULL ? replication : env_replication, 1, SHRT_MAX,
                          &o.replication)) {
        status = usage_error("topics create: %s must be an integer from 1 to %d",
                             replication != NULL ? "--replication-factor"
                                                 : "TOPIC_REPLICATION_FACTOR", SHRT_MAX);
    } else {
        o.brokers = brokers;
        if (adm_topics_create(&o, stdout, &err) != CM_OK) {
            status = fail(&err);
        }
    }
    free(env_partitions);
    free(env_replication);
    free(brokers);
    return status;
}

struct conn_args {
    const char *vendor;
    const char *vendor_user_id;
    const char *user_id;
    const char *access_file;
    const char *refresh_file;
    const char *expires_in;
    const char *scopes;
};

/* The vault from TOKEN_ENCRYPTION_KEYS; NULL (message printed) when unset or invalid. */
static struct cm_vault *load_vault(void)
{
    struct cm_err err = { { 0 } };
    char *spec = env_or("TOKEN_ENCRYPTION_KEYS", "");
    struct cm_vault *v = NULL;

    if (spec == NULL) {
        return NULL;
    }
    if (spec[0] == '\0') {
        fprintf(stderr, "auren-admin: config: TOKEN_ENCRYPTION_KEYS is not set\n");
    } else if ((v = cm_vault_new(spec, &err)) == NULL) {
        fprintf(stderr, "auren-admin: config: TOKEN_ENCRYPTION_KEYS: %s\n", err.msg);
    }
    memset(spec, 0, strlen(spec));
    free(spec);
    return v;
}

/* A token file's content without its trailing newline; NULL (message printed) when unreadable,
 * empty or over 16 KiB. */
static char *read_token_file(const char *path)
{
    char buf[16384 + 2];
    FILE *fp = fopen(path, "rb");
    size_t n;

    if (fp == NULL) {
        fprintf(stderr, "auren-admin: cannot read token file %s\n", path);
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    if (n == 0 || n > 16384 || memchr(buf, '\0', n) != NULL) {
        fprintf(stderr, "auren-admin: token file %s is empty, binary or over 16 KiB\n", path);
        memset(buf, 0, sizeof(buf));
        return NULL;
    }
    buf[n] = '\0';
    char *out = cm_xstrdup(buf);
    memset(buf, 0, sizeof(buf));
    return out;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

/* connections add with --access-token-file: seal and store. */
static int add_with_tokens(PGconn *pg, const struct conn_args *a)
{
    struct adm_conn_tokens t = { .scopes = a->scopes };
    struct cm_err err = { { 0 } };
    struct cm_vault *v = load_vault();
    char *access = NULL, *refresh = NULL;
    int status = ADM_EXIT_USAGE;
    int expires_in = 0;

    if (a->expires_in != NULL && !parse_int(a->expires_in, 0, INT_MAX, &expires_in)) {
        usage_error("connections add: --expires-in must be a number of seconds");
        goto out;
    }
    if (v == NULL || (access = read_token_file(a->access_file)) == NULL ||
        (a->refresh_file != NULL && (refresh = read_token_file(a->refresh_file)) == NULL)) {
        goto out;
    }
    t.access_token = access;
    t.refresh_token = refresh;
    t.expires_at_s = a->expires_in != NULL ? (long long)(cm_now_ms() / 1000) + expires_in : 0;
    if (adm_conn_set_tokens(pg, v, a->vendor, a->vendor_user_id, a->user_id, &t, &err) != CM_OK) {
        status = fail(&err);
    } else {
        printf("connection %s active, tokens sealed with key %s\n", a->vendor,
               cm_vault_active_kid(v));
        status = ADM_EXIT_OK;
    }
out:
    free_secret(access);
    free_secret(refresh);
    cm_vault_free(v);
    return status;
}

/* Parse the connections sub-command's options; `need` lists the required ones as 'v'/'x'/'u'. */
static int parse_conn_args(int argc, char **argv, const char *what, const char *allowed,
                           const char *need, struct conn_args *a)
{
    static const struct option opts[] = {
        { "vendor", required_argument, NULL, 'v' },
        { "vendor-user-id", required_argument, NULL, 'x' },
        { "user-id", required_argument, NULL, 'u' },
        { "access-token-file", required_argument, NULL, 'a' },
        { "refresh-token-file", required_argument, NULL, 'r' },
        { "expires-in", required_argument, NULL, 'e' },
        { "scopes", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int status = ADM_EXIT_OK;
    int c;

    reset_getopt();
    while ((c = next_opt(argc, argv, opts, what, &status)) != -1) {
        if (c == '?') {
            return status;
        }
        if (c == 'h') {
            fputs(usage_text, stdout);
            return -1;
        }
        if (strchr(allowed, c) == NULL) {
            /* argv[optind - 1] would be the value of "--opt value": name the option itself. */
            const struct option *o = opts;

            while (o->name != NULL && o->val != c) {
                o++;
            }
            return usage_error("%s: option '--%s' does not apply", what, o->name);
        }
        if (c == 'v') {
            a->vendor = optarg;
        } else if (c == 'x') {
            a->vendor_user_id = optarg;
        } else if (c == 'u') {
            a->user_id = optarg;
        } else if (c == 'a') {
            a->access_file = optarg;
        } else if (c == 'r') {
            a->refresh_file = optarg;
        } else if (c == 'e') {
            a->expires_in = optarg;
        } else {
            a->scopes = optarg;
        }
    }
    if (a->access_file == NULL && (a->refresh_file != NULL || a->expires_in != NULL ||
                                   a->scopes != NULL)) {
        return usage_error("%s: token options need --access-token-file", what);
    }
    if ((strchr(need, 'v') != NULL && a->vendor == NULL) ||
        (strchr(need, 'x') != NULL && a->vendor_user_id == NULL) ||
        (strchr(need, 'u') != NULL && a->user_id == NULL)) {
        return usage_error("%s: missing a required option", what);
    }
    if (a->vendor != NULL && !adm_conn_vendor_valid(a->vendor)) {
        return usage_error("%s: unknown vendor '%s'", what, a->vendor);
    }
    if ((a->vendor_user_id != NULL && !adm_conn_id_valid(a->vendor_user_id)) ||
        (a->user_id != NULL && !adm_conn_id_valid(a->user_id))) {
        return usage_error("%s: ids are 1-256 printable characters", what);
    }
    return ADM_EXIT_OK;
}

static int cmd_connections(int argc, char **argv)
{
    struct conn_args a = { 0 };
    struct cm_err err = { { 0 } };
    const char *sub = argc >= 2 ? argv[1] : "";
    int status;
    enum cm_rc rc;
    PGconn *pg;

    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(usage_text, stdout);
        return ADM_EXIT_OK;
    }
    if (strcmp(sub, "add") == 0) {
        status = parse_conn_args(argc - 1, argv + 1, "connections add", "vxuares", "vxu", &a);
    } else if (strcmp(sub, "list") == 0) {
        status = parse_conn_args(argc - 1, argv + 1, "connections list", "v", "", &a);
    } else if (strcmp(sub, "revoke") == 0) {
        status = parse_conn_args(argc - 1, argv + 1, "connections revoke", "vx", "vx", &a);
    } else {
        return usage_error("connections: expected add, list or revoke");
    }
    if (status != ADM_EXIT_OK) {
        return status < 0 ? ADM_EXIT_OK : status;
    }
    pg = connect_db(&status);
    if (pg == NULL) {
        return status;
    }
    if (strcmp(sub, "add") == 0 && a.access_file != NULL) {
        status = add_with_tokens(pg, &a);
        PQfinish(pg);
        return status;
    }
    if (strcmp(sub, "add") == 0) {
        rc = adm_conn_add(pg, a.vendor, a.vendor_user_id, a.user_id, &err);
        if (rc == CM_OK) {
            printf("connection %s active\n", a.vendor);
        }
    } else if (strcmp(sub, "list") == 0) {
        rc = adm_conn_list(pg, a.vendor, stdout, NULL, &err);
    } else {
        rc = adm_conn_revoke(pg, a.vendor, a.vendor_user_id, &err);
        if (rc == CM_OK) {
            printf("connection %s revoked, tokens dropped\n", a.vendor);
        }
    }
    PQfinish(pg);
    return rc == CM_OK ? ADM_EXIT_OK : fail(&err);
}

static int cmd_keys(int argc, char **argv)
{
    struct cm_err err = { { 0 } };
    struct cm_vault *v;
    size_t rotated = 0, missing = 0;
    int status = ADM_EXIT_OK;
    PGconn *pg;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return ADM_EXIT_OK;
    }
    if (argc != 2 || strcmp(argv[1], "rotate") != 0) {
        return usage_error("keys: expected 'keys rotate'");
    }
    v = load_vault();
    if (v == NULL) {
        return ADM_EXIT_USAGE;
    }
    pg = connect_db(&status);
    if (pg != NULL) {
        if (adm_keys_rotate(pg, v, &rotated, &missing, &err) != CM_OK) {
            status = fail(&err);
        } else {
            printf("keys rotate: %zu connections re-sealed with key %s", rotated,
                   cm_vault_active_kid(v));
            if (missing > 0) {
                printf("; %zu sealed under keys not in TOKEN_ENCRYPTION_KEYS (left as they are)",
                       missing);
                status = ADM_EXIT_FAIL;
            }
            printf("\n");
        }
        PQfinish(pg);
    }
    cm_vault_free(v);
    return status;
}

static int cmd_dlq(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    struct cm_err err = { { 0 } };
    char *brokers;
    enum cm_rc rc;

    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(usage_text, stdout);
        return ADM_EXIT_OK;
    }
    if (strcmp(sub, "list") != 0 && strcmp(sub, "replay") != 0) {
        return usage_error("dlq: expected list or replay");
    }
    if (argc > 2) {
        return usage_error("dlq %s: unexpected argument '%s'", sub, argv[2]);
    }
    brokers = env_or("KAFKA_BROKERS", ADM_DEFAULT_KAFKA_BROKERS);
    if (brokers == NULL) {
        return ADM_EXIT_USAGE;
    }
    cm_records_init();
    rc = strcmp(sub, "list") == 0 ? adm_dlq_list(brokers, stdout, &err)
                                  : adm_dlq_replay(brokers, stdout, &err);
    free(brokers);
    return rc == CM_OK ? ADM_EXIT_OK : fail(&err);
}

/* A byte offset from the command line: decimal digits only. */
static bool parse_offset(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > SIZE_MAX) {
        return false;
    }
    *out = (size_t)v;
    return true;
}

static int cmd_spool(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    struct cm_err err = { { 0 } };
    size_t *offsets;
    char *brokers;
    enum cm_rc rc;

    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(usage_text, stdout);
        return ADM_EXIT_OK;
    }
    if (strcmp(sub, "scan") == 0) {
        if (argc != 3) {
            return usage_error("spool scan: expected one FILE");
        }
        cm_records_init();
        return adm_spool_scan(argv[2], stdout, &err) == CM_OK ? ADM_EXIT_OK : fail(&err);
    }
    if (strcmp(sub, "replay") != 0) {
        return usage_error("spool: expected scan or replay");
    }
    if (argc < 4) {
        return usage_error("spool replay: expected FILE and at least one OFFSET");
    }
    offsets = cm_xcalloc((size_t)argc - 3, sizeof(*offsets));
    for (int i = 3; i < argc; i++) {
        if (!parse_offset(argv[i], &offsets[i - 3])) {
            free(offsets);
            return usage_error("spool replay: '%s' is not a byte offset", argv[i]);
        }
    }
    brokers = env_or("KAFKA_BROKERS", ADM_DEFAULT_KAFKA_BROKERS);
    if (brokers == NULL) {
        free(offsets);
        return ADM_EXIT_USAGE;
    }
    cm_records_init();
    rc = adm_spool_replay(brokers, argv[2], offsets, (size_t)argc - 3, stdout, &err);
    free(brokers);
    free(offsets);
    return rc == CM_OK ? ADM_EXIT_OK : fail(&err);
}

int main(int argc, char **argv)
{
    const char *cmd = argc >= 2 ? argv[1] : NULL;

    if (cmd == NULL) {
        return usage_error("missing command");
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return ADM_EXIT_OK;
    }
    cm_log_init("admin");
    if (strcmp(cmd, "migrate") == 0) {
        return cmd_migrate(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "topics") == 0) {
        return cmd_topics(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "connections") == 0) {
        return cmd_connections(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "keys") == 0) {
        return cmd_keys(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "dlq") == 0) {
        return cmd_dlq(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "spool") == 0) {
        return cmd_spool(argc - 1, argv + 1);
    }
    return usage_error("unknown command '%s'", cmd);
}
