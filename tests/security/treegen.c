/* Builds hostile trees inside a container fast (one process, *at() calls only), for
 * tests/security/test_hostile_trees.py. Static, no dependencies.
 *
 *   treegen deep DIR N        DIR/d/d/.../d (N levels) with a file "bottom" at the end; paths far
 *                             beyond PATH_MAX, so every step is relative to the previous fd
 *   treegen many DIR N        DIR with N empty files f0000000 ...
 *   treegen links DIR N       DIR/orig plus hard links l0000001 ... until the inode has N links
 *                             (or the filesystem's limit: EMLINK stops it, the count is printed)
 *   treegen sock PATH 0       a bound AF_UNIX socket left at PATH (busybox cannot make one)
 *   treegen map FILE SECS     mmap FILE (read-only, private) and sleep SECS: a process that
 *                             maps a library whose path the container then races
 *   treegen churn FILE SECS   FILE grows to 4 MiB in 64 KiB writes, is truncated to 0, again,
 *                             for SECS seconds: a file that grows and shrinks under a reader
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int open_new_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    return fd;
}

static int deep(const char *dir, long n) {
    int fd = open_new_dir(dir);
    for (long i = 0; i < n; i++) {
        if (mkdirat(fd, "d", 0755) != 0)
            die("mkdirat");
        int nfd = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (nfd < 0)
            die("openat");
        close(fd);
        fd = nfd;
    }
    int f = openat(fd, "bottom", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f < 0 || write(f, "bottom\n", 7) != 7)
        die("bottom");
    close(f);
    close(fd);
    printf("%ld\n", n);
    return 0;
}

static int many(const char *dir, long n) {
    int fd = open_new_dir(dir);
    char name[32];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "f%07ld", i);
        int f = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (f < 0)
            die(name);
        close(f);
    }
    printf("%ld\n", n);
    return 0;
}

static int links(const char *dir, long n) {
    int fd = open_new_dir(dir);
    int f = openat(fd, "orig", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f < 0 || write(f, "linked\n", 7) != 7)
        die("orig");
    close(f);
    char name[32];
    long made = 1;
    for (long i = 1; i < n; i++) {
        snprintf(name, sizeof name, "l%07ld", i);
        if (linkat(fd, "orig", fd, name, 0) != 0) {
            if (errno == EMLINK)
                break;
            die(name);
        }
        made++;
    }
    printf("%ld\n", made);
    return 0;
}

static int churn(const char *path, long secs) {
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path);
    time_t end = time(NULL) + secs;
    while (time(NULL) < end) {
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) < 0)
            die("truncate");
        for (int i = 0; i < 64; i++)
            if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
                die("write");
    }
    return 0;
}

static int sock(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        die("path too long");
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die(path);
    return 0;
}

static int map(const char *path, long secs) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die(path);
    if (mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
        die("mmap");
    close(fd);
    sleep(secs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s deep|many|links DIR N | churn FILE SECONDS\n", argv[0]);
        return 2;
    }
    long n = atol(argv[3]);
    if (!strcmp(argv[1], "deep"))
        return deep(argv[2], n);
    if (!strcmp(argv[1], "many"))
        return many(argv[2], n);
    if (!strcmp(argv[1], "links"))
        return links(argv[2], n);
    if (!strcmp(argv[1], "map"))
        return map(argv[2], n);
    if (!strcmp(argv[1], "sock"))
        return sock(argv[2]);
    if (!strcmp(argv[1], "churn"))
        return churn(argv[2], n);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
