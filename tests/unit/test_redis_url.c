/* Unit tests of vq_redis_url_parse: the URL forms of SPEC §5 and bad URLs. */
#include "t.h"
#include "volq/redis.h"

static void test_url_host_defaults(void)
{
    vq_redis_url u;
    vq_error e = {0};
    CHECK_INT(vq_redis_url_parse("redis://redis.example.org", &u, &e), 0);
    CHECK_INT(u.is_unix, 0);
    CHECK_STR(u.host, "redis.example.org");
    CHECK_INT(u.port, 6379);
    CHECK_INT(u.db, 0);
    CHECK_STR(u.user, "");
    CHECK_STR(u.pass, "");
    CHECK_INT(e.code, 0);
}

static void test_url_user_pass_port_db(void)
{
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("redis://volq:s3cret@10.0.0.7:6380/2", &u, NULL), 0);
    CHECK_STR(u.host, "10.0.0.7");
    CHECK_INT(u.port, 6380);
    CHECK_INT(u.db, 2);
    CHECK_STR(u.user, "volq");
    CHECK_STR(u.pass, "s3cret");
}

static void test_url_pass_only(void)
{
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("redis://:secret@localhost", &u, NULL), 0);
    CHECK_STR(u.user, "");
    CHECK_STR(u.pass, "secret");
    CHECK_STR(u.host, "localhost");
    CHECK_INT(u.port, 6379);
}

static void test_url_percent_and_at_in_password(void)
{
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("redis://:p%40ss%3Aw@h:1/", &u, NULL), 0);
    CHECK_STR(u.pass, "p@ss:w");
    CHECK_INT(u.port, 1);
    CHECK_INT(u.db, 0);
    /* The last '@' ends the user info. */
    CHECK_INT(vq_redis_url_parse("redis://:a@b@h", &u, NULL), 0);
    CHECK_STR(u.pass, "a@b");
    CHECK_STR(u.host, "h");
}

static void test_url_ipv6(void)
{
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("redis://[::1]:7000/1", &u, NULL), 0);
    CHECK_STR(u.host, "::1");
    CHECK_INT(u.port, 7000);
    CHECK_INT(u.db, 1);
}

static void test_url_unix(void)
{
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("unix:///var/lib/volq/redis.sock", &u, NULL), 0);
    CHECK_INT(u.is_unix, 1);
    CHECK_STR(u.path, "/var/lib/volq/redis.sock");
    CHECK_INT(u.db, 0);
    CHECK_INT(vq_redis_url_parse("unix:///tmp/r.sock?db=3", &u, NULL), 0);
    CHECK_STR(u.path, "/tmp/r.sock");
    CHECK_INT(u.db, 3);
    CHECK_INT(vq_redis_url_parse("unix://volq:pw@/tmp/r.sock", &u, NULL), 0);
    CHECK_STR(u.user, "volq");
    CHECK_STR(u.pass, "pw");
    CHECK_STR(u.path, "/tmp/r.sock");
    CHECK_INT(vq_redis_url_parse("unix://:pw@/tmp/r.sock?db=1", &u, NULL), 0);
    CHECK_STR(u.user, "");
    CHECK_STR(u.pass, "pw");
    CHECK_INT(u.db, 1);
}

/* Each bad URL is VQ_EINVAL with the exact one-line reason. */
static void expect_bad(const char *url, const char *text)
{
    vq_redis_url u;
    vq_error e = {0};
    CHECK_INT(vq_redis_url_parse(url, &u, &e), VQ_EINVAL);
    CHECK_INT(e.code, VQ_EINVAL);
    CHECK_STR(e.text, text);
}

static void test_url_bad(void)
{
    expect_bad("", "redis URL: empty");
    expect_bad("http://h:6379", "redis URL: must start with redis://, unix:// or sentinel://");
    expect_bad("rediss://h", "redis URL: TLS (rediss://) is not supported");
    expect_bad("sentinels://h/m", "redis URL: must start with redis://, unix:// or sentinel://");
    expect_bad("redis://", "redis URL: bad or missing host");
    expect_bad("redis://:6379", "redis URL: bad or missing host");
    expect_bad("redis://ho st", "redis URL: spaces or control characters");
    expect_bad("redis://h:0", "redis URL: port must be 1..65535");
    expect_bad("redis://h:65536", "redis URL: port must be 1..65535");
    expect_bad("redis://h:", "redis URL: port must be 1..65535");
    expect_bad("redis://h:63x", "redis URL: port must be 1..65535");
    expect_bad("redis://h/db1", "redis URL: database must be a number 0..99999");
    expect_bad("redis://h/100000", "redis URL: database must be a number 0..99999");
    expect_bad("redis://h?db=1", "redis URL: query strings are not supported on redis://");
    expect_bad("redis://user@h", "redis URL: user without a password (use user:pass@ or :pass@)");
    expect_bad("redis://user:@h", "redis URL: empty password");
    expect_bad("redis://:p%zz@h", "redis URL: bad password");
    expect_bad("redis://:p%4@h", "redis URL: bad password");
    expect_bad("redis://:p%00@h", "redis URL: bad password");
    expect_bad("redis://h$x", "redis URL: bad or missing host");
    expect_bad("redis://[::1:6379", "redis URL: bad or missing host");
    expect_bad("unix://relative.sock", "redis URL: unix socket path must be absolute (unix:///path)");
    expect_bad("unix:///tmp/r.sock?foo=1", "redis URL: only ?db=N is supported on unix://");
    expect_bad("unix:///tmp/r.sock?db=x", "redis URL: database must be a number 0..99999");
    expect_bad("unix://user@/tmp/r.sock", "redis URL: user without a password (use user:pass@ or :pass@)");
    char longp[200] = "unix:///";
    memset(longp + 8, 'a', 150);
    longp[158] = '\0';
    expect_bad(longp, "redis URL: unix socket path too long");
}

static void test_url_sentinel(void)
{
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("sentinel://10.0.0.1:26380,s2,[::1]:5000/mymaster", &u, NULL), 0);
    CHECK_INT(u.nsentinels, 3);
    CHECK_STR(u.sentinels[0].host, "10.0.0.1");
    CHECK_INT(u.sentinels[0].port, 26380);
    CHECK_STR(u.sentinels[1].host, "s2");
    CHECK_INT(u.sentinels[1].port, VQ_REDIS_SENTINEL_PORT);
    CHECK_STR(u.sentinels[2].host, "::1");
    CHECK_INT(u.sentinels[2].port, 5000);
    CHECK_STR(u.master, "mymaster");
    CHECK_STR(u.host, ""); /* the sentinels name it at connect */
    CHECK_INT(u.db, 0);
    CHECK_INT(u.is_unix, 0);
    CHECK_STR(u.user, "");
    CHECK_INT(vq_redis_url_parse("sentinel://volq:p%40ss@h:1/volq-prod.1/3", &u, NULL), 0);
    CHECK_INT(u.nsentinels, 1);
    CHECK_STR(u.user, "volq");
    CHECK_STR(u.pass, "p@ss");
    CHECK_STR(u.master, "volq-prod.1");
    CHECK_INT(u.db, 3);
    CHECK_INT(vq_redis_url_parse("sentinel://:pw@h/m/", &u, NULL), 0);
    CHECK_STR(u.pass, "pw");
    CHECK_INT(u.db, 0);
    /* Plain URLs say no sentinel. */
    CHECK_INT(vq_redis_url_parse("redis://h", &u, NULL), 0);
    CHECK_INT(u.nsentinels, 0);
    CHECK_STR(u.master, "");
}

static void test_url_sentinel_bad(void)
{
    expect_bad("sentinel://h:26379", "redis URL: sentinel:// needs the master's name "
               "(sentinel://host:port/NAME)");
    expect_bad("sentinel://h:26379/", "redis URL: sentinel:// needs the master's name "
               "(sentinel://host:port/NAME)");
    expect_bad("sentinel://h1,,h2/m", "redis URL: bad or missing host");
    expect_bad("sentinel://h1,/m", "redis URL: bad or missing host");
    expect_bad("sentinel:///m", "redis URL: bad or missing host");
    expect_bad("sentinel://h:0/m", "redis URL: port must be 1..65535");
    expect_bad("sentinel://h/m$", "redis URL: bad master name");
    expect_bad("sentinel://h/m/x", "redis URL: database must be a number 0..99999");
    expect_bad("sentinel://h/m?db=1", "redis URL: query strings are not supported on sentinel://");
    expect_bad("sentinel://user@h/m", "redis URL: user without a password (use user:pass@ or :pass@)");
    expect_bad("sentinel://a,b,c,d,e,f,g,h,i/m", "redis URL: more than 8 sentinels");
    char longm[200] = "sentinel://h/";
    memset(longm + 13, 'm', 130);
    longm[143] = '\0';
    expect_bad(longm, "redis URL: master name too long");
    vq_redis_url u;
    CHECK_INT(vq_redis_url_parse("sentinel://a,b,c,d,e,f,g,h/m", &u, NULL), 0);
    CHECK_INT(u.nsentinels, 8);
    CHECK_STR(u.sentinels[7].host, "h");
}

static void test_url_bad_leaves_out_untouched(void)
{
    vq_redis_url u;
    memset(&u, 0x5a, sizeof u);
    CHECK_INT(vq_redis_url_parse("redis://h:99999", &u, NULL), VQ_EINVAL);
    CHECK_INT(u.port, 0x5a5a5a5a);
}

/* What logs and answers show: the password never. */
static void test_url_shown_hides_the_password(void)
{
    static const char *const cases[][2] = {
        {"redis://volq:s3cret@10.0.0.7:6380/2", "redis://volq:***@10.0.0.7:6380/2"},
        {"redis://:secret@localhost", "redis://:***@localhost"},
        {"redis://:a@b@h/1", "redis://:***@h/1"},
        {"unix://volq:pw@/run/redis.sock?db=1", "unix://volq:***@/run/redis.sock?db=1"},
        {"sentinel://u:p@s1:26379,s2/mymaster/0", "sentinel://u:***@s1:26379,s2/mymaster/0"},
        {"redis://h:6379/0", "redis://h:6379/0"},
        {"unix:///run/redis.sock", "unix:///run/redis.sock"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vq_redis_url_shown(cases[i][0], out, sizeof out);
        CHECK_STR(out, cases[i][1]);
    }
}

T_MAIN(T(test_url_host_defaults), T(test_url_shown_hides_the_password), T(test_url_user_pass_port_db), T(test_url_pass_only),
       T(test_url_percent_and_at_in_password), T(test_url_ipv6), T(test_url_unix),
       T(test_url_bad), T(test_url_sentinel), T(test_url_sentinel_bad),
       T(test_url_bad_leaves_out_untouched))
