/* Files embedded into the binaries at build time (cmake/embed.cmake). */
#ifndef VOLQ_BLOB_H
#define VOLQ_BLOB_H
#include <stddef.h>

/* data is NUL-terminated one byte past len, so text files can be used as C strings. */
struct vq_blob {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/* Tables end with an entry whose name is NULL. */
extern const struct vq_blob vq_lua_files[];
extern const struct vq_blob vq_web_files[];

/* Returns the entry named name, or NULL. */
const struct vq_blob *vq_blob_find(const struct vq_blob *table, const char *name);

#endif
