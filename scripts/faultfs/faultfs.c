// faultfs: an LD_PRELOAD shim that makes writes or syncs of chosen files fail, for the failing
// disk tests (Tests/EtcdAPITests/FailingDiskTests.swift) and by hand:
//
//   cc -shared -fPIC -O2 -o faultfs.so scripts/faultfs/faultfs.c -ldl
//   export FAULTFS_PATH=/member/wal/ FAULTFS_OP=sync FAULTFS_ERRNO=5 FAULTFS_TRIGGER=/tmp/fail
//   FAULTFS_MODE=once LD_PRELOAD=$PWD/faultfs.so swift-etcd ...
//   touch /tmp/fail    # the next fdatasync of a log segment fails with EIO
//
// FAULTFS_PATH   a substring of the file's path (read from /proc/self/fd); other files pass.
// FAULTFS_OP     "sync" (fsync, fdatasync, sync_file_range) or "write" (write, pwrite, writev,
//                pwritev and their 64-bit names).
// FAULTFS_ERRNO  the errno of a failure (EIO is 5, ENOSPC 28).
// FAULTFS_TRIGGER a file: nothing fails while it does not exist.
// FAULTFS_MODE   "once": the first matching call after the trigger appears fails and removes
//                the trigger (a disk that recovers); "always": every matching call fails while
//                the trigger exists (a disk that is gone).
// A failing call does nothing (no byte written, nothing synced) and returns -1 with the errno;
// each failure is reported on stderr as "faultfs: <call> <path> failed with errno N".
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum operation { OP_SYNC, OP_WRITE };

static int should_fail(enum operation op, int fd, const char *call) {
    const char *wanted = getenv("FAULTFS_OP");
    const char *part = getenv("FAULTFS_PATH");
    const char *trigger = getenv("FAULTFS_TRIGGER");
    if (!wanted || !part || !trigger) return 0;
    if (strcmp(wanted, op == OP_SYNC ? "sync" : "write") != 0) return 0;
    struct stat status;
    if (stat(trigger, &status) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = readlink(link, path, sizeof path - 1);
    if (length <= 0) return 0;
    path[length] = 0;
    if (!strstr(path, part)) return 0;
    const char *mode = getenv("FAULTFS_MODE");
    if (!mode || strcmp(mode, "always") != 0) {
        // Only the caller that removes the trigger fails: one failure, even across threads.
        if (unlink(trigger) != 0) return 0;
    }
    const char *number = getenv("FAULTFS_ERRNO");
    int code = number ? atoi(number) : EIO;
    char message[4200];
    int size = snprintf(message, sizeof message, "faultfs: %s %s failed with errno %d\n", call, path, code);
    if (size > 0) {
        ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
        (void)!real_write(2, message, (size_t)size);
    }
    errno = code;
    return 1;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync);
    return should_fail(OP_SYNC, fd, "fsync") ? -1 : real(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    return should_fail(OP_SYNC, fd, "fdatasync") ? -1 : real(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t count, unsigned int flags) {
    REAL(sync_file_range);
    return should_fail(OP_SYNC, fd, "sync_file_range") ? -1 : real(fd, offset, count, flags);
}

ssize_t write(int fd, const void *buffer, size_t count) {
    REAL(write);
    return should_fail(OP_WRITE, fd, "write") ? -1 : real(fd, buffer, count);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset) {
    REAL(pwrite);
    return should_fail(OP_WRITE, fd, "pwrite") ? -1 : real(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off64_t offset) {
    REAL(pwrite64);
    return should_fail(OP_WRITE, fd, "pwrite64") ? -1 : real(fd, buffer, count, offset);
}

ssize_t writev(int fd, const struct iovec *vectors, int count) {
    REAL(writev);
    return should_fail(OP_WRITE, fd, "writev") ? -1 : real(fd, vectors, count);
}

ssize_t pwritev(int fd, const struct iovec *vectors, int count, off_t offset) {
    REAL(pwritev);
    return should_fail(OP_WRITE, fd, "pwritev") ? -1 : real(fd, vectors, count, offset);
}

ssize_t pwritev64(int fd, const struct iovec *vectors, int count, off64_t offset) {
    REAL(pwritev64);
    return should_fail(OP_WRITE, fd, "pwritev64") ? -1 : real(fd, vectors, count, offset);
}
