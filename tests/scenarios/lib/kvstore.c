/* A live native key-value store: holds its log (argv[2]) open for appending and appends a
 * record `kv <n>` every 20 ms. Creates READY (argv[1]) after the first record. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: kvstore READY LOG\n");
        return 2;
    }
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) {
        perror(argv[2]);
        return 1;
    }
    for (unsigned long n = 0;; n++) {
        char line[64];
        int len = snprintf(line, sizeof line, "kv %lu\n", n);
        if (write(fd, line, (size_t)len) != len) return 1;
        if (n == 0) close(open(argv[1], O_WRONLY | O_CREAT, 0644));
        usleep(20000);
    }
}
