/* volq: the administrator's tool, a client of the scheduler's HTTP API. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("volq %s\n", VOLQ_VERSION);
        return 0;
    }
    printf("usage: volq [--api URL] [--token TOKEN] [--json] COMMAND ...\n");
    return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
