/* The real volq stack for integration tests: a private redis-server (via the
 * redis harness), volq-scheduler on a free 127.0.0.1 port and, when asked,
 * volq-worker, all with the case's folder as home:
 *
 *   t_stack s;
 *   REQUIRE(t_stack_start(&s, 0) == 0);          // redis + scheduler
 *   const char *sd = t_stack_mkdomain(&s, "--version 3 --disks 2");
 *   t_resp h;
 *   REQUIRE(t_req(&s, "GET", "/api/storagedomains", NULL, NULL, &h) == 0);
 *   CHECK_INT(h.status, 200);  ... h.json ...
 *   t_resp_free(&h);
 *   t_cmd c; t_volq(&s, &c, NULL, "disks", sd, NULL);   // the real CLI
 *   t_stack_stop(&s);
 *
 * Binaries come from VOLQ_BIN_DIR (set by CTest and scripts/test.sh), else
 * ../bin next to the test binary; scripts from VOLQ_SOURCE_DIR. */
#ifndef VOLQ_TEST_STACK_H
#define VOLQ_TEST_STACK_H
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/redis_harness.h"

enum { T_STACK_WORKERS = 1 };

typedef struct t_stack {
    t_redis redis;
    char domains[512];     /* absolute: CASE/domains */
    char api[64];          /* "http://127.0.0.1:PORT" */
    char listen[32];       /* "127.0.0.1:PORT" */
    int port;
    pid_t sched, worker;
    const char *token;     /* VOLQ_TOKEN given to the scheduler (and t_req), or NULL */
    const char *const *env; /* extra "K=V" for the daemons, NULL-terminated, or NULL */
    char sd[64];           /* the last domain t_stack_mkdomain() made */
} t_stack;

/* The folder of volq, volq-scheduler, volq-worker (absolute, borrowed). */
const char *t_bin_dir(void);
const char *t_source_dir(void);

/* Starts redis and the scheduler (and `volq-worker --processes 2` with
 * T_STACK_WORKERS); waits until /healthz answers 200.  0 or -1 (message on stderr).
 * s->token and s->env may be set before. */
int t_stack_start(t_stack *s, unsigned flags);
int t_stack_start_scheduler(t_stack *s);
/* SIGTERM and wait; the exit status (128+signal when killed), -1 when not running. */
int t_stack_stop_scheduler(t_stack *s);
int t_stack_start_workers(t_stack *s, int processes);
int t_stack_stop_workers(t_stack *s);
/* Stops the workers, the scheduler and redis. */
void t_stack_stop(t_stack *s);

/* scripts/mkdomain.sh s->domains ARGS; returns the new domain id (s->sd) or NULL. */
const char *t_stack_mkdomain(t_stack *s, const char *args);

/* ---- HTTP ------------------------------------------------------------- */

typedef struct t_resp {
    int status;            /* 0 when there was no answer */
    char *head;            /* status line and headers (owned) */
    char *body;            /* NUL-terminated (owned) */
    size_t len;
    json_t *json;          /* the body parsed, or NULL (owned) */
} t_resp;

/* One request to the stack's API with Connection: close.  body may be NULL.
 * extra: more header lines, each ending in "\r\n", or NULL.  With s->token set
 * and no "Authorization" in extra, the bearer token is sent.  0 when an answer
 * came (any status), -1 otherwise. */
int t_req(const t_stack *s, const char *method, const char *path, const char *body,
           const char *extra, t_resp *out);
/* Sends raw bytes as they are and reads the answer. */
int t_req_raw(const t_stack *s, const char *req, size_t len, t_resp *out);
/* The value of a response header (a new string, free()), or NULL. */
char *t_resp_header(const t_resp *h, const char *name);
void t_resp_free(t_resp *h);
/* t_req for a test case: the case ends when no answer came, and fails when
 * the status is not want (0: any).  Free the answer with t_resp_free. */
t_resp t_call(const t_stack *s, const char *method, const char *path, const char *body, int want);
/* The JSON of a GET answered 200 (new reference); the case ends otherwise. */
json_t *t_get_json(const t_stack *s, const char *path);

/* ---- the volq CLI ---------------------------------------------------- */

typedef struct t_cmd {
    int status;            /* exit status, 128+signal when killed */
    char *out, *err;       /* stdout and stderr (owned, NUL-terminated) */
    json_t *json;          /* stdout parsed as one JSON value, or NULL */
} t_cmd;

/* Runs bin/volq ARGS... (NULL-terminated) with VOLQ_API set to the stack's API
 * (unless env sets it) and extra env "K=V" entries (NULL-terminated array or
 * NULL; "K=" unsets K).  Waits for it.  0, or -1 when it could not run. */
int t_volq(const t_stack *s, t_cmd *out, const char *const *env, ...);
void t_cmd_free(t_cmd *c);

/* A TCP connection to 127.0.0.1:port (fd), or -1. */
int t_connect(int port);
/* A 127.0.0.1 port nobody listens on right now. */
int t_free_port(void);

/* Polls fn(arg) every 20 ms until it returns non-zero (returned) or
 * timeout_ms passes (0). */
int t_poll(int (*fn)(void *arg), void *arg, int timeout_ms);

#endif
