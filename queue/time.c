/* RFC 3339 times: jobs and events show UTC with milliseconds. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "volq/error.h"
#include "volq/job.h"

int64_t vq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Years 0000..9999 are all RFC 3339 can show. */
#define TIME_MAX_MS 253402300799999LL
#define TIME_MIN_MS (-62167219200000LL)

void vq_time_format(int64_t ms, char out[32])
{
    if (ms > TIME_MAX_MS) ms = TIME_MAX_MS;
    if (ms < TIME_MIN_MS) ms = TIME_MIN_MS;
    /* Floor division, so times before 1970 still print a valid instant. */
    int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    unsigned msec = (unsigned)(ms - sec * 1000) % 1000u;
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    /* The modulos only tell the compiler the ranges gmtime_r guarantees. */
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             msec);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* Exactly n digits at *p, advancing it.  -1 when not. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p)) return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

static int expect(const char **p, const char *set)
{
    if (!**p || !strchr(set, **p)) return -1;
    (*p)++;
    return 0;
}

/* ".123456" -> milliseconds (extra digits are cut, not rounded). */
static int fraction_ms(const char **p)
{
    if (**p != '.') return 0;
    (*p)++;
    if (!isdigit((unsigned char)**p)) return -1;
    int ms = 0, n = 0;
    for (; isdigit((unsigned char)**p); (*p)++, n++)
        if (n < 3) ms = ms * 10 + (**p - '0');
    for (; n < 3; n++) ms *= 10;
    return ms;
}

/* "Z" or "+hh:mm"/"-hh:mm" -> offset in minutes east of UTC, at the end of s. */
static int zone_minutes(const char *p, int *off)
{
    if ((p[0] == 'Z' || p[0] == 'z') && !p[1]) {
        *off = 0;
        return 0;
    }
    if (p[0] != '+' && p[0] != '-') return -1;
    int sign = p[0] == '-' ? -1 : 1;
    p++;
    int hh = digits(&p, 2);
    if (hh < 0 || hh > 23 || expect(&p, ":")) return -1;
    int mm = digits(&p, 2);
    if (mm < 0 || mm > 59 || *p) return -1;
    *off = sign * (hh * 60 + mm);
    return 0;
}

int vq_time_parse(const char *s, int64_t *ms)
{
    if (!s) return VQ_EINVAL;
    const char *p = s;
    int y = digits(&p, 4);
    if (y < 0 || expect(&p, "-")) return VQ_EINVAL;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || expect(&p, "-")) return VQ_EINVAL;
    int d = digits(&p, 2);
    if (d < 1 || d > days_in_month(y, mo) || expect(&p, "Tt ")) return VQ_EINVAL;
    int h = digits(&p, 2);
    if (h < 0 || h > 23 || expect(&p, ":")) return VQ_EINVAL;
    int mi = digits(&p, 2);
    if (mi < 0 || mi > 59 || expect(&p, ":")) return VQ_EINVAL;
    int sec = digits(&p, 2);
    /* 60 is a leap second: it is the same instant as :59.999 for our purpose. */
    if (sec < 0 || sec > 60) return VQ_EINVAL;
    int frac = fraction_ms(&p), off;
    if (frac < 0 || zone_minutes(p, &off) != 0) return VQ_EINVAL;
    if (sec == 60) {
        sec = 59;
        frac = 999;
    }
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
    *ms = t * 1000 + frac;
    return 0;
}
