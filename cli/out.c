/* Output: JSON, colours (on a terminal only) and aligned tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"

void vq_out_json(const vq_cli *c, const json_t *v)
{
    size_t flags = JSON_ENCODE_ANY | (c->tty ? JSON_INDENT(2) : JSON_COMPACT);
    char *s = json_dumps(v, flags);
    if (s) printf("%s\n", s);
    free(s);
}

static const struct {
    const char *state, *colour;
} colours[] = {
    {"succeeded", "\033[32m"}, {"failed", "\033[31m"},  {"cancelled", "\033[90m"},
    {"running", "\033[36m"},   {"retrying", "\033[33m"}, {"queued", "\033[34m"},
    {"ok", "\033[32m"},        {"illegal", "\033[31m"},  {"locked", "\033[33m"},
    {"error", "\033[31m"},     {"normal", ""},
};

const char *vq_out_state_colour(const vq_cli *c, const char *state)
{
    for (size_t i = 0; c->tty && state && i < sizeof colours / sizeof colours[0]; i++)
        if (strcmp(colours[i].state, state) == 0) return colours[i].colour;
    return "";
}

const char *vq_out_reset(const vq_cli *c) { return c->tty ? "\033[0m" : ""; }

const char *vq_jstr(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "-";
}

const char *vq_out_str(json_t *o, const char *key, char *buf, size_t sz)
{
    json_t *v = key ? json_object_get(o, key) : o;
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, sz, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, sz, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, sz, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(buf, sz, "-");
    return buf;
}

/* "2026-11-25T09:35:26.123Z" -> "2026-11-25 09:35:26" (UTC, as the API gives it). */
void vq_out_time(const char *t, char *buf, size_t sz)
{
    if (!t || strlen(t) < 19 || t[10] != 'T') {
        snprintf(buf, sz, "%s", t ? t : "-");
        return;
    }
    snprintf(buf, sz, "%.10s %.8s", t, t + 11);
}

/* ---- tables ---------------------------------------------------------- */

struct vq_table {
    size_t ncols, nrows, cap;
    char **cells;          /* nrows * ncols, row 0 the headers */
    const char **colours;  /* per cell, may be NULL */
    size_t *width;
};

vq_table *vq_table_new(size_t ncols, const char *const *headers)
{
    vq_table *t = calloc(1, sizeof *t);
    if (!t || !(t->width = calloc(ncols, sizeof *t->width))) {
        free(t);
        return NULL;
    }
    t->ncols = ncols;
    if (vq_table_add(t, headers, NULL)) {
        vq_table_free(t);
        return NULL;
    }
    return t;
}

static int grow(vq_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 16;
    char **cells = realloc(t->cells, cap * t->ncols * sizeof *cells);
    if (!cells) return -1;
    t->cells = cells;
    const char **col = realloc(t->colours, cap * t->ncols * sizeof *col);
    if (!col) return -1;
    t->colours = col;
    t->cap = cap;
    return 0;
}

int vq_table_add(vq_table *t, const char *const *cells, const char *const *colours)
{
    if (t->nrows == t->cap && grow(t)) return -1;
    for (size_t i = 0; i < t->ncols; i++) {
        size_t k = t->nrows * t->ncols + i;
        t->cells[k] = strdup(cells[i] ? cells[i] : "-");
        t->colours[k] = colours ? colours[i] : NULL;
        size_t w = t->cells[k] ? strlen(t->cells[k]) : 0;
        if (w > t->width[i]) t->width[i] = w;
    }
    t->nrows++;
    return 0;
}

void vq_table_print(const vq_cli *c, const vq_table *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            size_t k = r * t->ncols + i;
            const char *col = t->colours[k] && c->tty ? t->colours[k] : "";
            const char *cell = t->cells[k] ? t->cells[k] : "";
            int last = i + 1 == t->ncols;
            printf("%s%s%s%s%-*s", r == 0 && c->tty ? "\033[1m" : "", col, cell,
                   *col || (r == 0 && c->tty) ? "\033[0m" : "", last ? 0 : (int)(t->width[i] - strlen(cell) + 2), "");
        }
        putchar('\n');
    }
}

void vq_table_free(vq_table *t)
{
    if (!t) return;
    for (size_t k = 0; k < t->nrows * t->ncols; k++) free(t->cells[k]);
    free(t->cells);
    free(t->colours);
    free(t->width);
    free(t);
}
