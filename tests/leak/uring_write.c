/* io_uring write without liburing: `uring_write PATH DATA` opens PATH for writing (no O_TRUNC)
 * with a plain openat, then writes DATA at offset 0 with one IORING_OP_WRITE submitted through
 * raw io_uring_setup / io_uring_enter. The write itself is never a write(2) syscall, so only
 * containment (the overlay), not syscall tracing, can keep it from production.
 *
 * Prints `uring_write ret=N` (N: the completion's result, bytes written or -errno) and exits 0
 * when all of DATA was written; exits 77 printing `io_uring unavailable: ...` when the kernel
 * refuses io_uring_setup (ENOSYS, EPERM: io_uring_disabled); 1 on any other failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: uring_write PATH DATA\n");
        return 2;
    }
    const char *path = argv[1], *data = argv[2];
    size_t len = strlen(data);

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (ring < 0) {
        int e = errno;
        printf("io_uring unavailable: io_uring_setup: %s\n", strerror(e));
        return (e == ENOSYS || e == EPERM) ? 77 : 1;
    }

    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (cq_len > sq_len) sq_len = cq_len;
        cq_len = sq_len;
    }
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) { perror("mmap sq ring"); return 1; }
    char *cq = sq;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
        cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED) { perror("mmap cq ring"); return 1; }
    }
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) { perror("mmap sqes"); return 1; }

    int fd = open(path, O_WRONLY);
    if (fd < 0) { printf("open %s: %s\n", path, strerror(errno)); return 1; }

    uint32_t *sq_tail = (uint32_t *)(sq + p.sq_off.tail);
    uint32_t *sq_mask = (uint32_t *)(sq + p.sq_off.ring_mask);
    uint32_t *sq_array = (uint32_t *)(sq + p.sq_off.array);
    uint32_t tail = __atomic_load_n(sq_tail, __ATOMIC_ACQUIRE);
    uint32_t idx = tail & *sq_mask;
    struct io_uring_sqe *sqe = &sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_WRITE;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)data;
    sqe->len = (uint32_t)len;
    sqe->off = 0;
    sqe->user_data = 42;
    sq_array[idx] = idx;
    __atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);

    int n = (int)syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    if (n < 0) { printf("io_uring_enter: %s\n", strerror(errno)); return 1; }

    uint32_t *cq_head = (uint32_t *)(cq + p.cq_off.head);
    uint32_t *cq_tail = (uint32_t *)(cq + p.cq_off.tail);
    uint32_t *cq_mask = (uint32_t *)(cq + p.cq_off.ring_mask);
    struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    uint32_t head = __atomic_load_n(cq_head, __ATOMIC_ACQUIRE);
    if (head == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) { printf("no completion\n"); return 1; }
    struct io_uring_cqe *cqe = &cqes[head & *cq_mask];
    int res = cqe->res;
    __atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
    printf("uring_write ret=%d\n", res);
    fflush(stdout);
    close(fd);
    close(ring);
    return res == (int)len ? 0 : 1;
}
