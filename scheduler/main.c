/* volq-scheduler: the HTTP API and housekeeping. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("volq-scheduler %s\n", VOLQ_VERSION);
        return 0;
    }
    printf("usage: volq-scheduler [--redis URL] [--domains DIR] [--listen HOST:PORT]\n");
    return 0;
}
