/* volq-scheduler: options, then the HTTP API and housekeeping on one
 * libevent loop until SIGTERM or SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sched_int.h"
#include "volq/config.h"
#include "volq/log.h"

static const char usage[] =
    "usage: volq-scheduler [options]\n"
    "The volq daemon: the HTTP API (docs/api.md, man volq-scheduler) and housekeeping of the\n"
    "job queue.\n"
    "\n"
    "  --redis URL          redis://[user:pass@]host:port/db or unix:///path (VOLQ_REDIS),\n"
    "                       or sentinel://[user:pass@]host:port,host:port/MASTER;\n"
    "                       default: the embedded Redis of the state folder\n"
    "  --state DIR          state folder of the embedded Redis (VOLQ_STATE, default .volq)\n"
    "  --domains DIR        the domains root (VOLQ_DOMAINS, default /rhev/data-center/mnt)\n"
    "  --listen HOST:PORT   where the API listens (VOLQ_LISTEN, default 127.0.0.1:8085)\n"
    "  --log-level LEVEL    debug, info, notice, warn (VOLQ_LOG_LEVEL, default info)\n"
    "  --log-format FORMAT  text or json (VOLQ_LOG_FORMAT, default text)\n"
    "  --help, --version\n"
    "\n"
    "VOLQ_TOKEN, when set, is the bearer token every changing request must carry.\n"
    "SIGTERM or SIGINT stops it cleanly; jobs stay in Redis.\n";

typedef struct flags {
    const char *redis, *state, *domains, *listen, *level, *format;
} flags;

static int parse_flags(int argc, char **argv, flags *f, vq_error *err)
{
    const vq_flag table[] = {
        {"redis", &f->redis},       {"state", &f->state},       {"domains", &f->domains},
        {"listen", &f->listen},     {"log-level", &f->level},   {"log-format", &f->format},
        {NULL, NULL},
    };
    return vq_config_flags(argc, argv, table, "volq-scheduler", usage, err);
}

static int fail(const char *msg, const char *arg, int code)
{
    fprintf(stderr, "volq-scheduler: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return code;
}

static void on_event_log(int severity, const char *msg)
{
    int level = severity == EVENT_LOG_DEBUG ? VQ_LOG_DEBUG
                : severity == EVENT_LOG_MSG ? VQ_LOG_INFO
                                            : VQ_LOG_WARN;
    vq_log(level, "libevent: %s", msg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    vq_sched *s = arg;
    vq_log(VQ_LOG_NOTICE, "signal %d: stopping", (int)sig);
    event_base_loopexit(s->base, NULL);
}

static int setup_logging(const flags *f)
{
    vq_error err = {0};
    if (vq_config_log("scheduler", f->level, f->format, &err))
        return fail(err.text, NULL, 2);
    event_set_log_callback(on_event_log);
    return 0;
}

static int add_signals(vq_sched *s)
{
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer must not kill us */
    s->sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    if (!s->sigterm || !s->sigint) return -1;
    return event_add(s->sigterm, NULL) || event_add(s->sigint, NULL) ? -1 : 0;
}

static void flush_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    vq_sched *s = arg;
    if (vq_conns_busy_(s) == 0) event_base_loopbreak(s->base);
}

/* evhttp_free() drops what is not yet written: the answers just queued (the
 * waiting requests' 503s) are written by the loop, run until they are out or
 * VQ_STOP_FLUSH_MS passes.  A request that comes meanwhile gets 503. */
static void flush_answers(vq_sched *s)
{
    struct timeval most = {0, VQ_STOP_FLUSH_MS * 1000}, every = {0, VQ_STOP_CHECK_MS * 1000};
    struct event *check = event_new(s->base, -1, EV_PERSIST, flush_check, s);
    if (!check || vq_conns_busy_(s) == 0) goto out;
    event_add(check, &every);
    event_base_loopexit(s->base, &most);
    event_base_dispatch(s->base);
out:
    if (check) event_free(check);
}

static void teardown(vq_sched *s)
{
    s->stopping = 1;
    vq_events_stop_(s);
    if (s->base && s->http) flush_answers(s);
    if (s->http) evhttp_free(s->http);
    vq_conns_stop_(s);
    vq_redis_link_stop_(s);
    if (s->sigterm) event_free(s->sigterm);
    if (s->sigint) event_free(s->sigint);
    if (s->base) event_base_free(s->base);
}

static int run(vq_sched *s, const char *listen)
{
    vq_error err = {0};
    int rc = 1;
    s->base = event_base_new();
    if (!s->base || add_signals(s)) {
        fail("cannot set up the event loop", NULL, 1);
        goto out;
    }
    if (vq_http_start_(s, listen, &err) || vq_redis_link_start_(s, &err)) {
        rc = fail(err.text, NULL, err.code == VQ_EINVAL ? 2 : 1);
        goto out;
    }
    vq_log(VQ_LOG_NOTICE, "volq-scheduler %s: domains %s, redis %s%s", VOLQ_VERSION,
           s->domains_root, s->redis_shown, s->token ? ", token required for changes" : "");
    if (access(s->domains_root, R_OK | X_OK) != 0)
        vq_log(VQ_LOG_WARN, "domains root %s is not a readable folder; see --domains",
               s->domains_root);
    event_base_dispatch(s->base);
    rc = 0;
out:
    teardown(s);
    return rc;
}

int main(int argc, char **argv)
{
    flags f = {0};
    static vq_sched s; /* large (connection table): not on the stack */
    vq_error err = {0};
    if (parse_flags(argc, argv, &f, &err)) {
        fprintf(stderr, "volq-scheduler: %s; see volq-scheduler --help\n", err.text);
        return 2;
    }
    int rc = setup_logging(&f);
    if (rc) return rc;
    srand((unsigned)time(NULL) ^ (unsigned)getpid()); /* backoff jitter only */
    s.domains_root = vq_config_str(f.domains, "VOLQ_DOMAINS", "/rhev/data-center/mnt");
    s.token = vq_config_str(NULL, "VOLQ_TOKEN", NULL);
    vq_queue_config_default(&s.qcfg);
    if (vq_redis_resolve(f.redis, f.state, s.redis_url, sizeof s.redis_url, &err))
        return fail(err.text, NULL, err.code == VQ_EINVAL ? 2 : 3);
    vq_redis_url_shown(s.redis_url, s.redis_shown, sizeof s.redis_shown);
    return run(&s, vq_config_str(f.listen, "VOLQ_LISTEN", "127.0.0.1:8085"));
}
