/* volq status, and volq top: the same, live, full screen, every second. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli_int.h"

static const char *const states[] = {"queued", "running", "retrying", "succeeded", "failed",
                                     "cancelled"};

/* Lines end with "\033[K" on a terminal so a redraw leaves no tail behind. */
static void print_status(const vq_cli *c, json_t *st)
{
    const char *eol = c->tty ? "\033[K\n" : "\n";
    json_t *jobs = json_object_get(st, "jobs"), *w;
    printf("redis        %s%s", vq_jstr(st, "redis"), eol);
    printf("jobs        ");
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        printf(" %s%s%s %lld", vq_out_state_colour(c, states[i]), states[i], vq_out_reset(c),
               (long long)json_integer_value(json_object_get(jobs, states[i])));
    printf("%s", eol);
    printf("workers      %zu alive%s", json_array_size(json_object_get(st, "workers")), eol);
    size_t i;
    json_array_foreach(json_object_get(st, "workers"), i, w) {
        const char *job = json_string_value(json_object_get(w, "job_id"));
        printf("             %s:%lld %s%s", vq_jstr(w, "host"),
               (long long)json_integer_value(json_object_get(w, "pid")),
               job && *job ? job : "idle", eol);
    }
    printf("oldest wait  %.1f s%s", json_number_value(json_object_get(st, "oldest_waiting_s")), eol);
    printf("jobs/min     %g%s", json_number_value(json_object_get(st, "jobs_per_min")), eol);
}

int vq_cmd_status(vq_cli *c, int argc, char **argv)
{
    int rc;
    json_t *st = NULL;
    if (vq_cli_args(vq_cmd_find("status"), argc, argv, NULL, NULL, 0, 0, NULL, &rc)) return rc;
    if ((rc = vq_api_call(c, "GET", "/api/status", NULL, &st, NULL))) return rc;
    if (c->json)
        vq_out_json(c, st);
    else
        print_status(c, st);
    json_decref(st);
    return VQ_EXIT_OK;
}

/* ---- top ------------------------------------------------------------- */

static volatile sig_atomic_t top_stop;

static void on_stop(int sig)
{
    (void)sig;
    top_stop = 1;
}

static void print_running(const vq_cli *c, json_t *jobs)
{
    size_t i;
    json_t *j;
    printf("\n\033[1m%-36s  %-13s  %-36s  %s\033[0m\033[K\n", "RUNNING JOB", "KIND", "DISK",
           "PROGRESS");
    json_array_foreach(jobs, i, j) {
        json_t *p = json_object_get(j, "progress");
        printf("%-36s  %-13s  %-36s  %lld/%lld\033[K\n", vq_jstr(j, "id"), vq_jstr(j, "kind"),
               vq_jstr(j, "disk_id"), (long long)json_integer_value(json_object_get(p, "done")),
               (long long)json_integer_value(json_object_get(p, "total")));
    }
    (void)c;
}

/* One screen: home, the status, the running jobs, clear to the end. */
static int draw(const vq_cli *c)
{
    json_t *st = NULL, *running = NULL;
    int rc = vq_api_call(c, "GET", "/api/status", NULL, &st, NULL);
    if (rc == 0) rc = vq_api_call(c, "GET", "/api/jobs?state=running&limit=20", NULL, &running, NULL);
    if (rc == 0) {
        printf("\033[H\033[1mvolq top\033[0m  %s  (q quits)\033[K\n\n", c->api);
        print_status(c, st);
        print_running(c, running);
        printf("\033[J");
        fflush(stdout);
    }
    json_decref(st);
    json_decref(running);
    return rc;
}

/* 1 when q was typed; waits up to a second for a key. */
static int key_quit(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char ch;
    if (poll(&p, 1, 1000) <= 0) return 0;
    return read(0, &ch, 1) == 1 && (ch == 'q' || ch == 'Q');
}

int vq_cmd_top(vq_cli *c, int argc, char **argv)
{
    int rc;
    struct termios saved, raw;
    if (vq_cli_args(vq_cmd_find("top"), argc, argv, NULL, NULL, 0, 0, NULL, &rc)) return rc;
    if (c->json) return vq_cmd_status(c, argc, argv);
    if (!c->tty || !isatty(0) || tcgetattr(0, &saved))
        return vq_cli_fail(VQ_EXIT_USAGE, "top needs a terminal; use `volq status` instead");
    raw = saved;
    raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO); /* ISIG stays: Ctrl-C quits */
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    tcsetattr(0, TCSANOW, &raw);
    printf("\033[?25l\033[H\033[2J"); /* no alternate screen: a last error stays visible */
    while (!top_stop && (rc = draw(c)) == 0 && !key_quit()) {
    }
    printf("\033[?25h");
    fflush(stdout);
    tcsetattr(0, TCSANOW, &saved);
    return top_stop ? VQ_EXIT_OK : rc;
}
