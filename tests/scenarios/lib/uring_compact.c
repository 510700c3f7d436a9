/* A segment compactor built on io_uring, as storage engines' maintenance tools are: every
 * file operation goes through the ring (IORING_OP_OPENAT, IORING_OP_WRITE,
 * IORING_OP_FALLOCATE), so none of them is a syscall a tracer sees.
 *
 *   uring_compact SRC DST   keep the records of SRC (lines) that are not tombstones
 *                           (`DEL ...`), write them to DST from offset 0 and punch out the
 *                           rest of DST (DST may be SRC: compaction in place).
 * Raw io_uring_setup/io_uring_enter (no liburing needed to build it). Exit 77: no io_uring. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ring_fd;
static struct io_uring_params p;
static char *sq, *cq;
static struct io_uring_sqe *sqes;

static void ring_open(void) {
    ring_fd = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (ring_fd < 0) {
        printf("io_uring unavailable: %s\n", strerror(errno));
        exit(errno == ENOSYS || errno == EPERM ? 77 : 1);
    }
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (cq_len > sq_len) sq_len = cq_len;
        cq_len = sq_len;
    }
    sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
    cq = (p.features & IORING_FEAT_SINGLE_MMAP) ? sq : mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_CQ_RING);
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
}

/* Submit one operation, wait for it: its result. */
static int ring_do(struct io_uring_sqe op) {
    uint32_t *tail = (uint32_t *)(sq + p.sq_off.tail);
    uint32_t t = __atomic_load_n(tail, __ATOMIC_ACQUIRE);
    uint32_t idx = t & *(uint32_t *)(sq + p.sq_off.ring_mask);
    sqes[idx] = op;
    ((uint32_t *)(sq + p.sq_off.array))[idx] = idx;
    __atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, ring_fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
        perror("io_uring_enter");
        exit(1);
    }
    uint32_t *head = (uint32_t *)(cq + p.cq_off.head);
    uint32_t h = __atomic_load_n(head, __ATOMIC_ACQUIRE);
    int res = ((struct io_uring_cqe *)(cq + p.cq_off.cqes))[h & *(uint32_t *)(cq + p.cq_off.ring_mask)].res;
    __atomic_store_n(head, h + 1, __ATOMIC_RELEASE);
    return res;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: uring_compact SRC DST\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    static char out[1 << 20];
    size_t n = 0, kept = 0, dropped = 0;
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        if (!strncmp(line, "DEL ", 4)) {
            dropped++;
            continue;
        }
        size_t l = strlen(line);
        if (n + l > sizeof out) break;
        memcpy(out + n, line, l);
        n += l;
        kept++;
    }
    long old = ftell(in);
    fclose(in);
    ring_open();
    struct io_uring_sqe op;
    memset(&op, 0, sizeof op);
    op.opcode = IORING_OP_OPENAT;
    op.fd = AT_FDCWD;
    op.addr = (uint64_t)(uintptr_t)argv[2];
    op.open_flags = O_WRONLY | O_CREAT;
    op.len = 0644;
    int fd = ring_do(op);
    if (fd < 0) {
        printf("open %s: %s\n", argv[2], strerror(-fd));
        return 1;
    }
    memset(&op, 0, sizeof op);
    op.opcode = IORING_OP_WRITE;
    op.fd = fd;
    op.addr = (uint64_t)(uintptr_t)out;
    op.len = (uint32_t)n;
    int w = ring_do(op);
    if (w != (int)n) {
        printf("write: %d\n", w);
        return 1;
    }
    if (old > (long)n) {
        /* The tail the compacted records no longer use: punched out (its blocks freed). */
        memset(&op, 0, sizeof op);
        op.opcode = IORING_OP_FALLOCATE;
        op.fd = fd;
        op.off = n;
        op.addr = (uint64_t)(old - (long)n);
        op.len = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        int r = ring_do(op);
        if (r < 0) printf("fallocate: %s\n", strerror(-r));
    }
    printf("compacted %s into %s: %zu records kept, %zu tombstones dropped\n", argv[1], argv[2], kept, dropped);
    return 0;
}
