/* Shared inside scheduler/: the daemon's state, the route table and the
 * request helpers every handler uses. */
#ifndef VOLQ_SCHED_INT_H
#define VOLQ_SCHED_INT_H
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "volq/disk.h"
#include "volq/domain.h"
#include "volq/queue.h"

/* Request limits.  Bodies: the largest request is a create-volume of a few
 * hundred bytes; 1 MiB leaves room and still bounds memory per connection. */
#define VQ_HTTP_MAX_BODY (1024 * 1024)
#define VQ_HTTP_MAX_HEADERS (16 * 1024)  /* all request headers together */
#define VQ_HTTP_TIMEOUT_S 40             /* read/write of one request; above VQ_EVENTS_WAIT_MAX_S */
#define VQ_HTTP_MAX_CONNS 256            /* concurrent connections that sent a request */
/* Slowloris: a request (headers and body) must arrive complete within this
 * long of its connection's accept or of the previous answer; a local client
 * sends 1 MiB in far less.  Open connections, complete or not, are capped so
 * that the scheduler stays under the usual 1024 descriptors. */
#define VQ_HTTP_REQUEST_S 10
#define VQ_HTTP_MAX_OPEN 512
#define VQ_HTTP_SWEEP_MS 250             /* how often deadlines are checked */
#define VQ_HTTP_MAX_PATH_ARGS 3
#define VQ_EVENTS_WAIT_MAX_S 30          /* long-poll cap of GET /api/events?wait= */
#define VQ_EVENTS_POLL_MS 150            /* how often a waiting request re-reads the stream */
#define VQ_HOUSEKEEP_MS 250
#define VQ_REDIS_TIMEOUT_MS 2000         /* connect timeout of one attempt */
/* At a stop, how long the loop may go on writing the answers already queued
 * (the 503s of waiting requests): a client that does not read must not hold
 * the stop up. */
#define VQ_STOP_FLUSH_MS 200
#define VQ_STOP_CHECK_MS 5               /* how often the flush looks whether it is done */

/* Counters of this process, for /metrics. */
/* The codes of a bulk upgrade's skipped disks (docs/api.md), in the order of
 * upgrade_skipped[] and of volq_upgrade_skipped_total's lines (api_upgrade.c). */
enum { VQ_SKIP_CODES = 7 };
extern const char *const vq_skip_codes_[VQ_SKIP_CODES];

typedef struct vq_sched_stats {
    uint64_t requests[6];     /* by status class: 1xx..5xx (index 1..5) */
    uint64_t accepted_amend, accepted_create;
    uint64_t refused_amend, refused_create; /* refusals found at acceptance */
    uint64_t lock_conflicts;
    uint64_t redis_reconnects;
    uint64_t upgrade_skipped[VQ_SKIP_CODES]; /* disks a bulk upgrade skipped, by code */
} vq_sched_stats;

struct vq_waiter;

typedef struct vq_sched {
    struct event_base *base;
    struct evhttp *http;
    int loopback;                /* listening on a loopback address: Host must name one */
    struct event *tick;          /* housekeeping and Redis reconnects */
    struct event *sigterm, *sigint;
    const char *domains_root;
    const char *token;           /* VOLQ_TOKEN, NULL when unset */
    char redis_url[512];
    char redis_shown[512];       /* redis_url without its password: logs, answers */
    vq_queue_config qcfg;
    vq_queue *q;                 /* NULL until the first connect succeeds */
    int redis_up;
    int64_t next_redis_try;      /* ms since the epoch */
    int redis_backoff_ms;
    struct evhttp_connection *conns[VQ_HTTP_MAX_CONNS]; /* open, that sent a request */
    int nconns;
    struct vq_conn_track *track; /* every open connection, with its deadline (http_conns.c) */
    size_t ntrack, captrack;
    struct event *sweep, *sweep_now; /* periodic; at once when over VQ_HTTP_MAX_OPEN */
    struct vq_waiter *waiters;   /* long-polling GET /api/events */
    int nwaiters;
    int stopping;                /* a signal came: new requests get 503 */
    vq_sched_stats stats;
} vq_sched;

/* One request being handled.  Path arguments point into argbuf. */
typedef struct vq_req {
    struct evhttp_request *ev;
    vq_sched *s;
    const char *arg[VQ_HTTP_MAX_PATH_ARGS];
    struct evkeyvalq query;      /* parsed ?a=b pairs */
    char argbuf[512];
} vq_req;

typedef void (*vq_route_fn)(vq_req *r);

typedef struct vq_route {
    int method;                  /* EVHTTP_REQ_GET, ... */
    const char *pattern;         /* "/api/jobs/{}": {} matches one path segment */
    vq_route_fn fn;
    int needs_redis;             /* answered 503 while Redis is down */
    int changes;                 /* needs the bearer token when VOLQ_TOKEN is set */
} vq_route;

/* The table (routes.c), ended by an entry whose pattern is NULL. */
extern const vq_route vq_routes_[];

/* http_server.c: binds listen ("HOST:PORT"), sets limits and the dispatcher. */
int vq_http_start_(vq_sched *s, const char *listen, vq_error *err);

/* http_conns.c: request deadlines and the open-connection cap (slowloris).
 * start: after evhttp_new(); request: when a request arrived complete;
 * stop: after evhttp_free(). */
int vq_conns_start_(vq_sched *s, vq_error *err);
void vq_conns_request_(vq_sched *s, struct evhttp_request *ev);
void vq_conns_stop_(vq_sched *s);
/* How many connections have a request whose answer is not yet written out. */
size_t vq_conns_busy_(vq_sched *s);

/* http_reply.c.  Steals body (a JSON value; NULL answers 500). */
void vq_reply_json_(vq_req *r, int code, json_t *body);
/* {"error": text, "reason": reason or null}. */
void vq_reply_error_(vq_req *r, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Maps a VQ_E* code to a status (VQ_EINVAL 400, VQ_ENOENT 404, VQ_EREDIS 503, ...)
 * and answers err->text; VQ_EREDIS also marks Redis down. */
void vq_reply_verror_(vq_req *r, const vq_error *err);
void vq_reply_raw_(vq_req *r, int code, const char *ctype, const void *data, size_t len);
/* The request body as a JSON object (an empty body gives {}).  Answers 400 and
 * returns NULL when it is not one.  allowed: NULL-terminated field names; any
 * other field is refused.  New reference. */
json_t *vq_req_body_(vq_req *r, const char *const *allowed);
/* http_body.c (pure, fuzzed): the body as in vq_req_body_(); *out is a new
 * reference, or NULL with err set (VQ_EINVAL: malformed, not an object, an
 * unknown field; VQ_ENOMEM). */
int vq_body_decode_(const char *data, size_t len, const char *const *allowed, json_t **out,
                    vq_error *err);
/* A query parameter (borrowed) or NULL. */
const char *vq_req_query_(vq_req *r, const char *name);
/* Parses a query integer in [lo, hi]; answers 400 and returns -1 when bad. */
int vq_req_query_int_(vq_req *r, const char *name, long lo, long hi, long def, long *out);
/* The Idempotency-Key header (borrowed) or NULL; answers 400 (-1) when too long. */
int vq_req_idem_key_(vq_req *r, const char **key);
/* Answers 400 and returns -1 when s is not a UUID; what names it ("disk id"). */
int vq_req_uuid_(vq_req *r, const char *s, const char *what);

/* redis_link.c: connection state, backoff, housekeeping timer. */
int vq_redis_link_start_(vq_sched *s, vq_error *err);
void vq_redis_link_down_(vq_sched *s, const char *why);
void vq_redis_link_stop_(vq_sched *s);

/* lookup.c: domains and disks by id, answering 400/404 themselves (-1). */
int vq_find_domain_(vq_req *r, const char *sd, vq_domain **out);
int vq_find_disk_(vq_req *r, const vq_domain *d, const char *img, vq_disk **out);
/* The disk by id alone: searches every domain; in several is a 400 naming them. */
int vq_find_disk_any_(vq_req *r, const char *img, vq_domain **d, vq_disk **out);

/* Every disk of d, loaded and checked for an amend on several threads
 * (vq_disk_load_many; a bulk upgrade streams it instead); disks that vanish
 * meanwhile are left out, so each v[i].disk is set.  *out is a new array
 * (free with vq_free_disks_()). */
int vq_load_disks_(const vq_domain *d, vq_disk_scan **out, size_t *n, vq_error *err);
void vq_free_disks_(vq_disk_scan *v, size_t n);
/* Lock holders of v[0..n) in one round trip; *holders is a new array (free()),
 * "" for a free disk. */
int vq_fetch_holders_(vq_sched *s, const vq_disk_scan *v, size_t n,
                      char (**holders)[VQ_UUID_SIZE], vq_error *err);

/* What makes a repeat under an Idempotency-Key the same request: its kind and
 * domain, its disk when the request named one (disk), and the parameters the
 * request gave (params, NULL-terminated; NULL for none). */
typedef struct vq_same_req {
    int disk;
    const char *const *params;
} vq_same_req;

/* One Idempotency-Key is shared by single requests and bulk upgrades: a
 * single request stores KEY, a bulk one "KEY/DISK_ID" per disk (at most
 * 160 + 1 + 36 bytes: within the queue's 200).  vq_bulk_key_ fills out (-1
 * when it does not fit, which the header's cap rules out). */
#define VQ_BULK_KEY_MAX 201
int vq_bulk_key_(const char *key, const char *disk_id, char out[VQ_BULK_KEY_MAX]);
/* A key used before by the other kind of request answers 422 and nothing is
 * made.  1 when answered (an error too), 0 to go on (key NULL: 0).
 * used_by_single: for a bulk upgrade, the key made a single request's job.
 * used_by_bulk: for a single request on disk_id, a bulk upgrade made that
 * disk's job under the key (and no single request used it). */
int vq_idem_used_by_single_(vq_req *r, const char *key);
int vq_idem_used_by_bulk_(vq_req *r, const char *key, const char *disk_id);

/* accept.c: one job through vq_queue_accept, answered 202/200/409 (422: an
 * Idempotency-Key used before for another request, see same). */
void vq_accept_one_(vq_req *r, const vq_accept_req *a, const vq_same_req *same);
/* The jobs object of results (vq_job_json of each accepted job).  New reference;
 * NULL with err filled on a Redis error. */
json_t *vq_jobs_of_(vq_sched *s, const char (*ids)[VQ_UUID_SIZE], size_t n, vq_error *err);
/* A lock holder check on one disk: 1 locked (holder filled), 0 free, <0 replied. */
int vq_disk_holder_(vq_req *r, const char *disk_id, char holder[VQ_UUID_SIZE]);

/* api_status.c: drops the status read in this pass of the event loop (a
 * request that changes something was handled). */
void vq_status_forget_(void);

/* events: shuts every waiting request down (503 to each, Connection: close);
 * the answers are written by the loop (main.c lets it run a little). */
void vq_events_stop_(vq_sched *s);

/* Handlers (one small function each, in api_*.c). */
void vq_api_domains_(vq_req *r);
void vq_api_disks_(vq_req *r);
void vq_api_disk_(vq_req *r);
void vq_api_disk_any_(vq_req *r);
void vq_api_amend_(vq_req *r);
void vq_api_amend_any_(vq_req *r);
void vq_api_create_(vq_req *r);
void vq_api_create_new_(vq_req *r);
void vq_api_upgrade_(vq_req *r);
void vq_api_jobs_(vq_req *r);
void vq_api_job_(vq_req *r);
void vq_api_job_retry_(vq_req *r);
void vq_api_jobs_retry_(vq_req *r);
void vq_api_job_cancel_(vq_req *r);
void vq_api_events_(vq_req *r);
void vq_api_status_(vq_req *r);
void vq_api_metrics_(vq_req *r);
void vq_api_healthz_(vq_req *r);
void vq_api_index_(vq_req *r);
void vq_api_asset_(vq_req *r);

#endif
