/* volq: the administrator's tool, a client of the scheduler's HTTP API.
 * Global options are taken out of argv wherever they are; the first word
 * left names the command (table below). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_int.h"
#include "volq/config.h"

static const vq_cmd commands[] = {
    {"amend", vq_cmd_amend, "amend DISK_ID [--domain SD_ID] [--wait]",
     "Amends every qcow2 volume of the disk to compat 1.1 (one job).  --domain is needed only\n"
     "when the disk id is in several domains.  --wait follows the job to its end: exit 0 when\n"
     "it succeeded, 1 when it failed or was refused.\n"},
    {"create-volume", vq_cmd_create,
     "create-volume --domain SD_ID [--disk DISK_ID] [--parent VOL_ID] [--size BYTES] "
     "[--format cow|raw] [--alias NAME] [--wait]",
     "Creates a volume: without --disk, a new disk; with --disk, a new volume of that disk.\n"
     "--parent makes a snapshot overlay (or a thin disk when the parent is a template volume);\n"
     "without --size it takes the parent's size.  Sizes are bytes or K, M, G, T (1024-based)\n"
     "and a multiple of 512.  --format is cow (qcow2, the default) or raw.\n"},
    {"upgrade-domain", vq_cmd_upgrade, "upgrade-domain SD_ID [--to-v4] [--wait]",
     "Amends every eligible disk of the domain; templates, raw disks, disks already at compat\n"
     "1.1, locked and illegal disks are skipped and counted.  --to-v4 first raises a version 3\n"
     "domain to 4.  --wait shows the progress and ends with \"amended N, skipped M, failed K\";\n"
     "it exits 1 when any failed.\n"},
    {"domains", vq_cmd_domains, "domains",
     "Lists the storage domains under the domains root: id, version, status, disks, and why a\n"
     "domain is illegal (no job runs on an illegal domain).\n"},
    {"disks", vq_cmd_disks, "disks SD_ID",
     "Lists the disks of a domain: alias, id, format, qcow_version, template, status, lock.\n"},
    {"disk", vq_cmd_disk, "disk DISK_ID [--domain SD_ID]",
     "Shows one disk and its volumes, as the HTTP API does.\n"},
    {"jobs", vq_cmd_jobs, "jobs [--state STATE] [--limit N]",
     "Lists jobs, newest first.  STATE: queued, running, retrying, succeeded, failed, cancelled.\n"},
    {"job", vq_cmd_job, "job JOB_ID", "Shows one job with its attempts and errors.\n"},
    {"retry", vq_cmd_retry, "retry JOB_ID | retry --failed",
     "Runs a failed job again, or every failed job with --failed.\n"},
    {"cancel", vq_cmd_cancel, "cancel JOB_ID", "Cancels a queued or retrying job.\n"},
    {"status", vq_cmd_status, "status",
     "Jobs by state, live workers, the oldest waiting job, jobs ended per minute.\n"},
    {"top", vq_cmd_top, "top",
     "The status, live: refreshed every second with the running jobs.  q or Ctrl-C quits.\n"},
    {"events", vq_cmd_events, "events [--follow] [--since TIME]",
     "The audit log: time, severity, message.  TIME is an RFC 3339 time or an event id.\n"
     "--follow keeps printing new events (with --json, one object a line).\n"},
    {"up", vq_cmd_up,
     "up [--workers N] [--state DIR] [--domains DIR] [--listen HOST:PORT]",
     "Runs the whole stack in the foreground: the embedded redis-server of the state folder\n"
     "(VOLQ_STATE, default .volq), volq-scheduler and volq-worker with N processes.  Ctrl-C\n"
     "stops the workers (each finishes its running job), the scheduler, and the Redis it started.\n"
     "--domains defaults to VOLQ_DOMAINS, else /rhev/data-center/mnt; --listen to VOLQ_LISTEN,\n"
     "else the host and port of --api.\n"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

const vq_cmd *vq_cmd_find(const char *name)
{
    for (size_t i = 0; name && i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: volq [--api URL] [--token TOKEN] [--json] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  volq %s\n", commands[i].usage);
    fprintf(f, "\n--api URL     the scheduler (VOLQ_API, default http://127.0.0.1:8085)\n"
               "--token TOKEN bearer token for changing requests (VOLQ_TOKEN)\n"
               "--json        JSON alone on stdout\n"
               "--help, --version\n"
               "Exit status: 0 success, 1 failed or refused, 2 usage or input error, 3 cannot "
               "reach the scheduler or Redis.\n`volq COMMAND --help` tells more.\n");
}

/* Takes --api, --token and --json out of argv (before or after the command,
 * not after "--"); returns the new argc, or -1 when a value is missing. */
static int strip_globals(int argc, char **argv, vq_cli *c)
{
    int out = 1, dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!dashdash && strcmp(a, "--") == 0) dashdash = 1;
        if (dashdash) { argv[out++] = argv[i]; continue; }
        if (strcmp(a, "--json") == 0) { c->json = 1; continue; }
        if (strncmp(a, "--api", 5) == 0 && (a[5] == '\0' || a[5] == '=')) slot = &c->api;
        if (strncmp(a, "--token", 7) == 0 && (a[7] == '\0' || a[7] == '=')) slot = &c->token;
        if (!slot) { argv[out++] = argv[i]; continue; }
        const char *eq = strchr(a, '=');
        if (!eq && i + 1 >= argc) return -1;
        *slot = eq ? eq + 1 : argv[++i];
    }
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    vq_cli c = {.argv0 = argv[0], .tty = isatty(1)};
    argc = strip_globals(argc, argv, &c);
    if (argc < 0) return vq_cli_fail(VQ_EXIT_USAGE, "--api and --token need a value");
    c.api = vq_config_str(c.api, "VOLQ_API", "http://127.0.0.1:8085");
    c.token = vq_config_str(c.token, "VOLQ_TOKEN", NULL);
    if (c.token && !*c.token) c.token = NULL;
    if (argc < 2) return vq_cli_fail(VQ_EXIT_USAGE, "no command given; see volq --help");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        const vq_cmd *cmd = argc > 2 ? vq_cmd_find(argv[2]) : NULL;
        if (cmd) return vq_cli_help(cmd);
        usage(stdout);
        return VQ_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("volq %s\n", VOLQ_VERSION);
        return VQ_EXIT_OK;
    }
    const vq_cmd *cmd = vq_cmd_find(argv[1]);
    if (!cmd)
        return vq_cli_fail(VQ_EXIT_USAGE, "unknown command \"%s\"; see volq --help", argv[1]);
    return cmd->run(&c, argc - 1, argv + 1);
}
