/* The lean bulk merge's one step per row, in C: a row's values merged into a profile's attributes
 * as the stores keep them, JSON text {"name":["value",modified_ms,order],...}, without decoding
 * the text into objects and encoding them again (see bulkmerge.py, whose merge_attributes is the
 * same function in Python and the rule's reference).
 *
 * It reads only the text orjson writes (no spaces, its escapes, integers) and answers None for
 * any other, which the caller then merges in Python; what it writes is byte for byte what
 * orjson.dumps writes for the merged attributes, so both ways store the same text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t length, capacity;
} Buffer;

static int reserve(Buffer *b, Py_ssize_t more) {
    if (b->length + more <= b->capacity) return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 512;
    while (capacity < b->length + more) capacity *= 2;
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int put(Buffer *b, const char *bytes, Py_ssize_t n) {
    if (reserve(b, n) < 0) return -1;
    memcpy(b->data + b->length, bytes, n);
    b->length += n;
    return 0;
}

/* A JSON string as orjson writes it: `"` and `\` escaped, control characters as \b \t \n \f \r
 * or \u00xx, everything else (UTF-8 included) as it is. */
static int put_string(Buffer *b, const char *s, Py_ssize_t n) {
    if (reserve(b, 6 * n + 3) < 0) return -1; /* and sprintf's NUL */
    char *out = b->data + b->length;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
            case '"': *out++ = '"'; break;
            case '\\': *out++ = '\\'; break;
            case '\b': *out++ = 'b'; break;
            case '\t': *out++ = 't'; break;
            case '\n': *out++ = 'n'; break;
            case '\f': *out++ = 'f'; break;
            case '\r': *out++ = 'r'; break;
            default: out += sprintf(out, "u%04x", c);
        }
    }
    *out++ = '"';
    b->length = out - b->data;
    return 0;
}

typedef struct {
    const char *name, *value;
    Py_ssize_t name_length, value_length;
    int seen; /* the stored attributes have it */
} Change;

static int put_attribute(Buffer *b, const Change *c, const char *tail, Py_ssize_t tail_length) {
    if (put_string(b, c->name, c->name_length) < 0 || put(b, ":[", 2) < 0) return -1;
    if (put_string(b, c->value, c->value_length) < 0) return -1;
    return put(b, tail, tail_length);
}

/* The end of the string that starts at p (its opening quote), past its closing quote; NULL if it
 * is not as orjson writes strings. */
static const char *string_end(const char *p, const char *end) {
    if (p >= end || *p != '"') return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c != '\\') continue;
        if (++p >= end) return NULL;
        switch (*p) {
            case '"': case '\\': case 'b': case 't': case 'n': case 'f': case 'r': break;
            case 'u': {
                /* orjson writes \u00xx, lower case, only for the controls without a short escape */
                static const char hex[] = "0123456789abcdef";
                if (end - p < 5 || p[1] != '0' || p[2] != '0' || (p[3] != '0' && p[3] != '1')) return NULL;
                if (p[4] == '\0' || strchr(hex, p[4]) == NULL) return NULL;
                int code = (p[3] - '0') * 16 + (int)(strchr(hex, p[4]) - hex);
                if (code == '\b' || code == '\t' || code == '\n' || code == '\f' || code == '\r') return NULL;
                p += 4;
                break;
            }
            default: return NULL;
        }
    }
    return NULL;
}

/* An integer as orjson writes one; its end, or NULL. */
static const char *integer(const char *p, const char *end, long long *value) {
    int negative = p < end && *p == '-';
    if (negative) p++;
    if (p >= end || *p < '0' || *p > '9' || (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')) return NULL;
    long long v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > (LLONG_MAX - 9) / 10) return NULL;
        v = v * 10 + (*p - '0');
    }
    *value = negative ? -v : v;
    return p;
}

static PyObject *merge_attributes(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyUnicode_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "merge_attributes(text: str, values: dict, now: int, order: int)");
        return NULL;
    }
    PyObject *text = args[0], *values = args[1];
    long long now = PyLong_AsLongLong(args[2]), order = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) return NULL;

    Py_ssize_t count = PyDict_GET_SIZE(values), n = 0, position = 0;
    Change *changes = PyMem_Calloc(count ? count : 1, sizeof(Change));
    if (changes == NULL) return PyErr_NoMemory();
    Buffer b = {NULL, 0, 0};
    PyObject *key, *value, *result = NULL;
    while (PyDict_Next(values, &position, &key, &value)) {
        if (!PyUnicode_Check(key) || !PyUnicode_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "the values must map str to str");
            goto done;
        }
        if (PyUnicode_GET_LENGTH(value) == 0) continue; /* an empty value leaves the attribute alone */
        Change *c = &changes[n++];
        if ((c->name = PyUnicode_AsUTF8AndSize(key, &c->name_length)) == NULL) goto done;
        if ((c->value = PyUnicode_AsUTF8AndSize(value, &c->value_length)) == NULL) goto done;
    }
    char tail[64];
    Py_ssize_t tail_length = snprintf(tail, sizeof tail, ",%lld,%lld]", now, order);

    Py_ssize_t size;
    const char *p = PyUnicode_AsUTF8AndSize(text, &size), *end = p + size;
    if (p == NULL) goto done;
    int changed = 0, first = 1;
    if (put(&b, "{", 1) < 0) goto done;
    if (size < 2 || *p++ != '{') goto other;
    if (*p == '}') p++;
    else for (;;) {
        const char *start = p, *key_end = string_end(p, end);
        if (key_end == NULL || memchr(start, '\\', key_end - start) != NULL) goto other;
        if (end - key_end < 2 || key_end[0] != ':' || key_end[1] != '[') goto other;
        const char *q = string_end(key_end + 2, end);
        long long modified, stored_order;
        if (q == NULL || q >= end || *q++ != ',' || (q = integer(q, end, &modified)) == NULL) goto other;
        if (q >= end || *q++ != ',' || (q = integer(q, end, &stored_order)) == NULL) goto other;
        if (q >= end || *q++ != ']') goto other;
        Change *match = NULL;
        Py_ssize_t name_length = key_end - start - 2;
        for (Py_ssize_t i = 0; i < n && match == NULL; i++)
            if (changes[i].name_length == name_length && memcmp(changes[i].name, start + 1, name_length) == 0)
                match = &changes[i];
        if (!first && put(&b, ",", 1) < 0) goto done;
        first = 0;
        if (match != NULL) match->seen = 1;
        if (match != NULL && stored_order <= order) { /* a later-accepted write's attribute stays */
            if (put_attribute(&b, match, tail, tail_length) < 0) goto done;
            changed = 1;
        } else if (put(&b, start, q - start) < 0) goto done;
        if (q < end && *q == ',') p = q + 1;
        else if (q < end && *q == '}') { p = q + 1; break; }
        else goto other;
    }
    if (p != end) goto other;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (changes[i].seen) continue;
        if (!first && put(&b, ",", 1) < 0) goto done;
        first = 0;
        if (put_attribute(&b, &changes[i], tail, tail_length) < 0) goto done;
        changed = 1;
    }
    if (put(&b, "}", 1) < 0) goto done;
    if (!changed) {
        Py_INCREF(text);
        result = text;
    } else result = PyUnicode_DecodeUTF8(b.data, b.length, NULL);
    goto done;
other: /* not text as orjson writes it: the caller merges in Python */
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyMem_Free(changes);
    PyMem_Free(b.data);
    return result;
}

static PyMethodDef methods[] = {
    {"merge_attributes", (PyCFunction)(void (*)(void))merge_attributes, METH_FASTCALL,
     "merge_attributes(text, values, now, order) -> str or None: the values merged into the attributes JSON "
     "(the same object if nothing changed), or None if the text is not as orjson writes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bulkmerge", NULL, 0, methods};

PyMODINIT_FUNC PyInit__bulkmerge(void) { return PyModule_Create(&module); }
