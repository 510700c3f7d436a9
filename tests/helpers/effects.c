// effects: one small program that makes precise syscalls for pilot's integration tests.
//
// Usage: effects OP [ARGS...] [+ OP [ARGS...]]...
// Runs the operations in order, in one process (so `chdir DIR + unlink rel` resolves `rel`
// against DIR). Each operation prints one line to stdout, `OP ret=N` or `OP ret=-1 errno=E`,
// plus `key=value` facts a test may need (ports, tids). A failing syscall is not an error: many
// tests want it to fail. Exit status: 0, or 64 for a usage error, 65 when setting up an
// operation failed (not the syscall under test), or what `exit CODE` says.
//
// Most syscalls are made with syscall(2) so the syscall number is exactly the one named (glibc
// would turn unlink() into unlinkat(), open() into openat(), and so on).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

static const char *prog = "effects";

static void usage(const char *msg) {
    fprintf(stderr, "%s: %s\n", prog, msg);
    exit(64);
}

static void die(const char *what) {
    fprintf(stderr, "%s: setup failed: %s: %s\n", prog, what, strerror(errno));
    exit(65);
}

// One result line. `ret` < 0 means failure with errno set (the syscall(2) convention).
static void report(const char *op, long ret) {
    int e = errno;
    if (ret < 0) {
        dprintf(1, "%s ret=-1 errno=%d\n", op, e);
    } else {
        dprintf(1, "%s ret=%ld\n", op, ret);
    }
}

static long num(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end) usage("not a number");
    return v;
}

static mode_t octal(const char *s) {
    char *end;
    long v = strtol(s, &end, 8);
    if (*end) usage("not an octal mode");
    return (mode_t)v;
}

// "O_WRONLY|O_CREAT|O_TRUNC" -> flags.
static int open_flags(const char *s) {
    static const struct { const char *name; int bit; } names[] = {
        {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY}, {"O_RDWR", O_RDWR},
        {"O_CREAT", O_CREAT},   {"O_EXCL", O_EXCL},     {"O_TRUNC", O_TRUNC},
        {"O_APPEND", O_APPEND}, {"O_CLOEXEC", O_CLOEXEC}, {"O_DIRECTORY", O_DIRECTORY},
        {"O_NONBLOCK", O_NONBLOCK}, {"O_PATH", O_PATH},
    };
    int flags = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (strcmp(tok, names[i].name) == 0) {
                flags |= names[i].bit;
                break;
            }
        }
        if (i == sizeof names / sizeof names[0]) usage("unknown open flag");
    }
    free(copy);
    return flags;
}

// A directory fd for the *at syscalls ("AT_FDCWD" for the cwd).
static int dirfd_of(const char *dir) {
    if (strcmp(dir, "AT_FDCWD") == 0) return AT_FDCWD;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die(dir);
    return fd;
}

static void close_dirfd(int fd) {
    if (fd >= 0) close(fd);
}

// ---- `tree DIR`: the observable state of a directory tree, one line per entry, sorted, with
// paths relative to DIR (so two copies of a fixture print the same). ----
static int tree_base_len;
static char **tree_lines;
static size_t tree_count, tree_cap;

static int tree_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)type;
    (void)ftw;
    char line[8192];
    const char *rel = path + tree_base_len;
    if (*rel == '/') rel++;
    if (!*rel) rel = ".";
    const char *kind = S_ISDIR(st->st_mode) ? "dir" : S_ISLNK(st->st_mode) ? "symlink" : S_ISREG(st->st_mode) ? "file" : "other";
    int n = snprintf(line, sizeof line, "tree %s %s mode=%o owner=%d:%d", rel, kind, st->st_mode & 07777, st->st_uid, st->st_gid);
    if (S_ISREG(st->st_mode)) {
        char content[65] = {0};
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? read(fd, content, 64) : -1;
        if (fd >= 0) close(fd);
        for (ssize_t i = 0; i < got; i++)
            if (content[i] == '\n' || content[i] == ' ' || (unsigned char)content[i] < 32) content[i] = '_';
        n += snprintf(line + n, sizeof line - n, " nlink=%lu size=%lld content=%s", (unsigned long)st->st_nlink, (long long)st->st_size, got > 0 ? content : "");
    }
    if (S_ISLNK(st->st_mode)) {
        char target[4096] = {0};
        if (readlink(path, target, sizeof target - 1) > 0) n += snprintf(line + n, sizeof line - n, " -> %s", target);
    }
    char names[4096];
    ssize_t len = llistxattr(path, names, sizeof names);
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1) {
        if (strncmp(names + i, "user.", 5) != 0) continue;
        char value[256] = {0};
        ssize_t v = lgetxattr(path, names + i, value, sizeof value - 1);
        n += snprintf(line + n, sizeof line - n, " xattr:%s=%s", names + i, v >= 0 ? value : "?");
    }
    if (tree_count == tree_cap) {
        tree_cap = tree_cap ? tree_cap * 2 : 64;
        tree_lines = realloc(tree_lines, tree_cap * sizeof *tree_lines);
    }
    tree_lines[tree_count++] = strdup(line);
    return 0;
}

static int cmp_lines(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void tree(const char *dir) {
    tree_base_len = (int)strlen(dir);
    tree_count = 0;
    if (nftw(dir, tree_entry, 32, FTW_PHYS) != 0) die("nftw");
    qsort(tree_lines, tree_count, sizeof *tree_lines, cmp_lines);
    for (size_t i = 0; i < tree_count; i++) {
        dprintf(1, "%s\n", tree_lines[i]);
        free(tree_lines[i]);
    }
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int open_or_die(const char *path, int flags, mode_t mode) {
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd < 0) die(path);
    return fd;
}

static void fill(char *buf, size_t n) {
    for (size_t i = 0; i < n; i++) buf[i] = 'a' + (char)(i % 26);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

// Numeric IPv4/IPv6 address and port to a sockaddr.
static socklen_t inet_addr_of(const char *host, const char *port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)num(port));
        return sizeof *in4;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)num(port));
        return sizeof *in6;
    }
    usage("not a numeric IP address");
    return 0;
}

static int port_of(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

// A unix socket address; a leading '@' means the abstract namespace.
static socklen_t unix_addr_of(const char *path, struct sockaddr_un *un) {
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof un->sun_path) usage("unix path too long");
    if (path[0] == '@') {
        memcpy(un->sun_path + 1, path + 1, n - 1);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    memcpy(un->sun_path, path, n + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

struct thread_job {
    const char *path;
    char *const *argv; // thread-exec
};

static void *thread_write(void *arg) {
    struct thread_job *job = arg;
    dprintf(1, "thread tid=%ld\n", (long)syscall(SYS_gettid));
    int fd = open(job->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die(job->path);
    report("thread-write", write(fd, "from-thread\n", 12));
    close(fd);
    return NULL;
}

static void *thread_exit(void *arg) {
    exit((int)(intptr_t)arg); // exit_group from a thread that is not the leader
    return NULL;
}

static void *thread_exec(void *arg) {
    struct thread_job *job = arg;
    dprintf(1, "thread tid=%ld\n", (long)syscall(SYS_gettid));
    execv(job->argv[0], job->argv);
    die("execv from thread");
    return NULL;
}

// Runs one operation (argv[0] = its name, argc its argument count including the name).
// Returns only if the operation does not end the process.
static void run(int argc, char **argv) {
    const char *op = argv[0];
#define NEED(n)                                                      \
    do {                                                             \
        if (argc != (n) + 1) usage("wrong number of arguments");     \
    } while (0)
#define NEED_AT_LEAST(n)                                             \
    do {                                                             \
        if (argc < (n) + 1) usage("too few arguments");              \
    } while (0)

    // ---- opens ----
    if (!strcmp(op, "open")) { // PATH FLAGS [MODE]
        NEED_AT_LEAST(2);
        long fd = syscall(SYS_open, argv[1], open_flags(argv[2]), argc > 3 ? octal(argv[3]) : 0);
        report(op, fd);
        if (fd >= 0) close((int)fd);
    } else if (!strcmp(op, "openat")) { // DIR NAME FLAGS [MODE]
        NEED_AT_LEAST(3);
        int dfd = dirfd_of(argv[1]);
        long fd = syscall(SYS_openat, dfd, argv[2], open_flags(argv[3]), argc > 4 ? octal(argv[4]) : 0);
        report(op, fd);
        if (fd >= 0) close((int)fd);
        close_dirfd(dfd);
    } else if (!strcmp(op, "openat2")) { // DIR NAME FLAGS MODE
        NEED(4);
        int dfd = dirfd_of(argv[1]);
        struct open_how how = {.flags = (uint64_t)open_flags(argv[3]), .mode = octal(argv[4]), .resolve = 0};
        long fd = syscall(SYS_openat2, dfd, argv[2], &how, sizeof how);
        report(op, fd);
        if (fd >= 0) close((int)fd);
        close_dirfd(dfd);
    } else if (!strcmp(op, "creat")) { // PATH MODE
        NEED(2);
        long fd = syscall(SYS_creat, argv[1], octal(argv[2]));
        report(op, fd);
        if (fd >= 0) close((int)fd);

    // ---- writes ----
    } else if (!strcmp(op, "write")) { // PATH CALLS SIZE: CALLS write(2)s of SIZE bytes, then close
        NEED(3);
        long calls = num(argv[2]), size = num(argv[3]);
        char *buf = malloc((size_t)size + 1);
        fill(buf, (size_t)size);
        int fd = open_or_die(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dprintf(1, "write fd=%d\n", fd);
        long total = 0;
        for (long i = 0; i < calls; i++) {
            long n = syscall(SYS_write, fd, buf, size);
            if (n > 0) total += n;
        }
        report(op, total);
        close(fd);
        free(buf);
    } else if (!strcmp(op, "write-pause")) { // PATH MS: write 10 B, sleep MS, write 20 B twice, close
        NEED(2);
        int fd = open_or_die(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char buf[20];
        fill(buf, sizeof buf);
        long a = write(fd, buf, 10);
        sleep_ms(num(argv[2]));
        long b = write(fd, buf, 20);
        long c = write(fd, buf, 20);
        report(op, a + b + c);
        close(fd);
    } else if (!strcmp(op, "write-rdonly")) { // PATH: write(2) to an O_RDONLY fd (EBADF), twice
        NEED(1);
        int fd = open_or_die(argv[1], O_RDONLY, 0);
        report(op, syscall(SYS_write, fd, "x", 1));
        report(op, syscall(SYS_write, fd, "y", 1));
        close(fd);
    } else if (!strcmp(op, "eventfd-write")) { // an eventfd (unknown to path tracking), written once
        NEED(0);
        int fd = eventfd(0, EFD_CLOEXEC);
        if (fd < 0) die("eventfd");
        uint64_t one = 1;
        dprintf(1, "eventfd fd=%d\n", fd);
        report(op, write(fd, &one, sizeof one));
        close(fd);
    } else if (!strcmp(op, "memfd-write")) { // N: a memfd, written N bytes
        NEED(1);
        int fd = memfd_create("pilot-test", MFD_CLOEXEC);
        if (fd < 0) die("memfd_create");
        long n = num(argv[1]);
        char *buf = malloc((size_t)n + 1);
        fill(buf, (size_t)n);
        dprintf(1, "memfd fd=%d\n", fd);
        report(op, write(fd, buf, (size_t)n));
        close(fd);
        free(buf);
    } else if (!strcmp(op, "pwrite")) { // PATH SIZE OFFSET
        NEED(3);
        long size = num(argv[2]);
        char *buf = malloc((size_t)size + 1);
        fill(buf, (size_t)size);
        int fd = open_or_die(argv[1], O_WRONLY | O_CREAT, 0644);
        report(op, syscall(SYS_pwrite64, fd, buf, size, num(argv[3])));
        close(fd);
        free(buf);
    } else if (!strcmp(op, "writev") || !strcmp(op, "pwritev") || !strcmp(op, "pwritev2")) { // PATH: 3+5 bytes
        NEED(1);
        char a[] = "abc", b[] = "defgh";
        struct iovec iov[2] = {{a, 3}, {b, 5}};
        int fd = open_or_die(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        long r;
        if (!strcmp(op, "writev")) r = syscall(SYS_writev, fd, iov, 2);
        else if (!strcmp(op, "pwritev")) r = syscall(SYS_pwritev, fd, iov, 2, 0L, 0L);
        else r = syscall(SYS_pwritev2, fd, iov, 2, 0L, 0L, 0);
        report(op, r);
        close(fd);
    } else if (!strcmp(op, "sendfile") || !strcmp(op, "copy-file-range")) { // SRC DST
        NEED(2);
        int in = open_or_die(argv[1], O_RDONLY, 0);
        struct stat st;
        if (fstat(in, &st) < 0) die("fstat");
        int out = open_or_die(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        long r;
        if (!strcmp(op, "sendfile")) r = syscall(SYS_sendfile, out, in, NULL, (size_t)st.st_size);
        else r = syscall(SYS_copy_file_range, in, NULL, out, NULL, (size_t)st.st_size, 0);
        report(op, r);
        close(out);
        close(in);
    } else if (!strcmp(op, "splice")) { // DST: 11 bytes through a pipe into DST
        NEED(1);
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) die("pipe");
        if (write(p[1], "splice-data", 11) != 11) die("write to pipe");
        int out = open_or_die(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        report(op, syscall(SYS_splice, p[0], NULL, out, NULL, 11L, 0));
        close(out);
        close(p[0]);
        close(p[1]);

    // ---- path syscalls ----
    } else if (!strcmp(op, "unlink")) {
        NEED(1);
        report(op, syscall(SYS_unlink, argv[1]));
    } else if (!strcmp(op, "unlinkat") || !strcmp(op, "unlinkat-removedir")) { // DIR NAME
        NEED(2);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_unlinkat, dfd, argv[2], strcmp(op, "unlinkat") ? AT_REMOVEDIR : 0));
        close_dirfd(dfd);
    } else if (!strcmp(op, "rmdir")) {
        NEED(1);
        report(op, syscall(SYS_rmdir, argv[1]));
    } else if (!strcmp(op, "mkdir")) { // PATH MODE
        NEED(2);
        report(op, syscall(SYS_mkdir, argv[1], octal(argv[2])));
    } else if (!strcmp(op, "mkdirat")) { // DIR NAME MODE
        NEED(3);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_mkdirat, dfd, argv[2], octal(argv[3])));
        close_dirfd(dfd);
    } else if (!strcmp(op, "rename")) { // OLD NEW
        NEED(2);
        report(op, syscall(SYS_rename, argv[1], argv[2]));
    } else if (!strcmp(op, "renameat")) { // DIR OLD NEW (both relative to DIR)
        NEED(3);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_renameat, dfd, argv[2], dfd, argv[3]));
        close_dirfd(dfd);
    } else if (!strcmp(op, "renameat2-noreplace") || !strcmp(op, "renameat2-exchange")) { // OLD NEW
        NEED(2);
        unsigned flags = strcmp(op, "renameat2-noreplace") ? RENAME_EXCHANGE : RENAME_NOREPLACE;
        report(op, syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], flags));
    } else if (!strcmp(op, "truncate")) { // PATH LEN
        NEED(2);
        report(op, syscall(SYS_truncate, argv[1], num(argv[2])));
    } else if (!strcmp(op, "ftruncate")) { // PATH LEN
        NEED(2);
        int fd = open_or_die(argv[1], O_WRONLY, 0);
        report(op, syscall(SYS_ftruncate, fd, num(argv[2])));
        close(fd);
    } else if (!strcmp(op, "chmod")) { // PATH MODE
        NEED(2);
        report(op, syscall(SYS_chmod, argv[1], octal(argv[2])));
    } else if (!strcmp(op, "fchmod")) { // PATH MODE
        NEED(2);
        int fd = open_or_die(argv[1], O_RDONLY, 0);
        report(op, syscall(SYS_fchmod, fd, octal(argv[2])));
        close(fd);
    } else if (!strcmp(op, "chmod-proc-fd")) { // PATH MODE: open PATH with O_PATH, chmod /proc/self/fd/N
        NEED(2);
        int fd = open_or_die(argv[1], O_PATH, 0);
        char via[64];
        snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
        report(op, syscall(SYS_chmod, via, octal(argv[2])));
        close(fd);
    } else if (!strcmp(op, "fchmodat")) { // DIR NAME MODE
        NEED(3);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_fchmodat, dfd, argv[2], octal(argv[3])));
        close_dirfd(dfd);
    } else if (!strcmp(op, "chown") || !strcmp(op, "lchown")) { // PATH UID GID
        NEED(3);
        report(op, syscall(strcmp(op, "chown") ? SYS_lchown : SYS_chown, argv[1], num(argv[2]), num(argv[3])));
    } else if (!strcmp(op, "fchown")) { // PATH UID GID
        NEED(3);
        int fd = open_or_die(argv[1], O_RDONLY, 0);
        report(op, syscall(SYS_fchown, fd, num(argv[2]), num(argv[3])));
        close(fd);
    } else if (!strcmp(op, "fchownat")) { // DIR NAME UID GID
        NEED(4);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_fchownat, dfd, argv[2], num(argv[3]), num(argv[4]), 0));
        close_dirfd(dfd);
    } else if (!strcmp(op, "link")) { // EXISTING NEW
        NEED(2);
        report(op, syscall(SYS_link, argv[1], argv[2]));
    } else if (!strcmp(op, "linkat")) { // DIR EXISTING NEW (both relative to DIR)
        NEED(3);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_linkat, dfd, argv[2], dfd, argv[3], 0));
        close_dirfd(dfd);
    } else if (!strcmp(op, "symlink")) { // TARGET LINK
        NEED(2);
        report(op, syscall(SYS_symlink, argv[1], argv[2]));
    } else if (!strcmp(op, "symlinkat")) { // TARGET DIR LINK
        NEED(3);
        int dfd = dirfd_of(argv[2]);
        report(op, syscall(SYS_symlinkat, argv[1], dfd, argv[3]));
        close_dirfd(dfd);
    } else if (!strcmp(op, "mknod")) { // PATH: a FIFO, mode 0600
        NEED(1);
        report(op, syscall(SYS_mknod, argv[1], S_IFIFO | 0600, 0));
    } else if (!strcmp(op, "mknodat")) { // DIR NAME: a FIFO, mode 0600
        NEED(2);
        int dfd = dirfd_of(argv[1]);
        report(op, syscall(SYS_mknodat, dfd, argv[2], S_IFIFO | 0600, 0));
        close_dirfd(dfd);
    } else if (!strcmp(op, "setxattr") || !strcmp(op, "lsetxattr")) { // PATH NAME VALUE
        NEED(3);
        long nr = strcmp(op, "setxattr") ? SYS_lsetxattr : SYS_setxattr;
        report(op, syscall(nr, argv[1], argv[2], argv[3], strlen(argv[3]), 0));
    } else if (!strcmp(op, "fsetxattr")) { // PATH NAME VALUE
        NEED(3);
        int fd = open_or_die(argv[1], O_RDONLY, 0);
        report(op, syscall(SYS_fsetxattr, fd, argv[2], argv[3], strlen(argv[3]), 0));
        close(fd);
    } else if (!strcmp(op, "removexattr") || !strcmp(op, "lremovexattr")) { // PATH NAME
        NEED(2);
        long nr = strcmp(op, "removexattr") ? SYS_lremovexattr : SYS_removexattr;
        report(op, syscall(nr, argv[1], argv[2]));
    } else if (!strcmp(op, "fremovexattr")) { // PATH NAME
        NEED(2);
        int fd = open_or_die(argv[1], O_RDONLY, 0);
        report(op, syscall(SYS_fremovexattr, fd, argv[2]));
        close(fd);
    } else if (!strcmp(op, "chdir")) {
        NEED(1);
        report(op, syscall(SYS_chdir, argv[1]));
    } else if (!strcmp(op, "fchdir")) {
        NEED(1);
        int fd = open_or_die(argv[1], O_RDONLY | O_DIRECTORY, 0);
        report(op, syscall(SYS_fchdir, fd));
        close(fd);
    } else if (!strcmp(op, "chroot")) {
        NEED(1);
        report(op, syscall(SYS_chroot, argv[1]));

    // ---- sockets ----
    } else if (!strcmp(op, "tcp-connect")) { // HOST PORT NBYTES: connect, write NBYTES, close
        NEED(3);
        struct sockaddr_storage ss;
        socklen_t len = inet_addr_of(argv[1], argv[2], &ss);
        int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) die("socket");
        long r = syscall(SYS_connect, s, &ss, len);
        report(op, r);
        if (r == 0) {
            long n = num(argv[3]);
            char *buf = malloc((size_t)n + 1);
            fill(buf, (size_t)n);
            dprintf(1, "tcp-connect fd=%d sent=%ld\n", s, (long)write(s, buf, (size_t)n));
            free(buf);
        }
        close(s);
    } else if (!strcmp(op, "tcp-selfconnect")) { // HOST: bind HOST:0, listen, connect to it, accept
        NEED(1);
        struct sockaddr_storage ss, got;
        socklen_t len = inet_addr_of(argv[1], "0", &ss), glen = sizeof got;
        int l = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l < 0) die("socket");
        report("bind", syscall(SYS_bind, l, &ss, len));
        report("listen", syscall(SYS_listen, l, 8));
        if (getsockname(l, (struct sockaddr *)&got, &glen) < 0) die("getsockname");
        dprintf(1, "listen port=%d\n", port_of(&got));
        int c = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0) die("socket");
        report("connect", syscall(SYS_connect, c, &got, glen));
        struct sockaddr_storage me;
        socklen_t mlen = sizeof me;
        if (getsockname(c, (struct sockaddr *)&me, &mlen) < 0) die("getsockname");
        dprintf(1, "client port=%d\n", port_of(&me));
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        long a = syscall(SYS_accept4, l, &peer, &plen, SOCK_CLOEXEC);
        report("accept", a);
        if (write(c, "hello", 5) != 5) die("write");
        char buf[8];
        if (a >= 0 && read((int)a, buf, sizeof buf) < 0) die("read");
        if (a >= 0) close((int)a);
        close(c);
        close(l);
    } else if (!strcmp(op, "udp-sendto") || !strcmp(op, "sendmsg")) { // HOST PORT NBYTES (twice)
        NEED(3);
        struct sockaddr_storage ss;
        socklen_t len = inet_addr_of(argv[1], argv[2], &ss);
        int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) die("socket");
        long n = num(argv[3]);
        char *buf = malloc((size_t)n + 1);
        fill(buf, (size_t)n);
        for (int i = 0; i < 2; i++) {
            if (!strcmp(op, "udp-sendto")) {
                report(op, syscall(SYS_sendto, s, buf, n, 0, &ss, len));
            } else {
                struct iovec iov = {buf, (size_t)n};
                struct msghdr msg = {.msg_name = &ss, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1};
                report(op, syscall(SYS_sendmsg, s, &msg, 0));
            }
        }
        free(buf);
        close(s);
    } else if (!strcmp(op, "udp-send-connected")) { // HOST PORT NBYTES: connect, send x2, write x1
        NEED(3);
        struct sockaddr_storage ss;
        socklen_t len = inet_addr_of(argv[1], argv[2], &ss);
        int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) die("socket");
        report("connect", syscall(SYS_connect, s, &ss, len));
        long n = num(argv[3]);
        char *buf = malloc((size_t)n + 1);
        fill(buf, (size_t)n);
        report("sendto", syscall(SYS_sendto, s, buf, n, 0, NULL, 0));
        report("sendto", syscall(SYS_sendto, s, buf, n, 0, NULL, 0));
        report("write", syscall(SYS_write, s, buf, n));
        dprintf(1, "udp fd=%d\n", s);
        free(buf);
        close(s);
    } else if (!strcmp(op, "unix-connect")) { // PATH NBYTES: connect (path or @abstract), write, close
        NEED(2);
        struct sockaddr_un un;
        socklen_t len = unix_addr_of(argv[1], &un);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) die("socket");
        long r = syscall(SYS_connect, s, &un, len);
        report(op, r);
        if (r == 0) {
            long n = num(argv[2]);
            char *buf = malloc((size_t)n + 1);
            fill(buf, (size_t)n);
            dprintf(1, "unix-connect sent=%ld\n", (long)write(s, buf, (size_t)n));
            free(buf);
        }
        close(s);
    } else if (!strcmp(op, "unix-listen")) { // PATH: bind (path or @abstract) and listen, then close
        NEED(1);
        struct sockaddr_un un;
        socklen_t len = unix_addr_of(argv[1], &un);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) die("socket");
        report("bind", syscall(SYS_bind, s, &un, len));
        report("listen", syscall(SYS_listen, s, 4));
        close(s);

    // ---- signals ----
    } else if (!strcmp(op, "kill")) { // PID SIG (PID negative: a process group)
        NEED(2);
        report(op, syscall(SYS_kill, num(argv[1]), num(argv[2])));
    } else if (!strcmp(op, "tkill")) { // TID SIG
        NEED(2);
        report(op, syscall(SYS_tkill, num(argv[1]), num(argv[2])));
    } else if (!strcmp(op, "tgkill")) { // TGID TID SIG
        NEED(3);
        report(op, syscall(SYS_tgkill, num(argv[1]), num(argv[2]), num(argv[3])));
    } else if (!strcmp(op, "pidfd-kill")) { // PID SIG
        NEED(2);
        long pfd = syscall(SYS_pidfd_open, num(argv[1]), 0);
        if (pfd < 0) die("pidfd_open");
        report(op, syscall(SYS_pidfd_send_signal, pfd, num(argv[2]), NULL, 0));
        close((int)pfd);
    } else if (!strcmp(op, "pidfd-open")) { // PID: pidfd_open(PID, 0); prints ret=fd (close-on-exec)
        NEED(1);
        long pfd = syscall(SYS_pidfd_open, num(argv[1]), 0);
        report(op, pfd < 0 ? pfd : 0);
        if (pfd >= 0) close((int)pfd);
    } else if (!strcmp(op, "sigqueue")) { // PID SIG: rt_sigqueueinfo(PID, SIG, info)
        NEED(2);
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_code = SI_QUEUE;
        info.si_pid = getpid();
        info.si_uid = getuid();
        report(op, syscall(SYS_rt_sigqueueinfo, num(argv[1]), num(argv[2]), &info));
    } else if (!strcmp(op, "waitid")) { // PID: waitid(P_PID, PID, WEXITED|WNOHANG)
        NEED(1);
        siginfo_t info;
        report(op, syscall(SYS_waitid, P_PID, num(argv[1]), &info, WEXITED | WNOHANG, NULL));

    // ---- priority, affinity, limits of a process ----
    } else if (!strcmp(op, "getpriority")) { // PID: prints ret=20-nice (the raw syscall)
        NEED(1);
        report(op, syscall(SYS_getpriority, PRIO_PROCESS, num(argv[1])));
    } else if (!strcmp(op, "setpriority")) { // PID NICE
        NEED(2);
        report(op, syscall(SYS_setpriority, PRIO_PROCESS, num(argv[1]), num(argv[2])));
    } else if (!strcmp(op, "getaffinity")) { // PID: ret=bytes copied, cpus=N
        NEED(1);
        cpu_set_t set;
        CPU_ZERO(&set);
        long r = syscall(SYS_sched_getaffinity, num(argv[1]), sizeof set, &set);
        report(op, r < 0 ? r : 0);
        if (r >= 0) dprintf(1, "getaffinity cpus=%d\n", CPU_COUNT(&set));
    } else if (!strcmp(op, "setaffinity")) { // PID CPU: pin PID to CPU
        NEED(2);
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)num(argv[2]), &set);
        report(op, syscall(SYS_sched_setaffinity, num(argv[1]), sizeof set, &set));
    } else if (!strcmp(op, "getrlimit")) { // PID: prlimit64(PID, RLIMIT_NOFILE, NULL, &old); soft= hard=
        NEED(1);
        struct rlimit old;
        long r = syscall(SYS_prlimit64, num(argv[1]), RLIMIT_NOFILE, NULL, &old);
        report(op, r);
        if (r == 0) dprintf(1, "getrlimit soft=%llu hard=%llu\n", (unsigned long long)old.rlim_cur, (unsigned long long)old.rlim_max);
    } else if (!strcmp(op, "setrlimit")) { // PID SOFT HARD: prlimit64(PID, RLIMIT_NOFILE, &new, NULL)
        NEED(3);
        struct rlimit new_limit = {(rlim_t)num(argv[2]), (rlim_t)num(argv[3])};
        report(op, syscall(SYS_prlimit64, num(argv[1]), RLIMIT_NOFILE, &new_limit, NULL));

    // ---- locks ----
    } else if (!strcmp(op, "flock")) { // PATH sh|ex|sh-nb|ex-nb: flock, keeps the fd open
        NEED(2);
        int fd = open_or_die(argv[1], O_RDONLY | O_CLOEXEC, 0);
        int how = strncmp(argv[2], "ex", 2) == 0 ? LOCK_EX : LOCK_SH;
        if (strstr(argv[2], "-nb")) how |= LOCK_NB;
        report(op, syscall(SYS_flock, fd, how));
    } else if (!strcmp(op, "fcntl-lock")) { // PATH r|w START LEN nb|wait [ofd]: F_SETLK(W) or F_OFD_SETLK(W)
        NEED_AT_LEAST(5);
        int fd = open_or_die(argv[1], O_RDWR | O_CLOEXEC, 0);
        struct flock fl = {.l_type = argv[2][0] == 'w' ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET, .l_start = num(argv[3]), .l_len = num(argv[4])};
        int ofd = argc > 6 && !strcmp(argv[6], "ofd");
        int wait = !strcmp(argv[5], "wait");
        int cmd = ofd ? (wait ? F_OFD_SETLKW : F_OFD_SETLK) : (wait ? F_SETLKW : F_SETLK);
        report(op, syscall(SYS_fcntl, fd, cmd, &fl));
    } else if (!strcmp(op, "getlk")) { // PATH: F_GETLK for a whole-file write lock; prints type= (0 rd, 1 wr, 2 none)
        NEED(1);
        int fd = open_or_die(argv[1], O_RDWR | O_CLOEXEC, 0);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        report(op, syscall(SYS_fcntl, fd, F_GETLK, &fl));
        dprintf(1, "getlk type=%d\n", fl.l_type);
        close(fd);

    // ---- more file operations ----
    } else if (!strcmp(op, "tmpfile-link")) { // DIR NAME: open(DIR, O_TMPFILE), write, linkat it to DIR/NAME
        NEED(2);
        long fd = syscall(SYS_openat, AT_FDCWD, argv[1], O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
        report("tmpfile", fd);
        if (fd >= 0) {
            if (write((int)fd, "tmp\n", 4) != 4) die("write");
            char proc[64], dest[4096];
            snprintf(proc, sizeof proc, "/proc/self/fd/%ld", fd);
            snprintf(dest, sizeof dest, "%s/%s", argv[1], argv[2]);
            report("linkat", syscall(SYS_linkat, AT_FDCWD, proc, AT_FDCWD, dest, AT_SYMLINK_FOLLOW));
            close((int)fd);
        }
    } else if (!strcmp(op, "tree")) { // DIR
        NEED(1);
        tree(argv[1]);

    // ---- cost of a call (cargo xtask bench-like numbers; not asserted) ----
    } else if (!strcmp(op, "time-kill")) { // PID N: N kill(PID, 0); prints ns= per call
        NEED(2);
        long n = num(argv[2]), t0 = now_ns(), fails = 0;
        for (long i = 0; i < n; i++) fails += syscall(SYS_kill, num(argv[1]), 0) != 0;
        dprintf(1, "time-kill ret=%ld ns=%ld\n", -fails, (now_ns() - t0) / n);
    } else if (!strcmp(op, "time-flock")) { // PATH N: N flock(LOCK_SH) + flock(LOCK_UN); prints ns= per pair
        NEED(2);
        int fd = open_or_die(argv[1], O_RDONLY | O_CLOEXEC, 0);
        long n = num(argv[2]), t0 = now_ns(), fails = 0;
        for (long i = 0; i < n; i++) {
            fails += syscall(SYS_flock, fd, LOCK_SH) != 0;
            fails += syscall(SYS_flock, fd, LOCK_UN) != 0;
        }
        dprintf(1, "time-flock ret=%ld ns=%ld\n", -fails, (now_ns() - t0) / n);
    } else if (!strcmp(op, "time-open")) { // PATH N: N open(O_WRONLY) + close; prints ns= per open
        NEED(2);
        long n = num(argv[2]), t0 = now_ns(), fails = 0;
        for (long i = 0; i < n; i++) {
            long fd = syscall(SYS_openat, AT_FDCWD, argv[1], O_WRONLY | O_CLOEXEC);
            if (fd < 0) fails++; else close((int)fd);
        }
        dprintf(1, "time-open ret=%ld ns=%ld\n", -fails, (now_ns() - t0) / n);
    } else if (!strcmp(op, "fork-kill")) { // SIG: fork a child that waits, kill it with SIG, reap it
        NEED(1);
        pid_t child = fork();
        if (child < 0) die("fork");
        if (child == 0) {
            for (;;) pause();
        }
        dprintf(1, "fork-kill child=%d\n", child);
        report(op, syscall(SYS_kill, child, num(argv[1])));
        int status;
        if (waitpid(child, &status, 0) < 0) die("waitpid");
    } else if (!strcmp(op, "fork-exit")) { // CODE: fork a child that exits with CODE, reap it
        NEED(1);
        pid_t child = fork();
        if (child < 0) die("fork");
        if (child == 0) _exit((int)num(argv[1]));
        dprintf(1, "fork-exit child=%d\n", child);
        int status;
        if (waitpid(child, &status, 0) < 0) die("waitpid");

    // ---- processes and threads ----
    } else if (!strcmp(op, "exec")) { // PATH [ARGS...]: execv(PATH, [PATH, ARGS...]); never returns on success
        NEED_AT_LEAST(1);
        char **args = calloc((size_t)argc + 1, sizeof *args);
        for (int i = 1; i < argc; i++) args[i - 1] = argv[i];
        report(op, execv(argv[1], args));
        free(args);
    } else if (!strcmp(op, "execveat")) { // DIR NAME [ARGS...]: execveat(dirfd of DIR, NAME, [NAME, ARGS...])
        NEED_AT_LEAST(2);
        int dfd = dirfd_of(argv[1]);
        char **args = calloc((size_t)argc + 1, sizeof *args);
        for (int i = 2; i < argc; i++) args[i - 2] = argv[i];
        report(op, syscall(SYS_execveat, dfd, argv[2], args, environ, 0));
        free(args);
    } else if (!strcmp(op, "fexecve")) { // PATH [ARGS...]: open PATH, then execveat(fd, "", AT_EMPTY_PATH)
        NEED_AT_LEAST(1);
        int fd = open_or_die(argv[1], O_RDONLY, 0);
        char **args = calloc((size_t)argc + 1, sizeof *args);
        for (int i = 1; i < argc; i++) args[i - 1] = argv[i];
        report(op, syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH));
        free(args);
    } else if (!strcmp(op, "thread-write")) { // PATH: a second thread opens, writes, closes PATH
        NEED(1);
        struct thread_job job = {.path = argv[1]};
        pthread_t t;
        if (pthread_create(&t, NULL, thread_write, &job)) die("pthread_create");
        pthread_join(t, NULL);
    } else if (!strcmp(op, "thread-exec")) { // PATH [ARGS...]: a second thread execs PATH
        NEED_AT_LEAST(1);
        char **args = calloc((size_t)argc + 1, sizeof *args);
        for (int i = 1; i < argc; i++) args[i - 1] = argv[i];
        struct thread_job job = {.argv = args};
        pthread_t t;
        if (pthread_create(&t, NULL, thread_exec, &job)) die("pthread_create");
        for (;;) pause();
    } else if (!strcmp(op, "thread-exit")) { // CODE: a second thread ends the process with exit(CODE)
        NEED(1);
        pthread_t t;
        if (pthread_create(&t, NULL, thread_exit, (void *)(intptr_t)num(argv[1]))) die("pthread_create");
        for (;;) pause();
    } else if (!strcmp(op, "sleep")) { // MS
        NEED(1);
        sleep_ms(num(argv[1]));
    } else if (!strcmp(op, "burst")) { // DIR N: create (O_CREAT|O_WRONLY), close and unlink N files
        NEED(2);
        long n = num(argv[2]), ok = 0;
        char path[4096];
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/f%ld", argv[1], i);
            int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0) die(path);
            close(fd);
            if (unlink(path) == 0) ok++;
        }
        report(op, ok);
    } else if (!strcmp(op, "segv")) { // die of SIGSEGV (a fault: the kernel's signal), no core dump
        NEED(0);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        *(volatile int *)(uintptr_t)num("0") = 1;
    } else if (!strcmp(op, "exit")) { // CODE
        NEED(1);
        exit((int)num(argv[1]));
    } else {
        usage("unknown operation");
    }
#undef NEED
#undef NEED_AT_LEAST
}

int main(int argc, char **argv) {
    if (argc < 2) usage("usage: effects OP [ARGS...] [+ OP [ARGS...]]...");
    int start = 1;
    for (int i = 1; i <= argc; i++) {
        if (i == argc || strcmp(argv[i], "+") == 0) {
            if (i == start) usage("empty operation");
            char *saved = argv[i < argc ? i : argc];
            argv[i] = NULL; // ops that exec want a NULL-terminated tail
            run(i - start, argv + start);
            if (i < argc) argv[i] = saved;
            start = i + 1;
        }
    }
    return 0;
}
