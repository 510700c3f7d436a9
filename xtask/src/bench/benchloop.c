/* The benchmarks' workload, built by `cargo xtask bench` with gcc.
 *
 *   benchloop loop N DIR          N iterations of open/write/close/rename/unlink in DIR and
 *                                 socket/connect/send/close to a loopback UDP port
 *   benchloop spin WORKERS N DIR  WORKERS processes, each N iterations of open(O_CREAT)/close:
 *                                 the cheapest recorded events, for throughput
 *   benchloop time CMD [ARGS...]  run CMD and time it
 *
 * Each prints `benchloop ns_per_iter X` (and `cpu_ns_per_iter`) or `benchloop ns X` on stdout,
 * so the time excludes whatever started it (a tracer's own start-up). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* A bound loopback UDP socket nobody reads: sends to it succeed and are dropped when full. */
static struct sockaddr_in udp_sink(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, len) < 0 || getsockname(s, (struct sockaddr *)&addr, &len) < 0)
        die("udp sink");
    return addr;
}

static void one_iteration(const char *a, const char *b, const struct sockaddr_in *peer, const char *buf) {
    int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open");
    if (write(fd, buf, 64) != 64) die("write");
    close(fd);
    if (rename(a, b) < 0) die("rename");
    if (unlink(b) < 0) die("unlink");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    if (connect(s, (const struct sockaddr *)peer, sizeof *peer) < 0) die("connect");
    send(s, buf, 64, MSG_DONTWAIT);
    close(s);
}

static int run_loop(long n, const char *dir) {
    char a[4096], b[4096], buf[64];
    memset(buf, 'x', sizeof buf);
    snprintf(a, sizeof a, "%s/loop-%d.a", dir, getpid());
    snprintf(b, sizeof b, "%s/loop-%d.b", dir, getpid());
    struct sockaddr_in peer = udp_sink();
    long long t0 = now_ns(), c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < n; i++) one_iteration(a, b, &peer, buf);
    long long t1 = now_ns(), c1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    printf("benchloop ns_per_iter %.1f\n", (double)(t1 - t0) / (double)n);
    /* CPU time, kernel programs run on our syscalls included: what a busy machine does not
     * distort (other tasks only make us wait). */
    printf("benchloop cpu_ns_per_iter %.1f\n", (double)(c1 - c0) / (double)n);
    return 0;
}

static void spin_worker(long n, const char *dir, int w) {
    char a[4096];
    snprintf(a, sizeof a, "%s/spin-%d", dir, w);
    for (long i = 0; i < n; i++) {
        int fd = open(a, O_WRONLY | O_CREAT, 0644);
        if (fd < 0) die("open");
        close(fd);
    }
    unlink(a);
}

static int run_spin(int workers, long n, const char *dir) {
    long long t0 = now_ns();
    for (int w = 0; w < workers; w++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            spin_worker(n, dir, w);
            _exit(0);
        }
    }
    int status, failed = 0;
    while (wait(&status) > 0) failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    printf("benchloop ns %lld\n", now_ns() - t0);
    return failed;
}

static int run_time(char **argv) {
    long long t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        execvp(argv[0], argv);
        die(argv[0]);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    printf("benchloop ns %lld\n", now_ns() - t0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "loop") == 0) return run_loop(atol(argv[2]), argv[3]);
    if (argc == 5 && strcmp(argv[1], "spin") == 0) return run_spin(atoi(argv[2]), atol(argv[3]), argv[4]);
    if (argc >= 3 && strcmp(argv[1], "time") == 0) return run_time(argv + 2);
    fprintf(stderr, "usage: benchloop loop N DIR | spin WORKERS N DIR | time CMD [ARGS...]\n");
    return 2;
}
