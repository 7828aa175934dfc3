/* Shared inside cli/: global options, the command table, the HTTP client and
 * output helpers. */
#ifndef VOLQ_CLI_INT_H
#define VOLQ_CLI_INT_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "volq/error.h"

/* Exit statuses of SPEC §3. */
enum { VQ_EXIT_OK = 0, VQ_EXIT_FAILED = 1, VQ_EXIT_USAGE = 2, VQ_EXIT_UNREACHABLE = 3 };

/* Limits: an answer of the API is JSON of at most a few MiB (10000 jobs);
 * 64 MiB bounds a misbehaving server. */
#define VQ_CLI_MAX_RESPONSE (64u * 1024 * 1024)
#define VQ_CLI_TIMEOUT_MS 60000   /* connect, and each read or write */
#define VQ_CLI_POLL_MS 150        /* --wait on one job */

typedef struct vq_cli {
    const char *api;    /* "http://host:port[/prefix]" */
    const char *token;  /* NULL when none */
    int json;           /* --json: JSON alone on stdout */
    int tty;            /* stdout is a terminal: colours, bars */
    const char *argv0;  /* this binary, for `volq up` */
} vq_cli;

typedef struct vq_cmd {
    const char *name;
    int (*run)(vq_cli *c, int argc, char **argv); /* argv[0] is the command name */
    const char *usage;  /* "amend DISK_ID [--domain SD_ID] [--wait]" */
    const char *help;   /* the rest of `volq CMD --help` */
} vq_cmd;

/* ---- http_client.c: a small blocking HTTP/1.1 client ------------------- */

typedef struct vq_http_resp {
    int status;
    char *body;         /* NUL-terminated, owned; free with vq_http_resp_free() */
    size_t len;
} vq_http_resp;

/* One request to c->api + path, with the bearer token and, when body is not
 * NULL, a JSON body.  idem_key (or NULL) goes into Idempotency-Key.  VQ_ECONN
 * when the scheduler cannot be reached (the text says why); VQ_EINVAL for a bad
 * --api URL. */
int vq_http_request(const vq_cli *c, const char *method, const char *path, const char *body,
                    const char *idem_key, int timeout_ms, vq_http_resp *out, vq_error *err);
void vq_http_resp_free(vq_http_resp *r);

/* ---- api.c: requests that speak JSON and map failures to exit codes ---- */

/* Sends body (may be NULL; not stolen), answers 2xx with *out (new reference,
 * NULL for an empty body) and VQ_EXIT_OK.  Anything else is printed as one
 * line on stderr and its exit status returned.  *status (may be NULL) gets
 * the HTTP status (0 when unreachable). */
int vq_api_call(const vq_cli *c, const char *method, const char *path, json_t *body,
                json_t **out, int *status);

/* Prints "volq: " + the message to stderr as one line; returns code. */
int vq_cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- args.c: input checks before anything is sent (exit 2) ------------- */

/* 0 when s is a UUID; else prints "volq: WHAT ... is not a UUID" and returns VQ_EXIT_USAGE. */
int vq_cli_uuid(const char *s, const char *what);
/* Bytes, with an optional K/M/G/T suffix (powers of 1024); a positive
 * multiple of 512.  0, or VQ_EXIT_USAGE after a message. */
int vq_cli_size(const char *s, uint64_t *out);
/* A number in [lo, hi]; 0 or VQ_EXIT_USAGE after a message naming opt. */
int vq_cli_int(const char *s, const char *opt, long lo, long hi, long *out);
/* A command's options, in a table ended by name NULL. */
typedef struct vq_opt {
    const char *name;   /* "domain" for --domain */
    const char **val;   /* where --name VALUE / --name=VALUE goes; NULL for a flag */
    int *flag;          /* set to 1 by a flag */
} vq_opt;

/* Parses argv[1..argc) of cmd: options anywhere, operands into pos (between
 * minpos and maxpos of them, *npos gets the count), --help.  0 to go on; 1 to
 * stop with *exitcode (0 after --help, 2 after a usage message). */
int vq_cli_args(const vq_cmd *cmd, int argc, char **argv, const vq_opt *opts, const char **pos,
                size_t minpos, size_t maxpos, size_t *npos, int *exitcode);
/* Prints the usage of cmd on stderr with the hint, returns VQ_EXIT_USAGE. */
int vq_cli_usage(const vq_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints `volq CMD --help` on stdout; returns VQ_EXIT_OK. */
int vq_cli_help(const vq_cmd *cmd);
/* The table entry named name (main.c), NULL when unknown. */
const vq_cmd *vq_cmd_find(const char *name);

/* ---- out.c: output helpers --------------------------------------------- */

/* Prints v as JSON (indented on a terminal) and a newline on stdout. */
void vq_out_json(const vq_cli *c, const json_t *v);
/* ANSI colour for a job state on a terminal, "" otherwise; vq_out_reset() ends it. */
const char *vq_out_state_colour(const vq_cli *c, const char *state);
const char *vq_out_reset(const vq_cli *c);
/* The string field key of o, or "-" when absent or not a string.  Borrowed. */
const char *vq_jstr(json_t *o, const char *key);
/* JSON field as text: strings as they are, null as "-", numbers, booleans. */
const char *vq_out_str(json_t *o, const char *key, char *buf, size_t sz);
/* Short local time "2026-11-25 09:35:26" of an RFC 3339 UTC string (as is when unparsable). */
void vq_out_time(const char *rfc3339, char *buf, size_t sz);

/* A table printed with columns as wide as their widest cell. */
typedef struct vq_table vq_table;
/* Returns a new table of ncols columns; free with vq_table_free(). */
vq_table *vq_table_new(size_t ncols, const char *const *headers);
/* Copies the cells; colours[i] (may be NULL) wraps cell i on a terminal. */
int vq_table_add(vq_table *t, const char *const *cells, const char *const *colours);
void vq_table_print(const vq_cli *c, const vq_table *t);
void vq_table_free(vq_table *t);

/* ---- wait.c: following jobs to their end ------------------------------- */

/* 1 for succeeded, failed and cancelled. */
int vq_job_ended(const char *state);
/* Polls GET /api/jobs/ID until the job ends; *final gets it (new reference).
 * Shows a one-line status on a terminal.  Returns an exit status. */
int vq_wait_job(const vq_cli *c, const char *job_id, json_t **final);
/* After 202 with a job: prints it (or its id) and returns 0; with wait,
 * follows it and reports its end instead. */
int vq_job_accepted(const vq_cli *c, json_t *job, int wait);
/* The end of a single job for a human: one line, and its exit status. */
int vq_report_job(const vq_cli *c, json_t *job);

/* ---- commands (cmd_*.c) ------------------------------------------------ */
int vq_cmd_amend(vq_cli *c, int argc, char **argv);
int vq_cmd_create(vq_cli *c, int argc, char **argv);
int vq_cmd_upgrade(vq_cli *c, int argc, char **argv);
int vq_cmd_domains(vq_cli *c, int argc, char **argv);
int vq_cmd_disks(vq_cli *c, int argc, char **argv);
int vq_cmd_disk(vq_cli *c, int argc, char **argv);
int vq_cmd_jobs(vq_cli *c, int argc, char **argv);
int vq_cmd_job(vq_cli *c, int argc, char **argv);
int vq_cmd_retry(vq_cli *c, int argc, char **argv);
int vq_cmd_cancel(vq_cli *c, int argc, char **argv);
int vq_cmd_status(vq_cli *c, int argc, char **argv);
int vq_cmd_top(vq_cli *c, int argc, char **argv);
int vq_cmd_events(vq_cli *c, int argc, char **argv);
int vq_cmd_up(vq_cli *c, int argc, char **argv);

#endif
