/* A small Chrome DevTools Protocol client for browser tests: it starts a
 * headless chromium with --remote-debugging-pipe (CDP messages as JSON, each
 * ended by a NUL byte, on fds 3 and 4 of the browser: no port, no WebSocket)
 * and drives one page.
 *
 *   t_cdp b;
 *   REQUIRE(t_cdp_start(&b, "/usr/bin/chromium", "profile", "chromium.log") == 0);
 *   t_cdp_viewport(&b, 1280, 800);
 *   t_cdp_open(&b, "http://127.0.0.1:8085/");
 *   CHECK(t_cdp_wait(&b, 10000, "document.querySelectorAll('#disks tbody tr').length == %d", n));
 *   t_cdp_click(&b, "#upgrade");
 *   t_cdp_screenshot(&b, "page.png", 1);
 *   t_cdp_stop(&b);
 *
 * Every call has a deadline; none sleeps to wait for a result. */
#ifndef VOLQ_TEST_CDP_H
#define VOLQ_TEST_CDP_H
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#define T_CDP_CALL_MS 15000  /* default deadline of one command */

typedef struct t_cdp {
    pid_t pid;               /* the browser (its wrapper script), 0 when stopped */
    int to_browser;          /* our end of the browser's fd 3 */
    int from_browser;        /* our end of the browser's fd 4 */
    char *buf;               /* bytes read and not yet split at a NUL (owned) */
    size_t len, cap;
    int next_id;
    char session[128];       /* the page's flattened session id */
    int exceptions;          /* Runtime.exceptionThrown events seen */
    char last_exception[512];
} t_cdp;

/* Starts the browser (profile: a new empty --user-data-dir, made if missing;
 * the browser's stderr goes to log) and attaches to a new blank page.
 * 0, or -1 with a message on stderr. */
int t_cdp_start(t_cdp *c, const char *browser, const char *profile, const char *log);
/* Browser.close, then waits for the browser (SIGKILL after a deadline). */
void t_cdp_stop(t_cdp *c);

/* Sends method with params (stolen; may be NULL) to the page (page != 0) or
 * the browser, and waits for its answer.  Returns the result object (new
 * reference) or NULL (the error on stderr). */
json_t *t_cdp_call(t_cdp *c, int page, const char *method, json_t *params, int timeout_ms);

/* Evaluates a JS expression (printf format) in the page, awaiting a promise;
 * returns its value by value (new reference; JSON null for undefined), or
 * NULL when it threw or the call failed. */
json_t *t_cdp_eval(t_cdp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The expression's value as a new string (strings as they are, anything else
 * as JSON), or NULL. */
char *t_cdp_eval_str(t_cdp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Polls the expression every 50 ms until it is truthy (1) or timeout_ms
 * passes (0; the expression is named on stderr). */
int t_cdp_wait(t_cdp *c, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Navigates and waits for the load event's document.readyState "complete". */
int t_cdp_open(t_cdp *c, const char *url);
/* Sets the page's viewport (CSS pixels, scale 1). */
int t_cdp_viewport(t_cdp *c, int width, int height);
/* A real mouse click (pressed, released) at the centre of the first element
 * matching the CSS selector, after scrolling it into view.  0 or -1. */
int t_cdp_click(t_cdp *c, const char *selector);
/* A key press on the focused element: "Tab", "Enter", "Escape". */
int t_cdp_key(t_cdp *c, const char *key);
/* Types text into the focused element. */
int t_cdp_type(t_cdp *c, const char *text);
/* Writes a PNG of the viewport, or of the whole page with full_page. */
int t_cdp_screenshot(t_cdp *c, const char *path, int full_page);

/* s as a JavaScript string literal (JSON), in a static buffer of the
 * given slot (0..3) so that a format can take several.  Truncated values
 * fail loudly: the literal becomes "" and a message is printed. */
const char *t_js(int slot, const char *s);

#endif
