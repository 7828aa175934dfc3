/* Packaging and operations files: `cmake --install` with DESTDIR and a prefix,
 * the systemd units (systemd-analyze verify when it works here, and always a
 * strict parse of our own), the environment file against docs/operations.md,
 * docker/compose.yaml (PyYAML when present, and always a small structural
 * reader), docker/Dockerfile against the README's build commands, the man
 * pages (groff -ww when installed) and each program's --help against its page.
 * Needs only what scripts/setup.sh installs; groff, systemd-analyze, man and
 * python3-yaml are used when present (a "# note:" line says what was skipped). */
#include <ctype.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"

#define PATH_SZ 1024
#define CMD_SZ 4096
#define OUT_MAX (1024 * 1024)  /* captured output of one command */
#define FILE_MAX (256 * 1024)  /* the largest file read here (README, a man page) */

static const char *const programs[] = {"volq", "volq-scheduler", "volq-worker"};
#define NPROGRAMS (sizeof programs / sizeof programs[0])

/* ---- small helpers --------------------------------------------------------- */

static const char *src_dir(void)
{
    const char *s = getenv("VOLQ_SOURCE_DIR");
    REQUIRE(s && *s);
    return s;
}

static const char *bin_dir(void)
{
    const char *s = getenv("VOLQ_BIN_DIR");
    REQUIRE(s && *s);
    return s;
}

static void note(const char *what) { printf("# note: %s\n", what); }

/* path = a + "/" + b; fails the case on truncation. */
static void join(char *out, size_t outsz, const char *a, const char *b)
{
    REQUIRE(snprintf(out, outsz, "%s/%s", a, b) < (int)outsz);
}

/* Returns the file's text (NUL-terminated; free it), NULL when unreadable. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = malloc(FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FILE_MAX, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

static char *slurp_src(const char *rel)
{
    char p[PATH_SZ];
    join(p, sizeof p, src_dir(), rel);
    char *s = slurp(p);
    if (!s) T_FAIL_("cannot read %s", p);
    return s;
}

/* Single-quotes s for sh (tests may use the shell; the programs never do). */
static void shq(char *out, size_t outsz, const char *s)
{
    size_t o = 0;
    out[o++] = '\'';
    for (; *s && o + 5 < outsz; s++) {
        if (*s == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *s;
        }
    }
    REQUIRE(!*s);
    out[o++] = '\'';
    out[o] = '\0';
}

/* Runs cmd with sh; *out (may be NULL) gets stdout+stderr (free it).  Returns
 * the exit status, or -1 when it did not exit normally. */
static int run(const char *cmd, char **out)
{
    char full[CMD_SZ];
    REQUIRE(snprintf(full, sizeof full, "{ %s; } 2>&1", cmd) < (int)sizeof full);
    FILE *p = popen(full, "r");
    REQUIRE(p);
    char *buf = malloc(OUT_MAX + 1);
    REQUIRE(buf);
    size_t n = 0, r;
    while ((r = fread(buf + n, 1, OUT_MAX - n, p)) > 0) n += r;
    buf[n] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int have(const char *tool)
{
    char q[256], cmd[320];
    shq(q, sizeof q, tool);
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null", q);
    return run(cmd, NULL) == 0;
}

static int is_exec(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

/* The next line of *s into line (without its newline); 0 at the end. */
static int next_line(const char **s, char *line, size_t linesz)
{
    if (!**s) return 0;
    size_t n = strcspn(*s, "\n");
    snprintf(line, linesz, "%.*s", (int)(n < linesz ? n : linesz - 1), *s);
    *s += n + ((*s)[n] == '\n');
    return 1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* 1 when word occurs in text as a whole token (not inside a longer name). */
static int has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
        int before = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '-' || p[-1] == '_');
        int after = !(isalnum((unsigned char)p[n]) || p[n] == '-' || p[n] == '_');
        if (before && after) return 1;
    }
    return 0;
}

/* s with every "-" written "\\-", as man pages spell dashes. */
static void to_roff(const char *s, char *out, size_t outsz)
{
    size_t o = 0;
    for (; *s && o + 3 < outsz; s++) {
        if (*s == '-') out[o++] = '\\';
        out[o++] = *s;
    }
    out[o] = '\0';
}

/* ---- make install into a DESTDIR -------------------------------------------- */

/* cmake --install of the build folder (VOLQ_BIN_DIR's parent) into
 * t_dir()/destdir with the prefix; fills destdir.  Fails the case on error. */
static void install_into(const char *prefix, char *destdir, size_t sz)
{
    char bin[PATH_SZ], qb[PATH_SZ + 64], qd[PATH_SZ + 64], qp[PATH_SZ + 64], cmd[CMD_SZ];
    snprintf(bin, sizeof bin, "%s", bin_dir());
    join(destdir, sz, t_dir(), "destdir");
    shq(qb, sizeof qb, dirname(bin));
    shq(qd, sizeof qd, destdir);
    shq(qp, sizeof qp, prefix);
    snprintf(cmd, sizeof cmd, "DESTDIR=%s cmake --install %s --prefix %s", qd, qb, qp);
    char *out = NULL;
    int rc = run(cmd, &out);
    if (rc != 0) T_FAIL_("%s exited %d:\n%s", cmd, rc, out);
    free(out);
    REQUIRE(rc == 0);
}

typedef struct expect_file {
    const char *rel;  /* under DESTDIR */
    unsigned mode;    /* permission bits expected */
} expect_file;

static void check_installed(const char *destdir, const expect_file *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char p[PATH_SZ];
        struct stat st;
        join(p, sizeof p, destdir, e[i].rel);
        if (stat(p, &st) != 0) {
            T_FAIL_("not installed: %s", e[i].rel);
            continue;
        }
        if ((st.st_mode & 07777) != e[i].mode)
            T_FAIL_("%s: mode %04o, expected %04o", e[i].rel, st.st_mode & 07777, e[i].mode);
    }
}

static void test_packaging_install_prefix_usr(void)
{
    static const expect_file files[] = {
        {"usr/bin/volq", 0755},
        {"usr/bin/volq-scheduler", 0755},
        {"usr/bin/volq-worker", 0755},
        {"usr/share/man/man1/volq.1", 0644},
        {"usr/share/man/man1/volq-scheduler.1", 0644},
        {"usr/share/man/man1/volq-worker.1", 0644},
        {"usr/lib/systemd/system/volq-scheduler.service", 0644},
        {"usr/lib/systemd/system/volq-worker.service", 0644},
        {"etc/volq/volq.env", 0600},  /* may hold VOLQ_TOKEN */
    };
    char destdir[PATH_SZ];
    install_into("/usr", destdir, sizeof destdir);
    check_installed(destdir, files, sizeof files / sizeof files[0]);
}

static void test_packaging_install_default_prefix(void)
{
    static const expect_file files[] = {
        {"usr/local/bin/volq-worker", 0755},
        {"usr/local/share/man/man1/volq.1", 0644},
        {"usr/local/lib/systemd/system/volq-worker.service", 0644},
        {"usr/local/etc/volq/volq.env", 0600},
    };
    char destdir[PATH_SZ], unit[PATH_SZ];
    install_into("/usr/local", destdir, sizeof destdir);
    check_installed(destdir, files, sizeof files / sizeof files[0]);
    join(unit, sizeof unit, destdir, "usr/local/lib/systemd/system/volq-worker.service");
    char *u = slurp(unit);
    REQUIRE(u);
    CHECK_CONTAINS(u, "\nExecStart=/usr/local/bin/volq-worker\n");
    CHECK_CONTAINS(u, "\nEnvironmentFile=-/usr/local/etc/volq/volq.env\n");
    free(u);
}

/* An edited environment file survives a reinstall; the new one goes beside it. */
static void test_packaging_install_keeps_edited_env(void)
{
    char destdir[PATH_SZ], env[PATH_SZ], dist[PATH_SZ];
    install_into("/usr", destdir, sizeof destdir);
    join(env, sizeof env, destdir, "etc/volq/volq.env");
    join(dist, sizeof dist, destdir, "etc/volq/volq.env.dist");
    FILE *f = fopen(env, "a");
    REQUIRE(f);
    fputs("VOLQ_TOKEN=s3cret\n", f);
    fclose(f);
    install_into("/usr", destdir, sizeof destdir);
    char *kept = slurp(env), *fresh = slurp(dist);
    REQUIRE(kept && fresh);
    CHECK_CONTAINS(kept, "\nVOLQ_TOKEN=s3cret\n");
    CHECK(!strstr(fresh, "\nVOLQ_TOKEN=s3cret\n"));
    free(kept);
    free(fresh);
}

/* ---- systemd units ------------------------------------------------------------ */

#define UNIT_MAX_KV 64

typedef struct unit_kv {
    char section[16];
    char key[48];
    char value[512];
} unit_kv;

typedef struct unit_file {
    unit_kv kv[UNIT_MAX_KV];
    size_t n;
} unit_file;

/* Keys this project's units may use; anything else is a typo (systemd would
 * only warn "Unknown key ... ignoring" and run without the setting). */
static const char *const known_keys[] = {
    "Unit.Description", "Unit.Documentation", "Unit.Wants", "Unit.Requires", "Unit.After",
    "Unit.Before", "Unit.StartLimitIntervalSec", "Unit.StartLimitBurst",
    "Service.Type", "Service.User", "Service.Group", "Service.Environment",
    "Service.EnvironmentFile", "Service.StateDirectory", "Service.StateDirectoryMode",
    "Service.WorkingDirectory", "Service.ExecStart", "Service.KillSignal", "Service.KillMode",
    "Service.TimeoutStopSec", "Service.TimeoutStartSec", "Service.Restart", "Service.RestartSec",
    "Service.StandardOutput", "Service.StandardError", "Service.SyslogIdentifier",
    "Service.LimitNOFILE", "Install.WantedBy",
};

static int known_key(const char *section, const char *key)
{
    char full[80];
    snprintf(full, sizeof full, "%s.%s", section, key);
    for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
        if (strcmp(known_keys[i], full) == 0) return 1;
    return 0;
}

#define UNIT_ERR 160

static int unit_error(char *err, int lineno, const char *msg, const char *what)
{
    snprintf(err, UNIT_ERR, "line %d: %s%s%.80s", lineno, msg, *what ? ": " : "", what);
    return -1;
}

static int parse_unit_line(unit_file *u, const char *section, char *line, int lineno, char *err)
{
    char *eq = strchr(line, '=');
    if (!*section) return unit_error(err, lineno, "a setting before any [Section]", line);
    if (!eq || eq == line) return unit_error(err, lineno, "not Key=Value", line);
    *eq = '\0';
    char *key = trim(line), *val = trim(eq + 1);
    for (const char *k = key; *k; k++)
        if (!isalnum((unsigned char)*k)) return unit_error(err, lineno, "bad key", key);
    if (!known_key(section, key)) return unit_error(err, lineno, "unknown key", key);
    size_t len = strlen(val);
    if (len && val[len - 1] == '\\') return unit_error(err, lineno, "continuation line", key);
    if (u->n == UNIT_MAX_KV) return unit_error(err, lineno, "too many settings", key);
    unit_kv *kv = &u->kv[u->n++];
    snprintf(kv->section, sizeof kv->section, "%s", section);
    snprintf(kv->key, sizeof kv->key, "%s", key);
    snprintf(kv->value, sizeof kv->value, "%s", val);
    return 0;
}

/* Which of [Unit], [Service], [Install] line is (0..2), -1 for none. */
static int unit_section(const char *line)
{
    static const char *const names[] = {"[Unit]", "[Service]", "[Install]"};
    for (int i = 0; i < 3; i++)
        if (strcmp(line, names[i]) == 0) return i;
    return -1;
}

/* A strict reading of a unit: [Unit], [Service], [Install] once each, known
 * keys.  -1 with err (UNIT_ERR bytes) filled on the first problem. */
static int parse_unit(const char *text, unit_file *u, char *err)
{
    char buf[1024], section[16] = "";
    int lineno = 0, seen = 0;
    u->n = 0;
    while (next_line(&text, buf, sizeof buf)) {
        char *line = trim(buf);
        lineno++;
        if (!*line || *line == '#' || *line == ';') continue;
        if (*line != '[') {
            if (parse_unit_line(u, section, line, lineno, err)) return -1;
            continue;
        }
        int s = unit_section(line);
        if (s < 0 || (seen & (1 << s)))
            return unit_error(err, lineno, "unexpected or repeated section", line);
        seen |= 1 << s;
        snprintf(section, sizeof section, "%.*s", (int)strlen(line) - 2, line + 1);
    }
    if (seen != 7) return unit_error(err, lineno, "a unit needs [Unit], [Service] and [Install]", "");
    return 0;
}

/* The value of section.key; NULL when absent. Fails on a key given twice
 * (only Environment= may repeat). */
static const char *unit_get(const unit_file *u, const char *section, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; i < u->n; i++) {
        if (strcmp(u->kv[i].section, section) || strcmp(u->kv[i].key, key)) continue;
        if (v) T_FAIL_("%s.%s given twice", section, key);
        v = u->kv[i].value;
    }
    return v;
}

static void check_unit_settings(const unit_file *u, const char *destdir, const char *name)
{
    const char *after = unit_get(u, "Unit", "After");
    CHECK(after && has_word(after, "network-online.target") && has_word(after, "remote-fs.target"));
    CHECK_STR(unit_get(u, "Service", "Restart"), "on-failure");
    CHECK_STR(unit_get(u, "Service", "KillSignal"), "SIGTERM");
    CHECK_STR(unit_get(u, "Service", "User"), "root");
    CHECK_STR(unit_get(u, "Service", "StandardError"), "journal");
    CHECK(unit_get(u, "Install", "WantedBy") != NULL);
    const char *tmo = unit_get(u, "Service", "TimeoutStopSec");
    REQUIRE(tmo);
    CHECK(strspn(tmo, "0123456789") == strlen(tmo) && atoi(tmo) > 0);
    if (strcmp(name, "volq-worker") == 0) {
        /* A stop must let a running amend (one qemu-img run, 3600 s) finish,
         * and only the main process gets SIGTERM (it forwards it). */
        CHECK(atoi(tmo) >= 3600);
        CHECK_STR(unit_get(u, "Service", "KillMode"), "mixed");
    }
    char exec[128], path[PATH_SZ];
    snprintf(exec, sizeof exec, "/usr/bin/%s", name);
    CHECK_STR(unit_get(u, "Service", "ExecStart"), exec);
    join(path, sizeof path, destdir, exec + 1);
    CHECK(is_exec(path));
    CHECK_STR(unit_get(u, "Service", "EnvironmentFile"), "-/etc/volq/volq.env");
}

/* systemd-analyze verify on a copy whose ExecStart names the DESTDIR binary
 * (the host has no /usr/bin/volq-*), with the installed man pages on MANPATH
 * so that Documentation=man:... is checked too.  Any output is a finding:
 * verify exits 0 even on an unknown key. */
static void analyze_verify(const char *destdir, const char *name, const char *text)
{
    if (!have("systemd-analyze")) {
        note("systemd-analyze not installed: only our own parse of the units");
        return;
    }
    char copy[PATH_SZ], from[64], to[PATH_SZ], cmd[CMD_SZ], q[PATH_SZ + 64], man[PATH_SZ + 64];
    snprintf(copy, sizeof copy, "%s/%s.service", t_dir(), name);
    snprintf(from, sizeof from, "ExecStart=/usr/bin/%s\n", name);
    snprintf(to, sizeof to, "ExecStart=%s/usr/bin/%s\n", destdir, name);
    const char *at = strstr(text, from);
    REQUIRE(at);
    FILE *f = fopen(copy, "w");
    REQUIRE(f);
    fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    fclose(f);
    shq(q, sizeof q, copy);
    char mp[PATH_SZ];
    join(mp, sizeof mp, destdir, "usr/share/man");
    shq(man, sizeof man, mp);
    snprintf(cmd, sizeof cmd, "MANPATH=%s systemd-analyze verify %s %s", man,
             have("man") ? "" : "--man=no", q);
    char *out = NULL;
    int rc = run(cmd, &out);
    if (strstr(out, "sysinit.target not found") || strstr(out, "Failed to connect to bus")) {
        note("systemd-analyze cannot load the system units here (a container?): skipped");
    } else if (rc != 0 || *out) {
        T_FAIL_("%s exited %d:\n%s", cmd, rc, out);
    }
    free(out);
}

static void check_unit(const char *destdir, const char *name)
{
    char path[PATH_SZ], rel[128];
    snprintf(rel, sizeof rel, "usr/lib/systemd/system/%s.service", name);
    join(path, sizeof path, destdir, rel);
    char *text = slurp(path);
    REQUIRE(text);
    unit_file *u = calloc(1, sizeof *u);
    char err[UNIT_ERR];
    REQUIRE(u);
    if (parse_unit(text, u, err) == 0)
        check_unit_settings(u, destdir, name);
    else
        T_FAIL_("%s: %s", rel, err);
    analyze_verify(destdir, name, text);
    free(u);
    free(text);
}

static void test_packaging_units_parse(void)
{
    char destdir[PATH_SZ];
    install_into("/usr", destdir, sizeof destdir);
    check_unit(destdir, "volq-scheduler");
    check_unit(destdir, "volq-worker");
}

/* The parser above must catch what systemd only warns about. */
static void test_packaging_unit_parser_rejects_typos(void)
{
    unit_file *u = calloc(1, sizeof *u);
    char err[UNIT_ERR];
    REQUIRE(u);
    CHECK_INT(parse_unit("[Unit]\nAfter=x\n[Service]\nRestart=on-failure\n[Install]\n"
                         "WantedBy=multi-user.target\n", u, err), 0);
    CHECK_STR(unit_get(u, "Service", "Restart"), "on-failure");
    CHECK_INT(parse_unit("[Unit]\n[Service]\nRestartt=on-failure\n[Install]\n", u, err), -1);
    CHECK_STR(err, "line 3: unknown key: Restartt");
    CHECK_INT(parse_unit("[Unit]\n[Service]\n[Service]\n[Install]\n", u, err), -1);
    CHECK_STR(err, "line 3: unexpected or repeated section: [Service]");
    CHECK_INT(parse_unit("Restart=on-failure\n[Unit]\n[Service]\n[Install]\n", u, err), -1);
    CHECK_STR(err, "line 1: a setting before any [Section]: Restart=on-failure");
    CHECK_INT(parse_unit("[Unit]\n[Service]\n", u, err), -1);
    CHECK_STR(err, "line 2: a unit needs [Unit], [Service] and [Install]");
    CHECK_INT(parse_unit("[Unit]\n[Service]\nExecStart=/x \\\n[Install]\n", u, err), -1);
    CHECK_STR(err, "line 3: continuation line: ExecStart");
    free(u);
}

/* ---- the environment file -------------------------------------------------- */

/* The default docs/operations.md gives name: the table's default column when
 * it is `quoted` or a bare number, or "(..., default N)" / "(..., N)" in the
 * queue paragraph; "" when it gives no plain value (e.g. "2 per core"). */
static void doc_default(const char *doc, const char *name, char *out, size_t outsz)
{
    char needle[80];
    out[0] = '\0';
    snprintf(needle, sizeof needle, "| `%s` | ", name);
    const char *p = strstr(doc, needle);
    if (p) {
        p += strlen(needle);
        size_t n = strspn(p, "0123456789");
        if (*p == '`' && p[1 + strcspn(p + 1, "`|\n")] == '`')
            snprintf(out, outsz, "%.*s", (int)strcspn(p + 1, "`"), p + 1);
        else if (n && p[n] == ' ' && p[n + 1] == '|')
            snprintf(out, outsz, "%.*s", (int)n, p);
        return;
    }
    snprintf(needle, sizeof needle, "`%s` (", name);
    if (!(p = strstr(doc, needle))) return;
    const char *end = strchr(p, ')'), *d = strstr(p, "default ");
    if (!end) return;
    if (d && d < end) {
        snprintf(out, outsz, "%.*s", (int)strspn(d + 8, "0123456789"), d + 8);
        return;
    }
    d = strstr(p, ", ");
    if (d && d < end && d + 2 + strspn(d + 2, "0123456789") == end && end > d + 2)
        snprintf(out, outsz, "%.*s", (int)(end - d - 2), d + 2);
}

/* Every VOLQ_* name of docs/operations.md is documented in scripts/volq.env,
 * commented out, with the default the doc gives. */
static void test_packaging_env_file_documents_every_setting(void)
{
    char *doc = slurp_src("docs/operations.md"), *env = slurp_src("scripts/volq.env");
    REQUIRE(doc && env);
    int names = 0;
    for (const char *p = strstr(doc, "VOLQ_"); p; p = strstr(p + 1, "VOLQ_")) {
        char name[64], line[128], def[64];
        snprintf(name, sizeof name, "%.*s", (int)strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"), p);
        snprintf(line, sizeof line, "\n#%s=", name);
        names++;
        const char *at = strstr(env, line);
        if (!at) {
            T_FAIL_("scripts/volq.env does not document %s (as \"#%s=DEFAULT\")", name, name);
            continue;
        }
        doc_default(doc, name, def, sizeof def);
        char val[128];
        snprintf(val, sizeof val, "%.*s", (int)strcspn(at + strlen(line), "\n"), at + strlen(line));
        if (def[0] && strcmp(val, def) != 0)
            T_FAIL_("%s: volq.env says \"%s\", docs/operations.md \"%s\"", name, val, def);
    }
    CHECK(names >= 16);
    /* Nothing is set: the defaults apply until the administrator says otherwise. */
    const char *s = env;
    char buf[512];
    while (next_line(&s, buf, sizeof buf))
        if (strncmp(trim(buf), "VOLQ_", 5) == 0) T_FAIL_("volq.env sets a value: %s", buf);
    free(doc);
    free(env);
}

/* ---- docker/compose.yaml: a small structural YAML reader ------------------ */

/* Block mappings and sequences with scalar or flow values, which is what the
 * compose file uses.  It checks indentation, duplicate keys and balanced
 * quotes and brackets, and gives each value by path: "services.redis.command",
 * "services.worker.volumes.[0].target".  Anchors, tags and block scalars are
 * rejected (not used). */
#define Y_MAX_ENTRIES 512
#define Y_MAX_DEPTH 16
#define Y_PATH 256
#define Y_VALUE 256

typedef struct y_entry {
    char path[Y_PATH];
    char value[Y_VALUE];  /* unquoted scalar, a raw flow collection, or "" for a block */
} y_entry;

typedef struct y_frame {
    int indent;
    char name[64];
    int is_item;
    int has_value;    /* a scalar: no children allowed */
    int child_indent; /* -1 until the first child */
    int items;        /* sequence items so far */
    int keys;         /* mapping keys so far */
} y_frame;

typedef struct y_doc {
    y_entry e[Y_MAX_ENTRIES];
    size_t n;
    y_frame st[Y_MAX_DEPTH];
    int depth;        /* st[0] is the root */
    int lineno;
    char err[160];
} y_doc;

static int y_error(y_doc *d, const char *msg, const char *what)
{
    if (!d->err[0]) snprintf(d->err, sizeof d->err, "line %d: %s: %.60s", d->lineno, msg, what);
    return -1;
}

/* Built in a buffer of its own: out lies in d too (an entry's path). */
static void y_path(const y_doc *d, char *out, size_t outsz)
{
    char buf[Y_PATH];
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 1; i <= d->depth && o < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i > 1 ? "." : "", d->st[i].name);
    snprintf(out, outsz, "%s", buf);
}

/* Quotes closed, brackets balanced, nothing after a closing quote. */
static int y_check_scalar(y_doc *d, const char *v)
{
    if (strchr("&*!|>%@`", v[0])) return y_error(d, "unsupported YAML", v);
    if (v[0] == '"' || v[0] == '\'') {
        const char *end = strrchr(v, v[0]);
        if (end == v || end[1]) return y_error(d, "unclosed or trailing quote", v);
        return 0;
    }
    int depth = 0;
    char quote = 0;
    for (const char *p = v; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '"' || *p == '\'') {
            quote = *p;
        } else if (*p == '[' || *p == '{') {
            depth++;
        } else if ((*p == ']' || *p == '}') && --depth < 0) {
            return y_error(d, "unbalanced bracket", v);
        }
    }
    return quote || depth ? y_error(d, "unbalanced quote or bracket", v) : 0;
}

static int y_record(y_doc *d, const char *value)
{
    if (d->n == Y_MAX_ENTRIES) return y_error(d, "too many entries", "");
    y_entry *e = &d->e[d->n];
    y_path(d, e->path, sizeof e->path);
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->e[i].path, e->path) == 0) return y_error(d, "duplicate key", e->path);
    size_t len = strlen(value);
    if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0])
        snprintf(e->value, sizeof e->value, "%.*s", (int)len - 2, value + 1);
    else
        snprintf(e->value, sizeof e->value, "%s", value);
    d->n++;
    return 0;
}

/* Pushes a child frame under the current top, checking its indentation. */
static int y_push(y_doc *d, int indent, const char *name, int is_item)
{
    y_frame *top = &d->st[d->depth];
    if (top->has_value) return y_error(d, "a scalar cannot have children", name);
    if (indent <= top->indent && !(is_item && indent == top->indent && !top->is_item))
        return y_error(d, "bad indentation", name);
    if (top->child_indent >= 0 && top->child_indent != indent)
        return y_error(d, "inconsistent indentation", name);
    if (is_item ? top->keys : top->items) return y_error(d, "mapping and sequence mixed", name);
    if (d->depth + 1 == Y_MAX_DEPTH) return y_error(d, "nested too deep", name);
    top->child_indent = indent;
    is_item ? top->items++ : top->keys++;
    y_frame *f = &d->st[++d->depth];
    memset(f, 0, sizeof *f);
    f->indent = indent;
    f->is_item = is_item;
    f->child_indent = -1;
    snprintf(f->name, sizeof f->name, "%s", name);
    return 0;
}

/* Where "key:" ends in s (the colon), or NULL when s is not a mapping entry. */
static const char *y_key_end(const char *s)
{
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
    if (n == 0 || s[n] != ':' || (s[n + 1] && s[n + 1] != ' ')) return NULL;
    return s + n;
}

static int y_node(y_doc *d, int indent, const char *s);

static int y_item(y_doc *d, int indent, const char *s)
{
    while (d->depth > 0 && (d->st[d->depth].indent > indent ||
                            (d->st[d->depth].indent == indent && d->st[d->depth].is_item)))
        d->depth--;
    char name[16];
    snprintf(name, sizeof name, "[%d]", d->st[d->depth].items);
    if (y_push(d, indent, name, 1)) return -1;
    const char *rest = s + 1 + strspn(s + 1, " ");
    if (!*rest) return y_record(d, "");
    if (y_key_end(rest)) return y_node(d, indent + (int)(rest - s), rest);
    d->st[d->depth].has_value = 1;
    return y_check_scalar(d, rest) || y_record(d, rest);
}

static int y_node(y_doc *d, int indent, const char *s)
{
    if (s[0] == '-' && (s[1] == ' ' || !s[1])) return y_item(d, indent, s);
    const char *colon = y_key_end(s);
    if (!colon) return y_error(d, "not \"key: value\"", s);
    while (d->depth > 0 && d->st[d->depth].indent >= indent) d->depth--;
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(colon - s), s);
    if (y_push(d, indent, key, 0)) return -1;
    const char *v = colon + 1 + strspn(colon + 1, " ");
    if (!*v) return y_record(d, "");
    d->st[d->depth].has_value = 1;
    return y_check_scalar(d, v) || y_record(d, v);
}

/* Cuts a " #" comment that is outside quotes. */
static void y_strip_comment(char *s)
{
    char quote = 0;
    for (char *p = s; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '"' || *p == '\'') {
            quote = *p;
        } else if (*p == '#' && (p == s || p[-1] == ' ')) {
            *p = '\0';
            break;
        }
    }
}

static int y_parse(y_doc *d, const char *text)
{
    char line[1024];
    memset(d, 0, sizeof *d);
    d->st[0].indent = -1;
    d->st[0].child_indent = -1;
    while (next_line(&text, line, sizeof line)) {
        d->lineno++;
        size_t ind = strspn(line, " ");
        if (line[ind] == '\t') return y_error(d, "a tab in the indentation", line);
        y_strip_comment(line);
        char *s = line + ind;
        size_t n = strlen(s);
        while (n && s[n - 1] == ' ') s[--n] = '\0';
        if (!n || (d->lineno == 1 && strcmp(s, "---") == 0)) continue;
        if (y_node(d, (int)ind, s)) return -1;
    }
    return 0;
}

static const char *y_get(const y_doc *d, const char *path)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->e[i].path, path) == 0) return d->e[i].value;
    return NULL;
}

/* The items of a flow sequence ["a", "b"] into items; their count, -1 if not one. */
static int y_flow(const char *v, char items[][64], int max)
{
    if (!v || v[0] != '[') return -1;
    int n = 0;
    const char *p = v + 1;
    while (*p && *p != ']' && n < max) {
        p += strspn(p, " ");
        char q = (*p == '"' || *p == '\'') ? *p++ : 0;
        size_t len = q ? strcspn(p, q == '"' ? "\"" : "'") : strcspn(p, ",]");
        snprintf(items[n++], 64, "%.*s", (int)len, p);
        p += len + (q ? 1 : 0);
        p += strspn(p, " ");
        if (*p == ',') p++;
    }
    return *p == ']' ? n : -1;
}

/* 1 when the flow sequence at path has a, b next to each other. */
static int y_flow_has_pair(const y_doc *d, const char *path, const char *a, const char *b)
{
    char items[32][64];
    int n = y_flow(y_get(d, path), items, 32);
    for (int i = 0; i + 1 < n; i++)
        if (strcmp(items[i], a) == 0 && strcmp(items[i + 1], b) == 0) return 1;
    return 0;
}

static void test_packaging_yaml_reader(void)
{
    y_doc *d = calloc(1, sizeof *d);
    REQUIRE(d);
    CHECK_INT(y_parse(d, "a:\n  b: \"x # y\"  # c\n  l:\n    - k: 1\n      m: [\"p\", 'q']\n    - z\n"), 0);
    CHECK_STR(y_get(d, "a.b"), "x # y");
    CHECK_STR(y_get(d, "a.l.[0].m"), "[\"p\", 'q']");
    CHECK_STR(y_get(d, "a.l.[1]"), "z");
    CHECK(y_flow_has_pair(d, "a.l.[0].m", "p", "q"));
    CHECK_INT(y_parse(d, "a:\n  b: 1\n   c: 2\n"), -1);        /* indentation */
    CHECK_INT(y_parse(d, "a:\n  b: 1\n  b: 2\n"), -1);        /* duplicate */
    CHECK_INT(y_parse(d, "a: [1, 2\n"), -1);                  /* unbalanced */
    CHECK_INT(y_parse(d, "a: 1\n  b: 2\n"), -1);              /* child of a scalar */
    CHECK_INT(y_parse(d, "a:\n\tb: 1\n"), -1);                /* tab */
    CHECK_INT(y_parse(d, "a:\n  - 1\n  b: 2\n"), -1);         /* mixed */
    CHECK_INT(y_parse(d, "just text\n"), -1);
    free(d);
}

/* When PyYAML is there, the real parser must agree that the file is YAML. */
static void pyyaml_check(const char *path)
{
    if (run("python3 -c 'import yaml' >/dev/null", NULL) != 0) {
        note("python3 with PyYAML not available: compose.yaml checked by our reader only");
        return;
    }
    char q[PATH_SZ + 64], cmd[CMD_SZ];
    shq(q, sizeof q, path);
    snprintf(cmd, sizeof cmd, "python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' %s", q);
    char *out = NULL;
    if (run(cmd, &out) != 0) T_FAIL_("PyYAML rejects %s:\n%s", path, out);
    free(out);
}

static void check_compose_volq_service(const y_doc *d, const char *svc, const char *program)
{
    char p[128], items[16][64];
    snprintf(p, sizeof p, "services.%s.command", svc);
    int n = y_flow(y_get(d, p), items, 16);
    CHECK(n >= 1 && strcmp(items[0], program) == 0);
    snprintf(p, sizeof p, "services.%s.environment.VOLQ_REDIS", svc);
    CHECK(y_get(d, p) && strncmp(y_get(d, p), "redis://redis:", 14) == 0);
    snprintf(p, sizeof p, "services.%s.volumes.[0].target", svc);
    CHECK_STR(y_get(d, p), "/rhev/data-center/mnt");
    snprintf(p, sizeof p, "services.%s.volumes.[0].type", svc);
    CHECK_STR(y_get(d, p), "bind");
    snprintf(p, sizeof p, "services.%s.build.dockerfile", svc);
    CHECK_STR(y_get(d, p), "docker/Dockerfile");
}

static void test_packaging_compose_parses(void)
{
    char path[PATH_SZ];
    join(path, sizeof path, src_dir(), "docker/compose.yaml");
    char *text = slurp(path);
    REQUIRE(text);
    y_doc *d = calloc(1, sizeof *d);
    REQUIRE(d);
    if (y_parse(d, text) != 0) T_FAIL_("docker/compose.yaml: %s", d->err);
    pyyaml_check(path);
    const char *img = y_get(d, "services.redis.image");
    CHECK(img && (strncmp(img, "redis:7", 7) == 0 || strncmp(img, "debian:", 7) == 0));
    CHECK(y_flow_has_pair(d, "services.redis.command", "--appendonly", "yes"));
    CHECK(y_flow_has_pair(d, "services.redis.command", "--appendfsync", "always"));
    const char *vol = y_get(d, "services.redis.volumes.[0]");
    REQUIRE(vol);
    char named[128];
    snprintf(named, sizeof named, "volumes.%.*s", (int)strcspn(vol, ":"), vol);
    CHECK(y_get(d, named) != NULL); /* a named volume, declared */
    check_compose_volq_service(d, "scheduler", "volq-scheduler");
    check_compose_volq_service(d, "worker", "volq-worker");
    CHECK_STR(y_get(d, "services.worker.deploy.replicas"), "2");
    const char *tok = y_get(d, "services.scheduler.environment.VOLQ_TOKEN");
    CHECK(tok && strncmp(tok, "${VOLQ_TOKEN", 12) == 0);
    CHECK_STR(y_get(d, "services.worker.stop_signal"), "SIGTERM");
    free(d);
    free(text);
}

/* ---- docker/Dockerfile ------------------------------------------------------ */

/* docker/Dockerfile without its comment lines (a comment naming a package or a
 * command proves nothing), after a "\n" so that every line starts with one.
 * Free it. */
static char *dockerfile(void)
{
    char *src = slurp_src("docker/Dockerfile");
    REQUIRE(src);
    size_t cap = strlen(src) + 2, o = 0;
    char *df = malloc(cap), line[4096];
    REQUIRE(df);
    df[o++] = '\n';
    for (const char *s = src; next_line(&s, line, sizeof line);)
        if (line[strspn(line, " ")] != '#') o += (size_t)snprintf(df + o, cap - o, "%s\n", line);
    df[o] = '\0';
    free(src);
    return df;
}

/* The `make ...` commands (first two words) in text, "|"-separated into out. */
static void make_commands(const char *text, int dockerfile, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (const char *p = strstr(text, "make"); p; p = strstr(p + 4, "make")) {
        int start = dockerfile ? (p[-1] == ' ' && (p[-2] == 'N' || p[-2] == '&'))
                               : (p[-1] == '`' || p[-1] == '\n');
        if (p == text || !start || (p[4] != ' ' && p[4] != '`' && p[4] != '\n')) continue;
        size_t n = 4;
        if (p[4] == ' ' && islower((unsigned char)p[5]))
            n = 5 + strspn(p + 5, "abcdefghijklmnopqrstuvwxyz-");
        char cmd[64];
        snprintf(cmd, sizeof cmd, "|%.*s|", (int)n, p);
        if (!strstr(out, cmd) && o + strlen(cmd) < outsz)
            o += (size_t)snprintf(out + o, outsz - o, "%s", cmd + (o ? 1 : 0));
    }
}

/* The build stage runs the README's commands: `make`, then `make install`. */
static void test_packaging_dockerfile_builds_like_readme(void)
{
    char *df = dockerfile(), *readme = slurp_src("README.md");
    REQUIRE(df && readme);
    char dmake[512], rmake[512];
    make_commands(df, 1, dmake, sizeof dmake);
    make_commands(readme, 0, rmake, sizeof rmake);
    CHECK_CONTAINS(dmake, "|make|");
    CHECK_CONTAINS(rmake, "|make|");
    /* Every make command of the image is one the README gives. */
    for (char *tok = strtok(dmake, "|"); tok; tok = strtok(NULL, "|")) {
        char want[80];
        snprintf(want, sizeof want, "|%s|", tok);
        if (!strstr(rmake, want)) T_FAIL_("the Dockerfile runs `%s`, the README does not", tok);
    }
    CHECK_CONTAINS(df, "\nFROM debian:bookworm AS build\n");
    CHECK_CONTAINS(df, "\nRUN bash scripts/setup.sh\n");
    free(df);
    free(readme);
}

/* The text of the last stage (after the last FROM). */
static const char *last_stage(const char *df)
{
    const char *last = NULL;
    for (const char *p = strstr(df, "\nFROM "); p; p = strstr(p + 1, "\nFROM ")) last = p;
    REQUIRE(last);
    return last;
}

/* The runtime stage: Debian 12, no -dev package, qemu-utils, the programs,
 * and a library package for every pkg-config module CMakeLists.txt links. */
static void test_packaging_dockerfile_runtime_stage(void)
{
    char *df = dockerfile(), *cm = slurp_src("CMakeLists.txt");
    REQUIRE(df && cm);
    const char *rt = last_stage(df);
    CHECK(strncmp(rt, "\nFROM debian:bookworm", 21) == 0);
    CHECK(!strstr(rt, "-dev"));
    CHECK(has_word(rt, "qemu-utils"));
    for (size_t i = 0; i < NPROGRAMS; i++) {
        char want[64];
        snprintf(want, sizeof want, "/out/usr/bin/%s", programs[i]);
        CHECK(has_word(rt, want));
    }
    int mods = 0;
    for (const char *p = strstr(cm, "IMPORTED_TARGET "); p; p = strstr(p + 1, "IMPORTED_TARGET ")) {
        char mod[64], pkg[80];
        snprintf(mod, sizeof mod, "%.*s", (int)strcspn(p + 16, ")\n "), p + 16);
        snprintf(pkg, sizeof pkg, "%s%s", strncmp(mod, "lib", 3) ? "lib" : "", mod);
        if (!strstr(rt, pkg)) T_FAIL_("runtime stage has no package for %s (%s*)", mod, pkg);
        mods++;
    }
    CHECK(mods >= 4);
    free(df);
    free(cm);
}

/* When the programs are built: each library they load comes from a package the
 * runtime stage installs (found with ldd and dpkg -S). */
static void test_packaging_dockerfile_has_linked_libraries(void)
{
    char bin[PATH_SZ], q[PATH_SZ + 64], cmd[CMD_SZ];
    join(bin, sizeof bin, bin_dir(), "volq-scheduler");
    if (!is_exec(bin) || !have("ldd") || !have("dpkg")) {
        note("volq-scheduler not built (or no ldd/dpkg): linked libraries not checked");
        return;
    }
    shq(q, sizeof q, bin);
    /* By name in its multiarch folder: ldd may say /lib, dpkg /usr/lib (merged /usr). */
    snprintf(cmd, sizeof cmd,
             "ldd %s | awk '/=> \\//{print $3}' | while read -r p; do d=${p%%/*}; "
             "dpkg -S \"*/${d##*/}/${p##*/}\" | head -n 1 | cut -d: -f1; done | sort -u", q);
    char *out = NULL, *df = dockerfile();
    REQUIRE(run(cmd, &out) == 0 && df);
    const char *rt = last_stage(df), *s = out;
    char pkg[128];
    if (strstr(out, "libasan") || strstr(out, "libubsan")) {
        note("a sanitizer build: its runtime libraries are not the image's; not checked");
        s = "";
    }
    while (next_line(&s, pkg, sizeof pkg))
        if (strcmp(pkg, "libc6") && !has_word(rt, pkg))
            T_FAIL_("volq-scheduler loads a library of %s; the runtime stage lacks it", pkg);
    free(out);
    free(df);
}

/* ---- man pages ------------------------------------------------------------- */

static void test_packaging_man_pages_render(void)
{
    static const char *const sections[] = {"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                                           "ENVIRONMENT", "EXIT STATUS", "FILES", "SEE ALSO"};
    int groff = have("groff"), man = have("man");
    if (!groff) note("groff not installed: man pages not rendered (apt-get install groff-base)");
    for (size_t i = 0; i < NPROGRAMS; i++) {
        char rel[64], path[PATH_SZ], q[PATH_SZ + 64], cmd[CMD_SZ];
        snprintf(rel, sizeof rel, "man/%s.1", programs[i]);
        char *page = slurp_src(rel);
        REQUIRE(page);
        for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
            char want[64];
            snprintf(want, sizeof want, "\n.SH %s\n", sections[s]);
            if (!strstr(page, want)) T_FAIL_("%s has no section %s", rel, sections[s]);
        }
        free(page);
        join(path, sizeof path, src_dir(), rel);
        shq(q, sizeof q, path);
        char *out = NULL;
        snprintf(cmd, sizeof cmd, "groff -man -ww -z %s", q);
        if (groff && (run(cmd, &out) != 0 || *out)) T_FAIL_("%s:\n%s", cmd, out);
        free(out);
        out = NULL;
        snprintf(cmd, sizeof cmd, "MANWIDTH=80 man -l %s 2>&1 >/dev/null", q);
        if (groff && man && (run(cmd, &out) != 0 || *out)) T_FAIL_("%s:\n%s", cmd, out);
        free(out);
    }
}

/* ---- --help against the man page ------------------------------------------ */

/* The long options a text names, "|"-separated: "--redis" and, in roff,
 * "\-\-redis" (man pages spell dashes \-). */
static void long_options(const char *text, int roff, char *out, size_t outsz)
{
    const char *dd = roff ? "\\-\\-" : "--";
    size_t ddl = strlen(dd), o = 0;
    out[0] = '\0';
    for (const char *p = strstr(text, dd); p; p = strstr(p + 1, dd)) {
        char opt[64] = "--";
        size_t k = 2;
        const char *c = p + ddl;
        while (k + 1 < sizeof opt && (islower((unsigned char)*c) || isdigit((unsigned char)*c) ||
                                      (roff ? strncmp(c, "\\-", 2) == 0 : *c == '-'))) {
            opt[k++] = *c == '\\' ? '-' : *c;
            c += *c == '\\' ? 2 : 1;
        }
        opt[k] = '\0';
        char tok[80];
        snprintf(tok, sizeof tok, "|%s|", opt);
        if (k > 2 && !strstr(out, tok) && o + strlen(tok) < outsz)
            o += (size_t)snprintf(out + o, outsz - o, "%s", tok + (o ? 1 : 0));
    }
}

/* Appends the output of cmd to buf (OUT_MAX bytes and a NUL, *len used so
 * far); fails the case when cmd fails. */
static void append_output(char *buf, size_t *len, const char *cmd)
{
    char *out = NULL;
    if (run(cmd, &out) != 0) T_FAIL_("%s exited non-zero:\n%s", cmd, out);
    size_t n = strlen(out);
    if (n > OUT_MAX - *len) n = OUT_MAX - *len;
    memcpy(buf + *len, out, n);
    *len += n;
    buf[*len] = '\0';
    free(out);
}

/* Every program's help: `P --help`, and for volq each command's `volq CMD
 * --help` (the commands of the page's SYNOPSIS).  Returns it; free it. */
static char *help_text(const char *prog, const char *page)
{
    char bin[PATH_SZ], q[PATH_SZ + 64], cmd[CMD_SZ], sy[64];
    char *all = malloc(OUT_MAX + 1);
    size_t len = 0;
    REQUIRE(all);
    join(bin, sizeof bin, bin_dir(), prog);
    shq(q, sizeof q, bin);
    snprintf(cmd, sizeof cmd, "%s --help", q);
    append_output(all, &len, cmd);
    snprintf(sy, sizeof sy, "\n.SY \"%s ", prog);
    for (const char *p = strstr(page, sy); p; p = strstr(p + 1, sy)) {
        char sub[64];
        snprintf(sub, sizeof sub, "%.*s", (int)strcspn(p + strlen(sy), "\""), p + strlen(sy));
        for (char *s = sub; (s = strstr(s, "\\-"));) memmove(s, s + 1, strlen(s));
        snprintf(cmd, sizeof cmd, "%s %s --help", q, sub);
        append_output(all, &len, cmd);
    }
    return all;
}

/* --version prints "PROG VERSION", and VERSION is the one in the page's .TH. */
static void check_version(const char *prog, const char *page)
{
    char bin[PATH_SZ], q[PATH_SZ + 64], cmd[CMD_SZ], want[128];
    join(bin, sizeof bin, bin_dir(), prog);
    shq(q, sizeof q, bin);
    snprintf(cmd, sizeof cmd, "%s --version", q);
    char *out = NULL;
    CHECK_INT(run(cmd, &out), 0);
    const char *th = strstr(page, "\"volq ");
    REQUIRE(th);
    snprintf(want, sizeof want, "%s %.*s\n", prog, (int)strcspn(th + 6, "\""), th + 6);
    CHECK_STR(out, want);
    free(out);
}

static void compare_help_and_page(const char *prog, const char *help, const char *page)
{
    char from_page[2048], from_help[2048];
    long_options(page, 1, from_page, sizeof from_page);
    long_options(help, 0, from_help, sizeof from_help);
    for (char *t = strtok(from_page, "|"); t; t = strtok(NULL, "|"))
        if (strcmp(t, "--help") && strcmp(t, "--version") && !has_word(help, t))
            T_FAIL_("man/%s.1 lists %s; `%s --help` does not", prog, t, prog);
    for (char *t = strtok(from_help, "|"); t; t = strtok(NULL, "|")) {
        char roff[128];
        to_roff(t, roff, sizeof roff);
        if (!strstr(page, roff)) T_FAIL_("`%s --help` names %s; man/%s.1 does not", prog, t, prog);
    }
    for (const char *p = strstr(help, "VOLQ_"); p; p = strstr(p + 1, "VOLQ_")) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"), p);
        if (!has_word(page, name)) T_FAIL_("`%s --help` names %s; its page does not", prog, name);
    }
}

static void test_packaging_help_matches_man_pages(void)
{
    for (size_t i = 0; i < NPROGRAMS; i++) {
        char bin[PATH_SZ], rel[64];
        join(bin, sizeof bin, bin_dir(), programs[i]);
        if (!is_exec(bin)) {
            T_FAIL_("%s is not built", bin);
            continue;
        }
        snprintf(rel, sizeof rel, "man/%s.1", programs[i]);
        char *page = slurp_src(rel);
        REQUIRE(page);
        char *help = help_text(programs[i], page);
        compare_help_and_page(programs[i], help, page);
        check_version(programs[i], page);
        free(help);
        free(page);
    }
}

/* ---- docs/troubleshooting.md against the code ----------------------------- */

/* 1 when the key at p ("{volq}:q", "{volq}:job:ID", "{volq}:proc:host:1") is
 * one of queue_int.h: the whole name, or a prefix of it ending in ':'. */
static int known_redis_key(const char *keys, const char *p)
{
    size_t n = strspn(p + 7, "abcdefghijklmnopqrstuvwxyz:") + 7;
    for (size_t k = 7; k <= n && k < 64; k++) {
        if (k < n && p[k - 1] != ':') continue;
        char want[72];
        snprintf(want, sizeof want, "\"%.*s\"", (int)k, p);
        if (k > 7 && strstr(keys, want)) return 1;
    }
    return 0;
}

/* Every Redis key the guide names exists in queue/queue_int.h, and every
 * `volq CMD` it runs is a command of the volq(1) page. */
static void test_packaging_troubleshooting_names_real_keys_and_commands(void)
{
    char *doc = slurp_src("docs/troubleshooting.md"), *keys = slurp_src("queue/queue_int.h");
    char *page = slurp_src("man/volq.1");
    REQUIRE(doc && keys && page);
    for (const char *p = strstr(doc, "{volq}:"); p; p = strstr(p + 1, "{volq}:"))
        if (!known_redis_key(keys, p))
            T_FAIL_("troubleshooting.md names %.*s, unknown to queue/queue_int.h",
                    (int)(7 + strspn(p + 7, "abcdefghijklmnopqrstuvwxyz:")), p);
    /* Commands in code: `volq CMD ...` or a code-block line starting "volq CMD". */
    for (const char *p = strstr(doc, "volq "); p; p = strstr(p + 1, "volq ")) {
        if (p == doc || (p[-1] != '`' && p[-1] != '\n')) continue;
        char cmd[64], want[96], roff[192];
        snprintf(cmd, sizeof cmd, "%.*s", (int)strspn(p + 5, "abcdefghijklmnopqrstuvwxyz-"), p + 5);
        if (!cmd[0] || cmd[0] == '-') continue;
        snprintf(want, sizeof want, ".SY \"volq %s\"", cmd);
        to_roff(want, roff, sizeof roff);
        if (!strstr(page, roff)) T_FAIL_("troubleshooting.md runs `volq %s`, not a volq command", cmd);
    }
    free(doc);
    free(keys);
    free(page);
}

T_MAIN(T(test_packaging_install_prefix_usr), T(test_packaging_install_default_prefix),
       T(test_packaging_install_keeps_edited_env), T(test_packaging_units_parse),
       T(test_packaging_unit_parser_rejects_typos),
       T(test_packaging_env_file_documents_every_setting), T(test_packaging_yaml_reader),
       T(test_packaging_compose_parses), T(test_packaging_dockerfile_builds_like_readme),
       T(test_packaging_dockerfile_runtime_stage),
       T(test_packaging_dockerfile_has_linked_libraries), T(test_packaging_man_pages_render),
       T(test_packaging_help_matches_man_pages),
       T(test_packaging_troubleshooting_names_real_keys_and_commands))
