/* Parsing Canonical Form of an Avro schema and its CRC-64-AVRO (Rabin) fingerprint, as the Avro
 * specification defines them. Callers: cm_records_init() (fingerprints of the embedded schemas),
 * the unit tests and the admin tool.
 *
 * One walk over the jansson tree writes the canonical text directly:
 * [PRIMITIVES] {"type":"int"} becomes "int"; [FULLNAMES] names are resolved against the enclosing
 * namespace and "namespace" is dropped; [STRIP] only name, type, fields, symbols, items, values and
 * size survive (logicalType, doc, aliases, default, order go); [ORDER] they are written in that
 * order; [STRINGS] jansson has already decoded the escapes, and every string written is a
 * validated name or a type keyword, which needs no escape; [INTEGERS] a fixed's size is written
 * as a plain decimal; [WHITESPACE] none is written. A named type is written in full where it is
 * first defined and as its quoted fullname wherever it appears again, like the Java reference
 * implementation. */
#include "cm/records.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define CRC64_AVRO_EMPTY 0xc15d213aa4d7a795ULL
#define CANON_MAX_DEPTH 64

struct canon {
    struct cm_buf out;
    char **names; /* fullnames of the named types defined so far */
    size_t n_names;
    struct cm_err *err;
};

static const char *const primitive_names[] = {
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
};

uint64_t cm_avro_crc64(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t fp = CRC64_AVRO_EMPTY;

    /* Bitwise form of the spec's table-driven loop: the table entry for a byte is exactly these
     * eight shift steps, and the steps are linear, so both give the same value. */
    for (size_t i = 0; i < len; i++) {
        fp ^= p[i];
        for (int k = 0; k < 8; k++) {
            fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & (0 - (fp & 1)));
        }
    }
    return fp;
}

static bool is_primitive(const char *s)
{
    for (size_t i = 0; i < CM_ARRAY_LEN(primitive_names); i++) {
        if (strcmp(s, primitive_names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* [A-Za-z_][A-Za-z0-9_]* over n bytes. */
static bool valid_simple_name(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
        bool digit = ch >= '0' && ch <= '9';
        if (!alpha && !(digit && i > 0)) {
            return false;
        }
    }
    return true;
}

/* Dot-separated simple names; an empty string is the null namespace when allow_empty. */
static bool valid_dotted(const char *s, bool allow_empty)
{
    if (*s == '\0') {
        return allow_empty;
    }
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot != NULL ? (size_t)(dot - s) : strlen(s);
        if (!valid_simple_name(s, n)) {
            return false;
        }
        if (dot == NULL) {
            return true;
        }
        s = dot + 1;
    }
}

static char *join_name(const char *ns, const char *name)
{
    if (ns == NULL || *ns == '\0' || strchr(name, '.') != NULL) {
        return cm_xstrdup(name);
    }
    size_t n = strlen(ns) + strlen(name) + 2;
    char *full = cm_xmalloc(n);
    snprintf(full, n, "%s.%s", ns, name);
    return full;
}

static bool name_defined(const struct canon *c, const char *full)
{
    for (size_t i = 0; i < c->n_names; i++) {
        if (strcmp(c->names[i], full) == 0) {
            return true;
        }
    }
    return false;
}

static void put(struct canon *c, const char *s)
{
    /* The buffer is unbounded (allocation aborts on OOM), so appends cannot fail. */
    (void)cm_buf_append_str(&c->out, s);
}

/* Every string written is a name checked by valid_simple_name / valid_dotted or one of the fixed
 * type keywords, all of [A-Za-z0-9_.]: none needs a JSON escape. */
static void put_string(struct canon *c, const char *s)
{
    put(c, "\"");
    put(c, s);
    put(c, "\"");
}

static enum cm_rc canon_schema(struct canon *c, json_t *s, const char *ns, int depth);

/* A type referenced by name: a primitive, or a named type defined earlier (the enclosing
 * namespace first, then the null namespace, as the Java implementation resolves). */
static enum cm_rc canon_ref(struct canon *c, const char *name, const char *ns)
{
    if (is_primitive(name)) {
        put_string(c, name);
        return CM_OK;
    }
    char *full = join_name(ns, name);
    enum cm_rc rc = CM_OK;
    if (name_defined(c, full)) {
        put_string(c, full);
    } else if (strchr(name, '.') == NULL && name_defined(c, name)) {
        put_string(c, name);
    } else {
        rc = cm_err_set(c->err, CM_INVALID, "reference to an undefined type name");
    }
    free(full);
    return rc;
}

static enum cm_rc canon_fields(struct canon *c, json_t *fields, const char *ns, int depth)
{
    if (!json_is_array(fields)) {
        return cm_err_set(c->err, CM_INVALID, "record without a fields array");
    }
    put(c, ",\"fields\":[");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        json_t *name = json_object_get(f, "name");
        json_t *type = json_object_get(f, "type");
        if (!json_is_string(name) || type == NULL) {
            return cm_err_set(c->err, CM_INVALID, "field %zu without a name or type", i);
        }
        const char *fname = json_string_value(name);
        if (!valid_simple_name(fname, strlen(fname))) {
            return cm_err_set(c->err, CM_INVALID, "field %zu has an invalid name", i);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(json_string_value(json_object_get(json_array_get(fields, k), "name")),
                       fname) == 0) {
                return cm_err_set(c->err, CM_INVALID, "field name %s repeated", fname);
            }
        }
        put(c, i == 0 ? "{\"name\":" : ",{\"name\":");
        put_string(c, fname);
        put(c, ",\"type\":");
        enum cm_rc rc = canon_schema(c, type, ns, depth + 1);
        if (rc != CM_OK) {
            return rc;
        }
        put(c, "}");
    }
    put(c, "]");
    return CM_OK;
}

static enum cm_rc canon_symbols(struct canon *c, json_t *symbols)
{
    if (!json_is_array(symbols)) {
        return cm_err_set(c->err, CM_INVALID, "enum without a symbols array");
    }
    put(c, ",\"symbols\":[");
    for (size_t i = 0; i < json_array_size(symbols); i++) {
        json_t *sym = json_array_get(symbols, i);
        const char *v = json_string_value(sym);
        if (v == NULL || !valid_simple_name(v, strlen(v))) {
            return cm_err_set(c->err, CM_INVALID, "enum symbol %zu is invalid", i);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(json_string_value(json_array_get(symbols, k)), v) == 0) {
                return cm_err_set(c->err, CM_INVALID, "enum symbol %zu repeated", i);
            }
        }
        if (i > 0) {
            put(c, ",");
        }
        put_string(c, v);
    }
    put(c, "]");
    return CM_OK;
}

/* [INTEGERS]: the size may be a JSON integer or a quoted decimal. */
static enum cm_rc canon_size(struct canon *c, json_t *size)
{
    long long n = -1;

    if (json_is_integer(size)) {
        n = json_integer_value(size);
    } else if (json_is_string(size)) {
        const char *s = json_string_value(size);
        char *end = NULL;
        if (*s >= '0' && *s <= '9') {
            n = strtoll(s, &end, 10);
            if (*end != '\0') {
                n = -1;
            }
        }
    }
    if (n < 0 || n > INT32_MAX) {
        return cm_err_set(c->err, CM_INVALID, "fixed without a valid size");
    }
    char num[32];
    snprintf(num, sizeof(num), ",\"size\":%lld", n);
    put(c, num);
    return CM_OK;
}

static enum cm_rc canon_named(struct canon *c, json_t *s, const char *type, const char *ns,
                              int depth)
{
    json_t *jname = json_object_get(s, "name");
    json_t *jns = json_object_get(s, "namespace");
    const char *name = json_string_value(jname);
    char *full = NULL;
    char *space = NULL;
    enum cm_rc rc = CM_OK;

    if (name == NULL) {
        return cm_err_set(c->err, CM_INVALID, "%s without a name", type);
    }
    const char *dot = strrchr(name, '.');
    if (dot != NULL) {
        full = cm_xstrdup(name);
        space = cm_xstrndup(name, (size_t)(dot - name));
    } else {
        if (jns != NULL && !json_is_null(jns)) {
            if (!json_is_string(jns) || !valid_dotted(json_string_value(jns), true)) {
                return cm_err_set(c->err, CM_INVALID, "%s with an invalid namespace", type);
            }
            ns = json_string_value(jns);
        }
        full = join_name(ns, name);
        space = cm_xstrdup(ns);
    }
    if (!valid_dotted(full, false)) {
        rc = cm_err_set(c->err, CM_INVALID, "%s with an invalid name", type);
        goto out;
    }
    const char *last = strrchr(full, '.');
    if (is_primitive(last != NULL ? last + 1 : full)) {
        rc = cm_err_set(c->err, CM_INVALID, "%s named like a primitive type", type);
        goto out;
    }
    if (name_defined(c, full)) {
        rc = cm_err_set(c->err, CM_INVALID, "%s name defined twice", type);
        goto out;
    }
    /* Defined before its fields are walked, so a record may refer to itself. */
    c->names = cm_xrealloc(c->names, (c->n_names + 1) * sizeof(*c->names));
    c->names[c->n_names++] = cm_xstrdup(full);

    put(c, "{\"name\":");
    put_string(c, full);
    put(c, ",\"type\":");
    put_string(c, type);
    if (strcmp(type, "record") == 0) {
        rc = canon_fields(c, json_object_get(s, "fields"), space, depth);
    } else if (strcmp(type, "enum") == 0) {
        rc = canon_symbols(c, json_object_get(s, "symbols"));
    } else {
        rc = canon_size(c, json_object_get(s, "size"));
    }
    put(c, "}");
out:
    free(full);
    free(space);
    return rc;
}

static enum cm_rc canon_schema(struct canon *c, json_t *s, const char *ns, int depth)
{
    if (depth > CANON_MAX_DEPTH) {
        return cm_err_set(c->err, CM_INVALID, "schema nests deeper than %d", CANON_MAX_DEPTH);
    }
    if (json_is_string(s)) {
        return canon_ref(c, json_string_value(s), ns);
    }
    if (json_is_array(s)) {
        put(c, "[");
        for (size_t i = 0; i < json_array_size(s); i++) {
            if (i > 0) {
                put(c, ",");
            }
            enum cm_rc rc = canon_schema(c, json_array_get(s, i), ns, depth + 1);
            if (rc != CM_OK) {
                return rc;
            }
        }
        put(c, "]");
        return CM_OK;
    }
    const char *type = json_string_value(json_object_get(s, "type"));
    if (!json_is_object(s) || type == NULL) {
        return cm_err_set(c->err, CM_INVALID, "schema object without a string type");
    }
    if (is_primitive(type)) {
        put_string(c, type);
        return CM_OK;
    }
    if (strcmp(type, "record") == 0 || strcmp(type, "enum") == 0 || strcmp(type, "fixed") == 0) {
        return canon_named(c, s, type, ns, depth);
    }
    const char *key = strcmp(type, "array") == 0 ? "items"
                      : strcmp(type, "map") == 0 ? "values"
                                                 : NULL;
    if (key == NULL) {
        return canon_ref(c, type, ns); /* {"type":"some.Defined"} */
    }
    json_t *inner = json_object_get(s, key);
    if (inner == NULL) {
        return cm_err_set(c->err, CM_INVALID, "%s without %s", type, key);
    }
    put(c, "{\"type\":");
    put_string(c, type);
    put(c, ",\"");
    put(c, key);
    put(c, "\":");
    enum cm_rc rc = canon_schema(c, inner, ns, depth + 1);
    put(c, "}");
    return rc;
}

char *cm_avro_canonical_form(const char *schema_json, struct cm_err *err)
{
    json_error_t jerr;
    json_t *root = json_loads(schema_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    struct canon c = { .err = err };
    char *res = NULL;

    if (root == NULL) {
        cm_err_set(err, CM_INVALID, "schema is not valid JSON (line %d column %d)", jerr.line,
                   jerr.column);
        return NULL;
    }
    cm_buf_init(&c.out, 0);
    if (canon_schema(&c, root, "", 0) == CM_OK) {
        res = cm_xstrndup((const char *)c.out.data, c.out.len);
    }
    for (size_t i = 0; i < c.n_names; i++) {
        free(c.names[i]);
    }
    free(c.names);
    cm_buf_fini(&c.out);
    json_decref(root);
    return res;
}
