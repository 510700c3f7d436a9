/* Changes that need no write(2), for tests/channels.rs: `channels OP ARGS`, one operation per
 * run, printing `OP ret=N [errno=E]` and exiting 0 when it did what it says (77: the kernel
 * has no io_uring here), 1 otherwise.
 *
 *   hold PATH                  open PATH read-write, print `up`, sleep until killed (a live holder)
 *   mmap_write PATH DATA       store DATA at offset 0 through a shared writable mapping, msync
 *   mprotect_write PATH DATA   map it shared read-only, mprotect it writable, store, msync
 *   fallocate PATH MODE OFF LEN  MODE: alloc, keep, punch, zero, collapse, insert
 *   uring_write PATH DATA      IORING_OP_WRITE at offset 0 (the file opened by openat(2))
 *   uring_unlink PATH          IORING_OP_UNLINKAT
 *   uring_send ADDR PORT DATA  TCP connect(2), then IORING_OP_SEND of DATA
 *   sendmmsg ADDR PORT DATA    TCP connect(2), then DATA as two messages of one sendmmsg
 *   ficlone DST SRC            ioctl(FICLONE)
 *   utimens PATH               utimensat(AT_FDCWD, PATH, NULL, 0)
 *   copy_range SRC DST         copy_file_range of SRC into DST (opened O_WRONLY, no O_TRUNC)
 *
 * io_uring through raw io_uring_setup/io_uring_enter: liburing is not needed to build it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(const char *op, long ret) {
    if (ret < 0) {
        printf("%s ret=%ld errno=%d\n", op, ret, errno);
        return 1;
    }
    printf("%s ret=%ld\n", op, ret);
    return 0;
}

static int open_rw(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        printf("open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return fd;
}

static int mmap_write(const char *path, const char *data, int via_mprotect) {
    int fd = open_rw(path);
    size_t len = strlen(data);
    int prot = via_mprotect ? PROT_READ : PROT_READ | PROT_WRITE;
    char *m = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return report("mmap", -1);
    if (via_mprotect && mprotect(m, len, PROT_READ | PROT_WRITE) != 0) return report("mprotect", -1);
    memcpy(m, data, len);
    int r = msync(m, len, MS_SYNC);
    munmap(m, len);
    close(fd);
    return report(via_mprotect ? "mprotect_write" : "mmap_write", r);
}

static int do_fallocate(const char *path, const char *mode, long off, long len) {
    int m = 0;
    if (!strcmp(mode, "keep")) m = FALLOC_FL_KEEP_SIZE;
    else if (!strcmp(mode, "punch")) m = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    else if (!strcmp(mode, "zero")) m = FALLOC_FL_ZERO_RANGE;
    else if (!strcmp(mode, "collapse")) m = FALLOC_FL_COLLAPSE_RANGE;
    else if (!strcmp(mode, "insert")) m = FALLOC_FL_INSERT_RANGE;
    int fd = open_rw(path);
    int r = fallocate(fd, m, off, len);
    return report("fallocate", r);
}

/* One io_uring, one submission, one completion: the completion's result. */
struct ring {
    int fd;
    struct io_uring_params p;
    char *sq, *cq;
    struct io_uring_sqe *sqes;
};

static int ring_open(struct ring *r) {
    memset(r, 0, sizeof *r);
    r->fd = (int)syscall(__NR_io_uring_setup, 4, &r->p);
    if (r->fd < 0) {
        int e = errno;
        printf("io_uring unavailable: io_uring_setup: %s\n", strerror(e));
        exit((e == ENOSYS || e == EPERM) ? 77 : 1);
    }
    size_t sq_len = r->p.sq_off.array + r->p.sq_entries * sizeof(uint32_t);
    size_t cq_len = r->p.cq_off.cqes + r->p.cq_entries * sizeof(struct io_uring_cqe);
    if (r->p.features & IORING_FEAT_SINGLE_MMAP) {
        if (cq_len > sq_len) sq_len = cq_len;
        cq_len = sq_len;
    }
    r->sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    r->cq = r->sq;
    if (!(r->p.features & IORING_FEAT_SINGLE_MMAP))
        r->cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, r->p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                   IORING_OFF_SQES);
    if (r->sq == MAP_FAILED || r->cq == MAP_FAILED || r->sqes == MAP_FAILED) {
        perror("mmap ring");
        exit(1);
    }
    return 0;
}

static struct io_uring_sqe *ring_sqe(struct ring *r) {
    uint32_t tail = __atomic_load_n((uint32_t *)(r->sq + r->p.sq_off.tail), __ATOMIC_ACQUIRE);
    uint32_t idx = tail & *(uint32_t *)(r->sq + r->p.sq_off.ring_mask);
    struct io_uring_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    ((uint32_t *)(r->sq + r->p.sq_off.array))[idx] = idx;
    return sqe;
}

static int ring_submit(struct ring *r) {
    uint32_t *tail = (uint32_t *)(r->sq + r->p.sq_off.tail);
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
        perror("io_uring_enter");
        exit(1);
    }
    uint32_t head = __atomic_load_n((uint32_t *)(r->cq + r->p.cq_off.head), __ATOMIC_ACQUIRE);
    uint32_t mask = *(uint32_t *)(r->cq + r->p.cq_off.ring_mask);
    struct io_uring_cqe *cqe = &((struct io_uring_cqe *)(r->cq + r->p.cq_off.cqes))[head & mask];
    int res = cqe->res;
    __atomic_store_n((uint32_t *)(r->cq + r->p.cq_off.head), head + 1, __ATOMIC_RELEASE);
    return res;
}

static int uring_result(const char *op, int res) {
    if (res < 0) {
        printf("%s ret=%d errno=%d\n", op, res, -res);
        return 1;
    }
    printf("%s ret=%d\n", op, res);
    return 0;
}

static int tcp_connect(const char *addr, const char *port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect: %s\n", strerror(errno));
        exit(1);
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: channels OP ARGS (see tests/helpers/channels.c)\n");
        return 2;
    }
    const char *op = argv[1];
    if (!strcmp(op, "hold")) {
        int fd = open_rw(argv[2]);
        printf("up fd=%d\n", fd);
        fflush(stdout);
        for (int i = 0; i < 600; i++) sleep(1); /* ends by itself within 10 minutes */
        return 0;
    }
    if (!strcmp(op, "mmap_write") && argc == 4) return mmap_write(argv[2], argv[3], 0);
    if (!strcmp(op, "mprotect_write") && argc == 4) return mmap_write(argv[2], argv[3], 1);
    if (!strcmp(op, "fallocate") && argc == 6) return do_fallocate(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(op, "uring_write") && argc == 4) {
        struct ring r;
        ring_open(&r);
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0) return report("open", -1);
        struct io_uring_sqe *sqe = ring_sqe(&r);
        sqe->opcode = IORING_OP_WRITE;
        sqe->fd = fd;
        sqe->addr = (uint64_t)(uintptr_t)argv[3];
        sqe->len = (uint32_t)strlen(argv[3]);
        return uring_result(op, ring_submit(&r));
    }
    if (!strcmp(op, "uring_unlink") && argc == 3) {
        struct ring r;
        ring_open(&r);
        struct io_uring_sqe *sqe = ring_sqe(&r);
        sqe->opcode = IORING_OP_UNLINKAT;
        sqe->fd = AT_FDCWD;
        sqe->addr = (uint64_t)(uintptr_t)argv[2];
        return uring_result(op, ring_submit(&r));
    }
    if (!strcmp(op, "uring_send") && argc == 5) {
        struct ring r;
        ring_open(&r);
        int s = tcp_connect(argv[2], argv[3]);
        struct io_uring_sqe *sqe = ring_sqe(&r);
        sqe->opcode = IORING_OP_SEND;
        sqe->fd = s;
        sqe->addr = (uint64_t)(uintptr_t)argv[4];
        sqe->len = (uint32_t)strlen(argv[4]);
        int res = ring_submit(&r);
        shutdown(s, SHUT_WR);
        char buf[64];
        while (read(s, buf, sizeof buf) > 0) {
        }
        return uring_result(op, res);
    }
    if (!strcmp(op, "sendmmsg") && argc == 5) {
        int s = tcp_connect(argv[2], argv[3]);
        size_t len = strlen(argv[4]), half = len / 2;
        struct iovec iov[2] = {{argv[4], half}, {argv[4] + half, len - half}};
        struct mmsghdr msgs[2];
        memset(msgs, 0, sizeof msgs);
        msgs[0].msg_hdr.msg_iov = &iov[0];
        msgs[0].msg_hdr.msg_iovlen = 1;
        msgs[1].msg_hdr.msg_iov = &iov[1];
        msgs[1].msg_hdr.msg_iovlen = 1;
        int n = sendmmsg(s, msgs, 2, 0);
        printf("sendmmsg bytes=%u\n", n == 2 ? msgs[0].msg_len + msgs[1].msg_len : 0);
        shutdown(s, SHUT_WR);
        char buf[64];
        while (read(s, buf, sizeof buf) > 0) {
        }
        return report(op, n);
    }
    if (!strcmp(op, "ficlone") && argc == 4) {
        int dst = open_rw(argv[2]);
        int src = open(argv[3], O_RDONLY);
        return report(op, ioctl(dst, FICLONE, src));
    }
    if (!strcmp(op, "utimens")) return report(op, utimensat(AT_FDCWD, argv[2], NULL, 0));
    if (!strcmp(op, "copy_range") && argc == 4) {
        int src = open(argv[2], O_RDONLY);
        int dst = open(argv[3], O_WRONLY);
        struct stat st;
        fstat(src, &st);
        return report(op, copy_file_range(src, NULL, dst, NULL, (size_t)st.st_size, 0));
    }
    fprintf(stderr, "channels: unknown operation or arguments: %s\n", op);
    return 2;
}
