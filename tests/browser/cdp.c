/* The CDP client of cdp.h.  Tests only: fork/exec is fine here. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "browser/cdp.h"

#define T_CDP_EXPR_MAX 8192      /* one JS expression, formatted */
#define T_CDP_MSG_MAX (64 << 20) /* one message from the browser (full-page PNGs) */
#define T_CDP_POLL_MS 50
#define T_CDP_STOP_MS 5000

/* What the page records for the test before any of its own scripts run:
 * CSP violations and uncaught errors.  Injected by CDP, so the page's CSP
 * does not apply to it. */
static const char page_hooks[] =
    "window.__t = {csp: [], errors: []};"
    "document.addEventListener('securitypolicyviolation', e => "
    "  window.__t.csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    "window.addEventListener('error', e => window.__t.errors.push(String(e.message)));"
    "window.addEventListener('unhandledrejection', e => "
    "  window.__t.errors.push('unhandled rejection: ' + String(e.reason)));";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the pipe ------------------------------------------------------------ */

static int send_msg(t_cdp *c, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text) return -1;
    size_t len = strlen(text) + 1; /* the NUL ends the message */
    for (size_t off = 0; off < len;) {
        ssize_t n = write(c->to_browser, text + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "# cdp: write to the browser: %s\n", strerror(errno));
            free(text);
            return -1;
        }
        off += (size_t)n;
    }
    free(text);
    return 0;
}

/* One message split off the buffer (new reference), or NULL when none is whole. */
static json_t *take_msg(t_cdp *c)
{
    char *nul = c->len ? memchr(c->buf, '\0', c->len) : NULL;
    if (!nul) return NULL;
    size_t n = (size_t)(nul - c->buf);
    json_t *m = json_loadb(c->buf, n, 0, NULL);
    memmove(c->buf, nul + 1, c->len - n - 1);
    c->len -= n + 1;
    if (!m) fprintf(stderr, "# cdp: a message from the browser is not JSON\n");
    return m;
}

/* Reads what the browser sent, waiting until deadline.  0, or -1 on timeout/EOF. */
static int fill(t_cdp *c, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left <= 0) return -1;
    struct pollfd p = {.fd = c->from_browser, .events = POLLIN};
    int r = poll(&p, 1, (int)left);
    if (r <= 0) return r < 0 && errno == EINTR ? 0 : -1;
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 1 << 20;
        char *nb = cap <= T_CDP_MSG_MAX ? realloc(c->buf, cap) : NULL;
        if (!nb) {
            fprintf(stderr, "# cdp: a message from the browser is over %d bytes\n", T_CDP_MSG_MAX);
            return -1;
        }
        c->buf = nb;
        c->cap = cap;
    }
    ssize_t n = read(c->from_browser, c->buf + c->len, c->cap - c->len);
    if (n < 0 && errno == EINTR) return 0;
    if (n <= 0) {
        fprintf(stderr, "# cdp: the browser closed its pipe\n");
        return -1;
    }
    c->len += (size_t)n;
    return 0;
}

/* Events the tests care about; the rest are dropped. */
static void on_event(t_cdp *c, json_t *m)
{
    const char *method = json_string_value(json_object_get(m, "method"));
    if (!method || strcmp(method, "Runtime.exceptionThrown") != 0) return;
    json_t *d = json_object_get(json_object_get(m, "params"), "exceptionDetails");
    json_t *ex = json_object_get(d, "exception");
    const char *text = json_string_value(json_object_get(ex, "description"));
    if (!text) text = json_string_value(json_object_get(d, "text"));
    c->exceptions++;
    snprintf(c->last_exception, sizeof c->last_exception, "%s", text ? text : "?");
    fprintf(stderr, "# page exception: %s\n", c->last_exception);
}

/* ---- commands ------------------------------------------------------------ */

/* Sends a command without waiting; its id, or -1. */
static int send_cmd(t_cdp *c, int page, const char *method, json_t *params)
{
    int id = ++c->next_id;
    json_t *msg = json_pack("{s:i,s:s,s:o}", "id", id, "method", method,
                            "params", params ? params : json_object());
    if (page && c->session[0]) json_object_set_new(msg, "sessionId", json_string(c->session));
    return send_msg(c, msg) ? -1 : id;
}

/* The answer to command id: its result (new reference) or NULL. */
static json_t *wait_reply(t_cdp *c, int id, const char *method, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        json_t *m;
        while ((m = take_msg(c))) {
            json_t *mid = json_object_get(m, "id");
            if (!mid) {
                on_event(c, m);
            } else if (json_integer_value(mid) == id) {
                json_t *res = json_incref(json_object_get(m, "result"));
                json_t *err = json_object_get(m, "error");
                if (err) {
                    fprintf(stderr, "# cdp: %s: %s\n", method,
                            json_string_value(json_object_get(err, "message")));
                    json_decref(res);
                    res = NULL;
                }
                json_decref(m);
                return res;
            }
            json_decref(m);
        }
        if (fill(c, deadline)) {
            fprintf(stderr, "# cdp: %s: no answer within %d ms\n", method, timeout_ms);
            return NULL;
        }
    }
}

json_t *t_cdp_call(t_cdp *c, int page, const char *method, json_t *params, int timeout_ms)
{
    int id = send_cmd(c, page, method, params);
    return id < 0 ? NULL : wait_reply(c, id, method, timeout_ms);
}

static json_t *eval_v(t_cdp *c, int quiet, const char *fmt, va_list ap)
{
    char expr[T_CDP_EXPR_MAX];
    int n = vsnprintf(expr, sizeof expr, fmt, ap);
    if (n < 0 || (size_t)n >= sizeof expr) {
        fprintf(stderr, "# cdp: expression over %d bytes\n", T_CDP_EXPR_MAX);
        return NULL;
    }
    json_t *r = t_cdp_call(c, 1, "Runtime.evaluate",
                           json_pack("{s:s,s:b,s:b}", "expression", expr, "returnByValue", 1,
                                     "awaitPromise", 1),
                           T_CDP_CALL_MS);
    if (!r) return NULL;
    json_t *ex = json_object_get(r, "exceptionDetails");
    json_t *v = NULL;
    if (ex) {
        json_t *e = json_object_get(ex, "exception");
        const char *d = json_string_value(json_object_get(e, "description"));
        if (!quiet) fprintf(stderr, "# cdp: `%.200s` threw: %s\n", expr, d ? d : "?");
    } else {
        v = json_object_get(json_object_get(r, "result"), "value");
        v = v ? json_incref(v) : json_null();
    }
    json_decref(r);
    return v;
}

json_t *t_cdp_eval(t_cdp *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *v = eval_v(c, 0, fmt, ap);
    va_end(ap);
    return v;
}

char *t_cdp_eval_str(t_cdp *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *v = eval_v(c, 0, fmt, ap);
    va_end(ap);
    if (!v) return NULL;
    char *s = json_is_string(v) ? strdup(json_string_value(v))
                                : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

static int truthy(const json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    if (json_is_real(v)) return json_real_value(v) != 0;
    if (json_is_string(v)) return json_string_length(v) != 0;
    return 1;
}

int t_cdp_wait(t_cdp *c, int timeout_ms, const char *fmt, ...)
{
    char expr[T_CDP_EXPR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(expr, sizeof expr, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof expr) return 0;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        json_t *v = t_cdp_eval(c, "%s", expr);
        int ok = truthy(v);
        json_decref(v);
        if (ok) return 1;
        if (now_ms() >= deadline) break;
        nap_ms(T_CDP_POLL_MS);
    }
    fprintf(stderr, "# cdp: not true within %d ms: %.300s\n", timeout_ms, expr);
    return 0;
}

/* ---- the browser --------------------------------------------------------- */

/* In the child: the pipes on fds 3 and 4, stderr to the log, then exec. */
static void exec_browser(const char *browser, const char *profile, const char *log, int in,
                         int out)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "--user-data-dir=%s", profile);
    if (dup2(in, 3) < 0 || dup2(out, 4) < 0) _exit(126);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    /* Flags for root in a container, and no traffic the test did not ask for. */
    execl(browser, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
          "--no-first-run", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--disable-extensions", "--disable-default-apps",
          "--disable-dev-shm-usage", "--no-default-browser-check", "--mute-audio",
          "--remote-debugging-pipe", dir, "about:blank", (char *)NULL);
    _exit(127);
}

static int spawn_browser(t_cdp *c, const char *browser, const char *profile, const char *log)
{
    int to[2], from[2]; /* to[0]: browser reads (fd 3); from[1]: browser writes (fd 4) */
    if (pipe(to) || pipe(from)) {
        perror("# cdp: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(to[1]);
        close(from[0]);
        exec_browser(browser, profile, log, to[0], from[1]);
    }
    close(to[0]);
    close(from[1]);
    fcntl(to[1], F_SETFD, FD_CLOEXEC);
    fcntl(from[0], F_SETFD, FD_CLOEXEC);
    c->pid = pid;
    c->to_browser = to[1];
    c->from_browser = from[0];
    return 0;
}

/* A new page target, attached as a flattened session. */
static int attach_page(t_cdp *c)
{
    json_t *t = t_cdp_call(c, 0, "Target.createTarget", json_pack("{s:s}", "url", "about:blank"),
                           T_CDP_CALL_MS);
    const char *target = json_string_value(json_object_get(t, "targetId"));
    json_t *a = target ? t_cdp_call(c, 0, "Target.attachToTarget",
                                    json_pack("{s:s,s:b}", "targetId", target, "flatten", 1),
                                    T_CDP_CALL_MS)
                       : NULL;
    const char *sid = json_string_value(json_object_get(a, "sessionId"));
    if (sid) snprintf(c->session, sizeof c->session, "%s", sid);
    json_decref(t);
    json_decref(a);
    return sid ? 0 : -1;
}

static int call_ok(t_cdp *c, int page, const char *method, json_t *params)
{
    json_t *r = t_cdp_call(c, page, method, params, T_CDP_CALL_MS);
    json_decref(r);
    return r ? 0 : -1;
}

int t_cdp_start(t_cdp *c, const char *browser, const char *profile, const char *log)
{
    memset(c, 0, sizeof *c);
    c->to_browser = c->from_browser = -1;
    signal(SIGPIPE, SIG_IGN); /* a dead browser is an error return, not a signal */
    mkdir(profile, 0700);
    if (spawn_browser(c, browser, profile, log)) return -1;
    /* The first answer also tells that the browser is up (it may take a few s). */
    json_t *v = t_cdp_call(c, 0, "Browser.getVersion", NULL, 30000);
    if (!v) {
        fprintf(stderr, "# cdp: %s did not answer; see %s\n", browser, log);
        return -1;
    }
    fprintf(stderr, "# browser: %s\n", json_string_value(json_object_get(v, "product")));
    json_decref(v);
    if (attach_page(c) || call_ok(c, 1, "Page.enable", NULL) ||
        call_ok(c, 1, "Runtime.enable", NULL) ||
        call_ok(c, 1, "Page.addScriptToEvaluateOnNewDocument",
                json_pack("{s:s}", "source", page_hooks)))
        return -1;
    return 0;
}

void t_cdp_stop(t_cdp *c)
{
    if (c->pid > 0) {
        json_decref(t_cdp_call(c, 0, "Browser.close", NULL, 2000));
        int64_t deadline = now_ms() + T_CDP_STOP_MS;
        int st;
        while (waitpid(c->pid, &st, WNOHANG) == 0) {
            if (now_ms() >= deadline) {
                kill(c->pid, SIGKILL);
                waitpid(c->pid, &st, 0);
                break;
            }
            nap_ms(T_CDP_POLL_MS);
        }
        c->pid = 0;
    }
    if (c->to_browser >= 0) close(c->to_browser);
    if (c->from_browser >= 0) close(c->from_browser);
    c->to_browser = c->from_browser = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* ---- page helpers -------------------------------------------------------- */

const char *t_js(int slot, const char *s)
{
    static char buf[4][2048];
    char *out = buf[slot & 3];
    json_t *v = json_string(s ? s : "");
    char *text = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!text || strlen(text) >= sizeof buf[0]) {
        fprintf(stderr, "# cdp: a string for JS is too long\n");
        snprintf(out, sizeof buf[0], "\"\"");
    } else {
        snprintf(out, sizeof buf[0], "%s", text);
    }
    free(text);
    return out;
}

int t_cdp_open(t_cdp *c, const char *url)
{
    if (call_ok(c, 1, "Page.navigate", json_pack("{s:s}", "url", url))) return -1;
    return t_cdp_wait(c, 15000, "location.href === %s && document.readyState === 'complete'",
                      t_js(0, url))
               ? 0
               : -1;
}

int t_cdp_viewport(t_cdp *c, int width, int height)
{
    return call_ok(c, 1, "Emulation.setDeviceMetricsOverride",
                   json_pack("{s:i,s:i,s:i,s:b}", "width", width, "height", height,
                             "deviceScaleFactor", 1, "mobile", 0));
}

static json_t *mouse(const char *type, double x, double y)
{
    return json_pack("{s:s,s:f,s:f,s:s,s:i,s:i}", "type", type, "x", x, "y", y, "button", "left",
                     "buttons", strcmp(type, "mouseReleased") ? 1 : 0, "clickCount", 1);
}

/* The element's centre once its box has held still for two frames, and
 * whether a click there reaches it (not covered by a dialog, not hidden,
 * not disabled). */
static const char click_target_js[] =
    "(async () => { const e = document.querySelector(%s);"
    "  if (!e) return 'no element';"
    "  e.scrollIntoView({block: 'center', inline: 'nearest'});"
    "  const frame = () => new Promise(r => requestAnimationFrame(() => r()));"
    "  let r = e.getBoundingClientRect();"
    "  for (let i = 0; i < 20; i++) {"
    "    await frame(); await frame();"
    "    const q = e.getBoundingClientRect();"
    "    if (q.x === r.x && q.y === r.y && q.width === r.width && q.height === r.height) break;"
    "    r = q; }"
    "  if (!r.width || !r.height) return 'not visible';"
    "  if (e.disabled) return 'disabled';"
    "  const x = r.left + r.width / 2, y = r.top + r.height / 2;"
    "  const top = document.elementFromPoint(x, y);"
    "  if (!top || !(top === e || e.contains(top))) return 'covered';"
    "  return [x, y]; })()";

int t_cdp_click(t_cdp *c, const char *selector)
{
    json_t *v = t_cdp_eval(c, click_target_js, t_js(0, selector));
    if (!json_is_array(v)) {
        fprintf(stderr, "# cdp: cannot click %s: %s\n", selector,
                json_is_string(v) ? json_string_value(v) : "evaluation failed");
        json_decref(v);
        return -1;
    }
    double x = json_number_value(json_array_get(v, 0)), y = json_number_value(json_array_get(v, 1));
    json_decref(v);
    /* Sent back to back, so that no refresh of the page runs between the
     * press and the release (a click needs both on the same element). */
    int ids[3] = {send_cmd(c, 1, "Input.dispatchMouseEvent",
                           json_pack("{s:s,s:f,s:f}", "type", "mouseMoved", "x", x, "y", y)),
                  send_cmd(c, 1, "Input.dispatchMouseEvent", mouse("mousePressed", x, y)),
                  send_cmd(c, 1, "Input.dispatchMouseEvent", mouse("mouseReleased", x, y))};
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        json_t *r = ids[i] < 0 ? NULL : wait_reply(c, ids[i], "Input.dispatchMouseEvent",
                                                   T_CDP_CALL_MS);
        if (!r) rc = -1;
        json_decref(r);
    }
    return rc;
}

static const struct {
    const char *key, *code, *text;
    int vk;
} keys[] = {
    {"Tab", "Tab", NULL, 9},
    {"Enter", "Enter", "\r", 13},
    {"Escape", "Escape", NULL, 27},
    {" ", "Space", " ", 32},
};

int t_cdp_key(t_cdp *c, const char *key)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(keys[i].key, key) != 0) continue;
        json_t *down = json_pack("{s:s,s:s,s:s,s:i}", "type", keys[i].text ? "keyDown" : "rawKeyDown",
                                 "key", keys[i].key, "code", keys[i].code,
                                 "windowsVirtualKeyCode", keys[i].vk);
        if (keys[i].text) json_object_set_new(down, "text", json_string(keys[i].text));
        if (call_ok(c, 1, "Input.dispatchKeyEvent", down)) return -1;
        return call_ok(c, 1, "Input.dispatchKeyEvent",
                       json_pack("{s:s,s:s,s:s,s:i}", "type", "keyUp", "key", keys[i].key, "code",
                                 keys[i].code, "windowsVirtualKeyCode", keys[i].vk));
    }
    fprintf(stderr, "# cdp: unknown key %s\n", key);
    return -1;
}

int t_cdp_type(t_cdp *c, const char *text)
{
    return call_ok(c, 1, "Input.insertText", json_pack("{s:s}", "text", text));
}

/* Decodes base64 in place; returns the decoded length, or -1 on a bad byte. */
static long unbase64(char *s)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (const char *p = s; *p && *p != '='; p++) {
        const char *k = strchr(abc, *p);
        if (!k || !*p) return -1;
        acc = (acc << 6) | (uint32_t)(k - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            s[out++] = (char)((acc >> bits) & 0xff);
        }
    }
    return (long)out;
}

/* Screenshot parameters: the viewport, or a clip of the whole page. */
static json_t *shot_params(t_cdp *c, int full_page)
{
    json_t *p = json_pack("{s:s}", "format", "png");
    if (!full_page) return p;
    json_t *m = t_cdp_call(c, 1, "Page.getLayoutMetrics", NULL, T_CDP_CALL_MS);
    json_t *size = json_object_get(m, "cssContentSize");
    if (size) {
        json_object_set_new(p, "captureBeyondViewport", json_true());
        json_object_set_new(p, "clip", json_pack("{s:i,s:i,s:f,s:f,s:i}", "x", 0, "y", 0, "width",
                                                 json_number_value(json_object_get(size, "width")),
                                                 "height",
                                                 json_number_value(json_object_get(size, "height")),
                                                 "scale", 1));
    }
    json_decref(m);
    return p;
}

int t_cdp_screenshot(t_cdp *c, const char *path, int full_page)
{
    json_t *r = t_cdp_call(c, 1, "Page.captureScreenshot", shot_params(c, full_page), 30000);
    const char *data = json_string_value(json_object_get(r, "data"));
    char *bytes = data ? strdup(data) : NULL;
    json_decref(r);
    long n = bytes ? unbase64(bytes) : -1;
    FILE *f = n > 0 ? fopen(path, "wb") : NULL;
    int ok = f && fwrite(bytes, 1, (size_t)n, f) == (size_t)n;
    if (f && fclose(f)) ok = 0;
    free(bytes);
    if (!ok) fprintf(stderr, "# cdp: screenshot %s failed\n", path);
    return ok ? 0 : -1;
}
