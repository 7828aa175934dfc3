/* The dashboard (GET /, scheduler/web/) against the real stack: a real
 * redis-server, volq-scheduler with VOLQ_TOKEN, volq-worker, a domain made by
 * scripts/mkdomain.sh, and a real headless chromium driven over the Chrome
 * DevTools Protocol (tests/browser/cdp.c).  Screenshots land in the case's
 * folder; run with T_KEEP=1 to keep them. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "browser/cdp.c" /* the CDP client, compiled into this test only */
#include "lib/stack.h"
#include "t.h"

#define TOKEN "dashboard-token-5f2c"
#define DASH "\xe2\x80\x93" /* what the page shows for null (U+2013) */
#define PAGE_MS 10000       /* a change reaches the page within a few 2 s refreshes */
#define JOBS_MS 30000       /* qemu-img amend of a few tiny volumes on a slow machine */

static t_stack S;
static t_cdp B;

/* ---- files and headers ---------------------------------------------------- */

/* A file of scheduler/web/ (new string), or NULL. */
static char *source_file(const char *name, size_t *len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/scheduler/web/%s", t_source_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf) buf[*len] = '\0';
    return buf;
}

/* A header that may be missing today (the scheduler's to serve): when there,
 * it must hold each of want[] and none of bad[]; when missing, a gap line. */
static void check_optional_header(const t_resp *h, const char *path, const char *name,
                                  const char *const *want, const char *const *bad)
{
    char *v = t_resp_header(h, name);
    if (!v) {
        printf("# gap: %s is served without %s\n", path, name);
        return;
    }
    for (; want && *want; want++) CHECK_CONTAINS(v, *want);
    for (; bad && *bad; bad++)
        if (strstr(v, *bad)) T_FAIL_("%s of %s has %s: %s", name, path, *bad, v);
    free(v);
}

static void check_asset(const char *path, const char *file, const char *ctype)
{
    static const char *const csp_want[] = {"default-src 'self'", "script-src 'self'",
                                           "style-src 'self'", "frame-ancestors 'none'", NULL};
    static const char *const csp_bad[] = {"unsafe-inline", "unsafe-eval", "*", NULL};
    static const char *const nosniff[] = {"nosniff", NULL};
    t_resp h;
    size_t len = 0;
    char *want = source_file(file, &len);
    REQUIRE(want);
    REQUIRE(t_req(&S, "GET", path, NULL, NULL, &h) == 0);
    CHECK_INT(h.status, 200);
    char *type = t_resp_header(&h, "Content-Type"), *cache = t_resp_header(&h, "Cache-Control");
    CHECK_STR(type, ctype);
    CHECK_CONTAINS(cache, "no-cache");
    CHECK_INT(h.len, len);
    CHECK(h.body && memcmp(h.body, want, len) == 0);
    check_optional_header(&h, path, "Content-Security-Policy", csp_want, csp_bad);
    check_optional_header(&h, path, "X-Content-Type-Options", nosniff, NULL);
    free(type);
    free(cache);
    free(want);
    t_resp_free(&h);
}

/* No inline script, style or handler, and nothing loaded from elsewhere:
 * what the CSP would refuse is refused here first. */
static void check_page_source(void)
{
    size_t len;
    char *html = source_file("index.html", &len), *js = source_file("app.js", &len);
    REQUIRE(html && js);
    for (const char *p = html; (p = strstr(p, "<script")); p++) {
        const char *end = strchr(p, '>'), *src = strstr(p, " src=");
        CHECK(end && src && src < end && strncmp(end + 1, "</script>", 9) == 0);
    }
    CHECK(!strstr(html, "<style"));
    CHECK(!strstr(html, " style="));
    for (const char *p = html; (p = strstr(p, " on")); p++) {
        const char *q = p + 3;
        while (islower((unsigned char)*q)) q++;
        if (*q == '=') T_FAIL_("an inline handler in index.html: %.20s", p);
    }
    CHECK(!strstr(html, "http://") && !strstr(html, "https://"));
    CHECK(!strstr(js, ".innerHTML") && !strstr(js, ".outerHTML") &&
          !strstr(js, "insertAdjacentHTML") && !strstr(js, "document.write") &&
          !strstr(js, "eval(") && !strstr(js, "new Function"));
    free(html);
    free(js);
}

static void test_dashboard_served_with_headers(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    check_asset("/", "index.html", "text/html; charset=utf-8");
    check_asset("/web/app.js", "app.js", "text/javascript; charset=utf-8");
    check_asset("/web/style.css", "style.css", "text/css; charset=utf-8");
    t_resp h;
    REQUIRE(t_req(&S, "GET", "/web/missing.js", NULL, NULL, &h) == 0);
    CHECK_INT(h.status, 404);
    t_resp_free(&h);
    check_page_source();
    t_stack_stop(&S);
}

/* ---- the browser ------------------------------------------------------------ */

/* scripts/setup-browser.sh installs chromium when missing and prints its path. */
static int browser_path(char *out, size_t sz)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/setup-browser.sh'", t_source_dir());
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (!fgets(out, (int)sz, p)) out[0] = '\0';
    int st = pclose(p);
    out[strcspn(out, "\n")] = '\0';
    return st == 0 && out[0] == '/' ? 0 : -1;
}

static void open_page(const char *browser, int width, int height)
{
    char url[128], profile[4200];
    snprintf(url, sizeof url, "%s/", S.api);
    snprintf(profile, sizeof profile, "%s/chromium-profile", t_dir());
    REQUIRE(t_cdp_start(&B, browser, profile, "chromium.log") == 0);
    REQUIRE(t_cdp_viewport(&B, width, height) == 0);
    REQUIRE(t_cdp_open(&B, url) == 0);
}

static void shot(const char *name, int full_page)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", t_dir(), name);
    CHECK(t_cdp_screenshot(&B, path, full_page) == 0);
    printf("# screenshot %s\n", path);
}

/* Waits until the page has finished a refresh that started after this call. */
static void wait_refresh(void)
{
    json_t *v = t_cdp_eval(&B, "Number(document.documentElement.dataset.ticks || 0)");
    long n = (long)json_integer_value(v);
    json_decref(v);
    CHECK(t_cdp_wait(&B, PAGE_MS, "Number(document.documentElement.dataset.ticks) >= %ld", n + 2));
}

static void click(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void click(const char *fmt, ...)
{
    char sel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sel, sizeof sel, fmt, ap);
    va_end(ap);
    CHECK(t_cdp_click(&B, sel) == 0);
}

/* ---- the disks table against the CLI ----------------------------------------- */

static json_t *cli_disks(const char *sd)
{
    t_cmd c;
    REQUIRE(t_volq(&S, &c, NULL, "disks", sd, "--json", NULL) == 0);
    CHECK_INT(c.status, 0);
    json_t *v = json_incref(c.json);
    t_cmd_free(&c);
    REQUIRE(json_is_array(v));
    return v;
}

static json_t *str_or_dash(json_t *v, size_t keep)
{
    if (!json_is_string(v)) return json_string(DASH);
    return json_stringn(json_string_value(v), keep && json_string_length(v) > keep
                                                  ? keep : json_string_length(v));
}

/* {id: [alias, format, qcow version, template, locked by, status]} as the page
 * writes them. */
static json_t *expected_rows(json_t *disks)
{
    json_t *out = json_object(), *d;
    size_t i;
    json_array_foreach(disks, i, d) {
        json_object_set_new(out, json_string_value(json_object_get(d, "id")),
            json_pack("[O,o,o,s,o,O]", json_object_get(d, "alias"),
                      str_or_dash(json_object_get(d, "format"), 0),
                      str_or_dash(json_object_get(d, "qcow_version"), 0),
                      json_is_true(json_object_get(d, "template")) ? "yes" : "no",
                      str_or_dash(json_object_get(d, "locked_by"), 8),
                      json_object_get(d, "status")));
    }
    return out;
}

static const char page_rows_js[] =
    "Object.fromEntries(Array.from(document.querySelectorAll('#disks tbody tr'), tr => "
    "  [tr.dataset.key, ['c-alias', 'c-format', 'c-qcow', 'c-template', 'c-locked']"
    "    .map(c => tr.querySelector('td.' + c).textContent)"
    "    .concat([tr.querySelector('td.c-status').dataset.status])]))";

/* The page's table equals `volq disks SD --json` (polled: the page refreshes
 * every 2 s). */
static void check_disks_match_cli(const char *sd)
{
    json_t *want = expected_rows(cli_disks(sd)), *got = NULL;
    int ok = 0;
    for (int tries = 0; tries < 3 && !ok; tries++) {
        if (tries) wait_refresh();
        json_decref(got);
        got = t_cdp_eval(&B, "%s", page_rows_js);
        ok = got && json_equal(got, want);
    }
    if (!ok) {
        char *a = json_dumps(got, JSON_COMPACT), *b = json_dumps(want, JSON_COMPACT);
        T_FAIL_("disks table differs from volq disks --json:\n# page %s\n# cli  %s", a, b);
        free(a);
        free(b);
    }
    json_decref(got);
    json_decref(want);
}

/* ---- the domain ------------------------------------------------------------ */

typedef struct scene {
    const char *sd;
    char a[40], c[40];            /* disks whose leaf is made ILLEGAL, then repaired */
    char a_alias[128], c_alias[128];
    char a_leaf[40], c_leaf[40];
    int eligible;                 /* disks an upgrade would amend, before the damage */
    int ndisks;
} scene;

static int str_is(json_t *o, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && strcmp(v, want) == 0;
}

static int is_eligible(json_t *d)
{
    return !json_is_true(json_object_get(d, "template")) && str_is(d, "format", "cow") &&
           str_is(d, "qcow_version", "qcow2_v2") && str_is(d, "status", "ok");
}

static void pick(json_t *d, char *id, char *alias, char *leaf)
{
    snprintf(id, 40, "%s", json_string_value(json_object_get(d, "id")));
    snprintf(alias, 128, "%s", json_string_value(json_object_get(d, "alias")));
    snprintf(leaf, 40, "%s", json_string_value(json_object_get(d, "image_id")));
}

static void choose(scene *sc)
{
    json_t *disks = cli_disks(sc->sd), *d;
    size_t i;
    json_array_foreach(disks, i, d) {
        if (!is_eligible(d)) continue;
        if (sc->eligible == 0) pick(d, sc->a, sc->a_alias, sc->a_leaf);
        if (sc->eligible == 1) pick(d, sc->c, sc->c_alias, sc->c_leaf);
        sc->eligible++;
    }
    sc->ndisks = (int)json_array_size(disks);
    json_decref(disks);
    REQUIRE(sc->eligible >= 4);
}

/* Rewrites LEGALITY=from to LEGALITY=to in the leaf's .meta, as an
 * administrator repairing (or a failed VDSM operation leaving) a volume would. */
static void set_legality(const char *sd, const char *disk, const char *leaf, const char *from,
                         const char *to)
{
    char path[4200], buf[1024], out[1200], key[32];
    snprintf(path, sizeof path, "%s/%s/images/%s/%s.meta", S.domains, sd, disk, leaf);
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    snprintf(key, sizeof key, "LEGALITY=%s\n", from);
    char *at = strstr(buf, key);
    REQUIRE(at);
    snprintf(out, sizeof out, "%.*sLEGALITY=%s\n%s", (int)(at - buf), buf, to, at + strlen(key));
    f = fopen(path, "w");
    REQUIRE(f);
    REQUIRE(fputs(out, f) >= 0 && fclose(f) == 0);
}

/* ---- the steps ------------------------------------------------------------- */

static void step_loaded(const scene *sc, int ndisks)
{
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.getElementById('conn').dataset.state === 'live' && "
                     "document.querySelectorAll('#disks tbody tr').length === %d", ndisks));
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.getElementById('domain').value === %s",
                     t_js(0, sc->sd)));
    check_disks_match_cli(sc->sd);
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.querySelector('#states [data-state=queued] .n')"
                     ".textContent === '0'"));
    shot("1-loaded-1280x800.png", 0);
}

/* Upgrade with the confirm step driven by the keyboard; the first changing
 * request meets 401 and the page asks for the token. */
static void step_upgrade(const scene *sc)
{
    CHECK(t_cdp_wait(&B, 2000, "document.getElementById('upgrade').disabled")); /* V3, box unticked */
    click("#to-v4");
    CHECK(t_cdp_wait(&B, 2000, "!document.getElementById('upgrade').disabled"));
    click("#upgrade");
    CHECK(t_cdp_wait(&B, 2000, "document.getElementById('confirm-dialog').open && "
                     "document.activeElement.id === 'confirm-cancel'"));
    shot("2-confirm-1280x800.png", 0);
    CHECK(t_cdp_key(&B, "Tab") == 0);
    CHECK(t_cdp_wait(&B, 2000, "document.activeElement.id === 'confirm-ok'"));
    CHECK(t_cdp_key(&B, "Enter") == 0);
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.getElementById('token-dialog').open && "
                     "document.activeElement.id === 'token'"));
    CHECK(t_cdp_type(&B, TOKEN) == 0);
    CHECK(t_cdp_key(&B, "Enter") == 0);
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.getElementById('notice').textContent.includes("
                     "'accepted: %d jobs queued')", sc->eligible - 2));
    CHECK(t_cdp_wait(&B, 1000, "sessionStorage.getItem('volq.token') === %s && "
                     "!location.href.includes(%s)", t_js(0, TOKEN), t_js(1, TOKEN)));
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.querySelectorAll('#active tbody tr "
                     "td[data-state=queued]').length === %d", sc->eligible - 2));
}

/* Cancels one queued job by its button; returns its disk id (static). */
static const char *step_cancel(void)
{
    static char disk[40];
    char *job = t_cdp_eval_str(&B, "document.querySelector('#active tbody tr').dataset.key");
    REQUIRE(job);
    t_resp h;
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", job);
    click("#active tr[data-key='%s'] button.cancel", job);
    CHECK(t_cdp_wait(&B, PAGE_MS, "!document.querySelector(\"#active tr[data-key='%s']\") && "
                     "document.querySelector('#states [data-state=cancelled] .n').textContent "
                     "=== '1'", job));
    REQUIRE(t_req(&S, "GET", path, NULL, NULL, &h) == 0 && h.json);
    CHECK_STR(json_string_value(json_object_get(h.json, "state")), "cancelled");
    snprintf(disk, sizeof disk, "%s", json_string_value(json_object_get(h.json, "disk_id")));
    t_resp_free(&h);
    free(job);
    return disk;
}

static void wait_idle(void)
{
    CHECK(t_cdp_wait(&B, JOBS_MS, "document.querySelectorAll('#active tbody tr').length === 0 && "
                     "document.querySelector('#states [data-state=running] .n').textContent "
                     "=== '0' && document.querySelector('#states [data-state=queued] .n')"
                     ".textContent === '0'"));
}

/* The workers run the upgrade; the cancelled disk is amended by its button
 * (no second token prompt). */
static void step_run(const char *cancelled)
{
    REQUIRE(t_stack_start_workers(&S, 2) == 0);
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.querySelectorAll('#workers tbody tr').length === 2"));
    wait_idle();
    click("#disks tr[data-key='%s'] button.amend", cancelled);
    CHECK(t_cdp_wait(&B, 500, "!document.getElementById('token-dialog').open"));
    CHECK(t_cdp_wait(&B, JOBS_MS, "document.querySelector(\"#disks tr[data-key='%s'] td.c-qcow\")"
                     ".textContent === 'qcow2_v3'", cancelled));
}

static void fail_one(const char *disk, const char *alias, const char *leaf, int nfailed)
{
    char reason[128], event[200];
    snprintf(reason, sizeof reason, "volume %s is ILLEGAL", leaf);
    snprintf(event, sizeof event, "Failed to amend %s.", alias);
    click("#disks tr[data-key='%s'] button.amend", disk);
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.getElementById('notice').dataset.kind === 'error' "
                     "&& document.getElementById('notice').textContent.includes(%s)",
                     t_js(0, reason)));
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.querySelectorAll('#failed tbody tr').length === %d",
                     nfailed));
    CHECK(t_cdp_wait(&B, PAGE_MS, "Array.from(document.querySelectorAll('#failed td.c-reason'))"
                     ".some(td => td.textContent === %s)", t_js(0, reason)));
    CHECK(t_cdp_wait(&B, PAGE_MS, "Array.from(document.querySelectorAll('#events .msg'))"
                     ".some(e => e.textContent === %s)", t_js(0, event)));
}

/* The failed jobs' ids, by disk: the failed table's row of that disk. */
static char *failed_job_of(const char *alias)
{
    return t_cdp_eval_str(&B, "Array.from(document.querySelectorAll('#failed tbody tr'))"
                          ".find(tr => tr.querySelector('td.c-disk').textContent === %s)"
                          ".dataset.key", t_js(0, alias));
}

/* Repairs both volumes; retries A by its row's button, C by "retry all". */
static void step_repair_and_retry(const scene *sc)
{
    char *ja = failed_job_of(sc->a_alias);
    REQUIRE(ja);
    set_legality(sc->sd, sc->a, sc->a_leaf, "ILLEGAL", "LEGAL");
    set_legality(sc->sd, sc->c, sc->c_leaf, "ILLEGAL", "LEGAL");
    click("#failed tr[data-key='%s'] button.retry", ja);
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.querySelectorAll('#failed tbody tr').length === 1 && "
                     "!document.querySelector(\"#failed tr[data-key='%s']\")", ja));
    click("#retry-all");
    CHECK(t_cdp_wait(&B, PAGE_MS, "document.querySelectorAll('#failed tbody tr').length === 0"));
    CHECK(t_cdp_wait(&B, JOBS_MS, "document.getElementById('v3-bar').dataset.percent === '100' "
                     "&& document.getElementById('v3-bar').value === "
                     "document.getElementById('v3-bar').max"));
    char event[200];
    snprintf(event, sizeof event, "%s has been amended successfully.", sc->c_alias);
    CHECK(t_cdp_wait(&B, PAGE_MS, "Array.from(document.querySelectorAll('#events .msg'))"
                     ".some(e => e.textContent === %s)", t_js(0, event)));
    free(ja);
}

/* Narrow: one column, nothing wider than the window. */
static void step_narrow(void)
{
    CHECK(t_cdp_viewport(&B, 390, 844) == 0);
    CHECK(t_cdp_wait(&B, 2000, "innerWidth === 390 && "
                     "document.documentElement.scrollWidth <= innerWidth"));
    json_decref(t_cdp_eval(&B, "window.scrollTo(0, 0)"));
    shot("5-narrow-390.png", 0);
    shot("6-narrow-390-full.png", 1);
}

static void check_clean_page(void)
{
    char *t = t_cdp_eval_str(&B, "JSON.stringify(window.__t)");
    CHECK_STR(t, "{\"csp\":[],\"errors\":[]}");
    CHECK_INT(B.exceptions, 0);
    free(t);
}

static void test_dashboard_in_browser(void)
{
    char browser[1024];
    if (browser_path(browser, sizeof browser) != 0) {
        printf("# SKIP test_dashboard_in_browser: chromium is missing and cannot be installed "
               "(scripts/setup-browser.sh)\n");
        return;
    }
    scene sc = {0};
    S.token = TOKEN;
    REQUIRE(t_stack_start(&S, 0) == 0);
    REQUIRE((sc.sd = t_stack_mkdomain(&S, "--version 3 --disks 5 --chain 2 --template --thin 1 "
                                          "--raw 1 --data-mib 0")));
    choose(&sc);
    set_legality(sc.sd, sc.a, sc.a_leaf, "LEGAL", "ILLEGAL");
    set_legality(sc.sd, sc.c, sc.c_leaf, "LEGAL", "ILLEGAL");
    open_page(browser, 1280, 800);
    step_loaded(&sc, sc.ndisks);
    step_upgrade(&sc);
    step_run(step_cancel());
    fail_one(sc.a, sc.a_alias, sc.a_leaf, 1);
    fail_one(sc.c, sc.c_alias, sc.c_leaf, 2);
    shot("3-failed-1280x800.png", 0);
    step_repair_and_retry(&sc);
    wait_idle();
    check_disks_match_cli(sc.sd);
    shot("4-done-1280x800.png", 0);
    step_narrow();
    check_clean_page();
    t_cdp_stop(&B);
    t_stack_stop(&S);
}

T_MAIN(T(test_dashboard_served_with_headers), T(test_dashboard_in_browser))
