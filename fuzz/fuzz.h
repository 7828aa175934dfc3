/* Shared by the fuzz targets: a check that aborts with a message, so that
 * libFuzzer records the input as a crash. */
#ifndef VOLQ_FUZZ_H
#define VOLQ_FUZZ_H
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(c)                                                          \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* 1 when s[0..size) holds a NUL: a fixed-size field is terminated. */
#define FUZZ_TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

#endif
