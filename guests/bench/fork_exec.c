/* fork-exec: N times fork, exec a program, wait for it; `jb fork-exec N PROG ARGV0 [ARGS...]`
 * (the suite runs busybox as "true"). The sum counts the children that exited with 0. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jb.h"

int w_fork_exec(int argc, char **argv) {
    long n = jb_count(argc, argv, 1);
    if (argc < 4) {
        fprintf(stderr, "usage: jb fork-exec N PROG ARGV0 [ARGS...]\n");
        return 2;
    }
    uint64_t ok = 0, failed = 0;
    double t0 = jb_now_ms();
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execv(argv[2], argv + 3);
            _exit(127);
        }
        int status;
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0) {
            ok++;
        } else {
            failed++;
        }
    }
    double ms = jb_now_ms() - t0;
    if (failed) {
        fprintf(stderr, "jb fork-exec: %llu of %ld children failed\n", (unsigned long long)failed, n);
        return 1;
    }
    jb_report(argv[0], ms, jb_fnv64(JB_FNV_INIT, ok));
    return 0;
}
