/* The HTTP API of SPEC §4 as one table.  Literal segments come before {} so
 * that "/disks/volumes" and "/jobs/retry" are not taken for ids. */
#include "sched_int.h"

#define GET EVHTTP_REQ_GET
#define PUT EVHTTP_REQ_PUT
#define POST EVHTTP_REQ_POST
#define DEL EVHTTP_REQ_DELETE

const vq_route vq_routes_[] = {
    {GET, "/api/storagedomains", vq_api_domains_, 0, 0},
    {GET, "/api/storagedomains/{}/disks", vq_api_disks_, 1, 0},
    {POST, "/api/storagedomains/{}/disks/volumes", vq_api_create_new_, 1, 1},
    {GET, "/api/storagedomains/{}/disks/{}", vq_api_disk_, 1, 0},
    {PUT, "/api/storagedomains/{}/disks/{}", vq_api_amend_, 1, 1},
    {POST, "/api/storagedomains/{}/disks/{}/volumes", vq_api_create_, 1, 1},
    {POST, "/api/storagedomains/{}/upgrade", vq_api_upgrade_, 1, 1},
    {GET, "/api/disks/{}", vq_api_disk_any_, 1, 0},
    {PUT, "/api/disks/{}", vq_api_amend_any_, 1, 1},
    {GET, "/api/jobs", vq_api_jobs_, 1, 0},
    {POST, "/api/jobs/retry", vq_api_jobs_retry_, 1, 1},
    {GET, "/api/jobs/{}", vq_api_job_, 1, 0},
    {DEL, "/api/jobs/{}", vq_api_job_cancel_, 1, 1},
    {POST, "/api/jobs/{}/retry", vq_api_job_retry_, 1, 1},
    {GET, "/api/events", vq_api_events_, 1, 0},
    {GET, "/api/status", vq_api_status_, 0, 0},
    {GET, "/metrics", vq_api_metrics_, 0, 0},
    {GET, "/healthz", vq_api_healthz_, 0, 0},
    {GET, "/", vq_api_index_, 0, 0},
    {GET, "/web/{}", vq_api_asset_, 0, 0},
    {0, NULL, NULL, 0, 0},
};
