/* volq-worker: a parent process and its worker children. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("volq-worker %s\n", VOLQ_VERSION);
        return 0;
    }
    printf("usage: volq-worker [--redis URL] [--domains DIR] [--processes N]\n");
    return 0;
}
