/* Deadlines for incoming connections.  evhttp 2.1 has only an inactivity
 * timeout, which a client trickling one header byte every few seconds
 * (slowloris) never reaches, and it counts no connection before its first
 * request is complete.  So every connection gets its bufferevent here
 * (evhttp_set_bevcb) and is tracked from its accept: its request must arrive
 * complete within VQ_HTTP_REQUEST_S of the accept or of the previous answer,
 * else a sweep shuts its socket down and evhttp frees it as for a peer that
 * went away.  We hold a reference on each bufferevent, so neither it nor its
 * descriptor is reused before the sweep sees that evhttp let go of it. */
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "sched_int.h"
#include "volq/job.h"
#include "volq/log.h"

struct vq_conn_track {
    struct bufferevent *bev; /* a reference of ours */
    int64_t deadline_ms;     /* 0 while a request is being answered */
};

static int64_t next_deadline(void) { return vq_now_ms() + VQ_HTTP_REQUEST_S * 1000; }

static int grow(vq_sched *s)
{
    if (s->ntrack < s->captrack) return 0;
    size_t cap = s->captrack ? s->captrack * 2 : 64;
    struct vq_conn_track *t = realloc(s->track, cap * sizeof *t);
    if (!t) return -1;
    s->track = t;
    s->captrack = cap;
    return 0;
}

/* Over the cap, the connection that has waited longest for a request it has
 * not sent is dropped, so a flood of idle connections cannot lock out a new
 * client; when every one is being answered, the new one goes.  The sweep,
 * run at once, does it (the new connection's fd is set by then). */
static int make_room(vq_sched *s)
{
    struct vq_conn_track *oldest = NULL;
    for (size_t i = 0; i < s->ntrack; i++) {
        struct vq_conn_track *t = &s->track[i];
        if (t->deadline_ms > 1 && (!oldest || t->deadline_ms < oldest->deadline_ms)) oldest = t;
    }
    if (oldest) oldest->deadline_ms = 1; /* long past: the sweep drops it */
    /* A one-shot event: activating the periodic one would push its next run
     * back by a period each time. */
    event_active(s->sweep_now, EV_TIMEOUT, 1);
    return oldest != NULL;
}

/* evhttp's bevcb: called for each accepted connection, before evhttp sets the fd. */
static struct bufferevent *new_bev(struct event_base *base, void *arg)
{
    vq_sched *s = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev || grow(s) < 0) return bev; /* untracked: the inactivity timeout still holds */
    bufferevent_incref(bev);
    int64_t deadline = s->ntrack < VQ_HTTP_MAX_OPEN || make_room(s) ? next_deadline() : 1;
    s->track[s->ntrack++] = (struct vq_conn_track){bev, deadline};
    return bev;
}

static struct vq_conn_track *find(vq_sched *s, struct evhttp_request *ev)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    for (size_t i = 0; bev && i < s->ntrack; i++)
        if (s->track[i].bev == bev) return &s->track[i];
    return NULL;
}

/* The answer is sent: the clock runs again for the next request. */
static void answered(struct evhttp_request *ev, void *arg)
{
    struct vq_conn_track *t = find(arg, ev);
    if (t) t->deadline_ms = next_deadline();
}

void vq_conns_request_(vq_sched *s, struct evhttp_request *ev)
{
    struct vq_conn_track *t = find(s, ev);
    if (!t) return;
    t->deadline_ms = 0; /* a long poll may take VQ_EVENTS_WAIT_MAX_S */
    evhttp_request_set_on_complete_cb(ev, answered, s);
}

/* bufferevent_free() clears every callback; evhttp clears only the read one
 * while it writes an answer, and keeps its event callback while it lives. */
static int released(struct bufferevent *bev)
{
    bufferevent_data_cb readcb = NULL, writecb = NULL;
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, NULL);
    return !readcb && !writecb && !eventcb;
}

/* 1 when the connection was shut down: evhttp then reads EOF and frees it,
 * and the peer reads EOF too.  Without an fd yet, the next sweep tries again. */
static int drop(struct vq_conn_track *t)
{
    evutil_socket_t fd = bufferevent_getfd(t->bev);
    if (fd < 0) return 0;
    t->deadline_ms = 0;
    return shutdown(fd, SHUT_RDWR) == 0;
}

static void sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    vq_sched *s = arg;
    int64_t now = vq_now_ms();
    int dropped = 0;
    for (size_t i = 0; i < s->ntrack;) {
        struct vq_conn_track *t = &s->track[i];
        if (released(t->bev)) {
            bufferevent_decref(t->bev); /* the last reference: closes the fd */
            *t = s->track[--s->ntrack];
            continue;
        }
        if (t->deadline_ms && now >= t->deadline_ms) dropped += drop(t);
        i++;
    }
    if (dropped) /* one line per sweep, not one per connection of a flood */
        vq_log(VQ_LOG_INFO, "http: closed %d connection(s) that sent no complete request in %d s, "
                            "or idle ones over %d open", dropped, VQ_HTTP_REQUEST_S, VQ_HTTP_MAX_OPEN);
}

int vq_conns_start_(vq_sched *s, vq_error *err)
{
    struct timeval every = {0, VQ_HTTP_SWEEP_MS * 1000};
    s->sweep = event_new(s->base, -1, EV_PERSIST, sweep, s);
    s->sweep_now = event_new(s->base, -1, 0, sweep, s);
    if (!s->sweep || !s->sweep_now || event_add(s->sweep, &every) != 0)
        return vq_error_set(err, VQ_ENOMEM, "cannot start the connection sweep");
    evhttp_set_bevcb(s->http, new_bev, s);
    return 0;
}

size_t vq_conns_busy_(vq_sched *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->ntrack; i++)
        n += s->track[i].deadline_ms == 0 && !released(s->track[i].bev);
    return n;
}

void vq_conns_stop_(vq_sched *s)
{
    if (s->sweep) event_free(s->sweep);
    if (s->sweep_now) event_free(s->sweep_now);
    s->sweep = s->sweep_now = NULL;
    for (size_t i = 0; i < s->ntrack; i++) bufferevent_decref(s->track[i].bev);
    free(s->track);
    s->track = NULL;
    s->ntrack = s->captrack = 0;
}
