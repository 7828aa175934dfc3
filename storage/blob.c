/* Look-up in the tables that cmake/embed.cmake generates. */
#include <string.h>

#include "volq/blob.h"

const struct vq_blob *vq_blob_find(const struct vq_blob *table, const char *name)
{
    for (; table && table->name; table++)
        if (strcmp(table->name, name) == 0) return table;
    return NULL;
}
