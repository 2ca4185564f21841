/* syscall: N system calls, alternately getppid (the cheapest call that enters the kernel:
 * glibc does not cache it) and a 1-byte read of /dev/zero. */
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jb.h"

int w_syscall(int argc, char **argv) {
    long n = jb_count(argc, argv, 1);
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        return 1;
    }
    long ppid = syscall(SYS_getppid);
    uint64_t same = 0, bytes = 0, zeros = 0;
    double t0 = jb_now_ms();
    for (long i = 0; i < n; i++) {
        if (i & 1) {
            unsigned char b = 1;
            if (read(fd, &b, 1) == 1) {
                bytes++;
                zeros += b == 0;
            }
        } else {
            same += syscall(SYS_getppid) == ppid;
        }
    }
    double ms = jb_now_ms() - t0;
    close(fd);
    uint64_t h = jb_fnv64(JB_FNV_INIT, same);
    h = jb_fnv64(h, bytes);
    h = jb_fnv64(h, zeros);
    jb_report(argv[0], ms, h);
    return 0;
}
