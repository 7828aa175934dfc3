/* volq events [--follow] [--since TIME]: the audit log, paged by event id;
 * --follow long-polls the API (GET /api/events?wait=) for new ones. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "volq/job.h"
#include "volq/queue.h"

#define VQ_EVENTS_PAGE 1000
#define VQ_EVENTS_WAIT_S 25  /* below the scheduler's cap and the client timeout */

/* The same checks as the scheduler's: an id out of range is a usage error
 * here, before anything is sent. */
static int since_valid(const char *s)
{
    int64_t ms;
    uint64_t id_ms, id_seq;
    return vq_time_parse(s, &ms) == 0 || vq_queue_event_id_parse(s, &id_ms, &id_seq) == 0;
}

/* Percent-encodes everything but unreserved characters (':' and '+' of a time). */
static void url_encode(const char *s, char *out, size_t sz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < sz; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("-._~", ch)) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

static void print_event(const vq_cli *c, json_t *e)
{
    if (c->json) { /* --follow: one object a line */
        char *s = json_dumps(e, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
        return;
    }
    const char *sev = vq_jstr(e, "severity");
    printf("%s %s%s%s %s\n", vq_jstr(e, "time"), vq_out_state_colour(c, sev), sev,
           vq_out_reset(c), vq_jstr(e, "message"));
}

/* One page after since ("" for the oldest kept); *page is a new array. */
static int fetch(const vq_cli *c, const char *since, int wait_s, json_t **page)
{
    char enc[160], path[256];
    url_encode(since, enc, sizeof enc);
    snprintf(path, sizeof path, "/api/events?limit=%d%s%s&wait=%d", VQ_EVENTS_PAGE,
             *since ? "&since=" : "", enc, wait_s);
    return vq_api_call(c, "GET", path, NULL, page, NULL);
}

/* Pages through the events after since; with follow, keeps waiting for more.
 * --json without --follow gathers one array. */
static int run(const vq_cli *c, const char *since, int follow)
{
    char last[64];
    json_t *all = !follow && c->json ? json_array() : NULL, *page = NULL, *e;
    int rc = VQ_EXIT_OK;
    snprintf(last, sizeof last, "%s", since ? since : "");
    for (;;) {
        size_t i, n;
        if ((rc = fetch(c, last, follow ? VQ_EVENTS_WAIT_S : 0, &page))) break;
        json_array_foreach(page, i, e) {
            if (all)
                json_array_append(all, e);
            else
                print_event(c, e);
            if (json_is_string(json_object_get(e, "id")))
                snprintf(last, sizeof last, "%s", vq_jstr(e, "id"));
        }
        fflush(stdout);
        n = json_array_size(page);
        json_decref(page);
        if (!follow && n < VQ_EVENTS_PAGE) break;
    }
    if (all && rc == VQ_EXIT_OK) vq_out_json(c, all);
    json_decref(all);
    return rc;
}

int vq_cmd_events(vq_cli *c, int argc, char **argv)
{
    const char *since = NULL;
    int follow = 0, rc;
    const vq_opt opts[] = {{"since", &since, NULL}, {"follow", NULL, &follow}, {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("events"), argc, argv, opts, NULL, 0, 0, NULL, &rc)) return rc;
    if (since && !since_valid(since))
        return vq_cli_fail(VQ_EXIT_USAGE, "--since \"%s\" is neither an RFC 3339 time "
                           "(2026-11-25T09:35:26Z) nor an event id (ms-seq, each part below "
                           "2^64)", since);
    return run(c, since, follow);
}
