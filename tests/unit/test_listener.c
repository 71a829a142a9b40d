/* SPDX-License-Identifier: Apache-2.0
 * Tests for net/listener: address parsing table, SO_REUSEPORT listeners, unix sockets and
 * private/loopback address classification. */
#include "net/listener.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>

static void test_parse_valid(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int family;
        const char *text;
        bool loopback;
        int port;
    } cases[] = {
        {"127.0.0.1:8443", AF_INET, "127.0.0.1:8443", true, 8443},
        {"0.0.0.0:80", AF_INET, "0.0.0.0:80", false, 80},
        {"10.1.2.3:65535", AF_INET, "10.1.2.3:65535", false, 65535},
        {"localhost:8443", AF_INET, "127.0.0.1:8443", true, 8443},
        {"127.0.0.1:0", AF_INET, "127.0.0.1:0", true, 0},
        {"[::1]:8443", AF_INET6, "[::1]:8443", true, 8443},
        {"[::]:1", AF_INET6, "[::]:1", false, 1},
        {"[2001:DB8::1]:443", AF_INET6, "[2001:db8::1]:443", false, 443},
        {"[::ffff:127.0.0.1]:80", AF_INET6, "[::ffff:127.0.0.1]:80", true, 80},
        {"unix:/run/custos.sock", AF_UNIX, "unix:/run/custos.sock", true, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        custos_addr_t a;
        int rc = custos_addr_parse(cases[i].in, &a);
        if (rc != 0)
            fail_msg("'%s' rejected", cases[i].in);
        assert_int_equal(a.family, cases[i].family);
        assert_string_equal(a.text, cases[i].text);
        assert_int_equal(a.is_loopback, cases[i].loopback);
        if (a.family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
            assert_int_equal(a.len, sizeof(*sin));
            assert_int_equal(ntohs(sin->sin_port), cases[i].port);
        } else if (a.family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
            assert_int_equal(a.len, sizeof(*sin6));
            assert_int_equal(ntohs(sin6->sin6_port), cases[i].port);
        } else {
            assert_string_equal(((struct sockaddr_un *)&a.ss)->sun_path, "/run/custos.sock");
        }
    }
}

static void test_parse_invalid(void **state)
{
    (void)state;
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof(longpath) - 1] = 0;
    const char *bad[] = {
        "",
        "127.0.0.1",
        "127.0.0.1:",
        ":8443",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1:080",
        "127.0.0.1:80x",
        "127.0.0.1:80 ",
        " 127.0.0.1:80",
        "127.0.0.1:99999999999",
        "127.0.0.01:80",
        "127.1:80",
        "256.0.0.1:80",
        "1.2.3.4.5:80",
        "example.com:80",
        "localhost",
        "LOCALHOST:80x",
        "::1:8443",
        "[::1]",
        "[::1]8443",
        "[::1]:",
        "[::1]:70000",
        "[fe80::1%eth0]:80",
        "[127.0.0.1]:80",
        "[]:80",
        "[::1:80",
        "unix:",
        "tcp://127.0.0.1:80",
        longpath,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        custos_addr_t a;
        if (custos_addr_parse(bad[i], &a) != CUSTOS_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
    }
    custos_addr_t a;
    assert_int_equal(custos_addr_parse(NULL, &a), CUSTOS_EINVAL);
}

static void test_reuseport_two_listeners(void **state)
{
    (void)state;
    custos_addr_t a;
    int fd1 = -1, fd2 = -1;
    assert_int_equal(custos_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(custos_listener_open(&a, true, 16, &fd1), 0);
    int port = custos_listener_port(fd1);
    assert_true(port > 0);
    assert_true(fcntl(fd1, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd1, F_GETFD) & FD_CLOEXEC);

    char spec[64];
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
    assert_int_equal(custos_addr_parse(spec, &a), 0);
    assert_int_equal(custos_listener_open(&a, true, 16, &fd2), 0);
    assert_int_equal(custos_listener_port(fd2), port);

    /* Without SO_REUSEPORT the same port is busy. */
    int fd3 = -1;
    assert_int_equal(custos_listener_open(&a, false, 16, &fd3), CUSTOS_EIO);
    assert_int_equal(errno, EADDRINUSE);
    assert_int_equal(fd3, -1);
    close(fd1);
    close(fd2);
}

static void test_ipv6_listener(void **state)
{
    (void)state;
    custos_addr_t a;
    int fd = -1;
    assert_int_equal(custos_addr_parse("[::1]:0", &a), 0);
    int rc = custos_listener_open(&a, false, 0, &fd);
    if (rc != 0 && errno == EADDRNOTAVAIL)
        skip(); /* no IPv6 loopback in this environment */
    assert_int_equal(rc, 0);
    int v6only = 0;
    socklen_t l = sizeof(v6only);
    assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l), 0);
    assert_int_equal(v6only, 1);
    assert_true(custos_listener_port(fd) > 0);
    close(fd);
}

static void test_unix_listener(void **state)
{
    (void)state;
    char dir[] = "/tmp/custos-lst-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char spec[160], path[128];
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    snprintf(spec, sizeof(spec), "unix:%s", path);
    custos_addr_t a;
    assert_int_equal(custos_addr_parse(spec, &a), 0);
    int fd = -1;
    assert_int_equal(custos_listener_open(&a, false, 8, &fd), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(custos_listener_port(fd), CUSTOS_EINVAL);

    /* A live listener on the path is not stolen. */
    int fd2 = -1;
    assert_int_equal(custos_listener_open(&a, false, 8, &fd2), CUSTOS_EIO);
    assert_int_equal(errno, EADDRINUSE);
    /* After it closes, the stale socket file is replaced. */
    close(fd);
    assert_int_equal(custos_listener_open(&a, false, 8, &fd2), 0);
    close(fd2);
    unlink(path);

    /* A regular file at the path is never removed. */
    int f = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(f >= 0);
    close(f);
    assert_int_equal(custos_listener_open(&a, false, 8, &fd2), CUSTOS_EIO);
    assert_int_equal(errno, ENOTSOCK);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    unlink(path);
    rmdir(dir);
}

static bool priv(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return custos_addr_is_private((struct sockaddr *)&ss);
}

static void test_private_detection(void **state)
{
    (void)state;
    const char *yes[] = {"10.0.0.1",    "10.255.255.255",  "172.16.0.1",       "172.31.255.255",
                         "192.168.1.1", "127.0.0.1",       "127.255.0.9",      "169.254.169.254",
                         "::1",         "fc00::1",         "fdff:ffff::1",     "fe80::1",
                         "febf::1",     "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254"};
    const char *no[] = {"8.8.8.8",        "172.15.255.255",  "172.32.0.1", "192.169.0.1", "169.253.0.1", "11.0.0.1",
                        "0.0.0.0",        "2001:db8::1",     "fec0::1",    "fbff::1",     "::",          "::2",
                        "::ffff:8.8.8.8", "2606:4700::1111", "100.64.0.1"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!priv(yes[i]))
            fail_msg("%s should be private", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (priv(no[i]))
            fail_msg("%s should be public", no[i]);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_true(custos_addr_is_private((struct sockaddr *)&sun));
    assert_false(custos_addr_is_private(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_reuseport_two_listeners),
        cmocka_unit_test(test_ipv6_listener),
        cmocka_unit_test(test_unix_listener),
        cmocka_unit_test(test_private_detection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
