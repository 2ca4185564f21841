/* time: `jb time NAME [-f FILE] -- PROG ARGS...` runs PROG (an absolute path), timing it
 * from fork to its exit, and reports it as workload NAME. The sum hashes what PROG wrote to
 * its standard output and then, after the timed part, FILE's contents. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jb.h"

int w_time(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: jb time NAME [-f FILE] -- PROG ARGS...\n");
        return 2;
    }
    const char *name = argv[1];
    const char *file = NULL;
    int i = 2;
    if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
        file = argv[i + 1];
        i += 2;
    }
    if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
        fprintf(stderr, "usage: jb time NAME [-f FILE] -- PROG ARGS...\n");
        return 2;
    }
    char **cmd = argv + i + 1;
    int fds[2];
    if (pipe(fds) != 0) {
        return 1;
    }
    uint64_t h = JB_FNV_INIT;
    double t0 = jb_now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        close(fds[1]);
        execv(cmd[0], cmd);
        _exit(127);
    }
    close(fds[1]);
    unsigned char buf[4096];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) > 0) {
        h = jb_fnv(h, buf, (size_t)got);
    }
    close(fds[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        double ms = jb_now_ms() - t0;
        fprintf(stderr, "jb time %s: %s failed (status %d after %.3f ms)\n", name, cmd[0], status, ms);
        return 1;
    }
    double ms = jb_now_ms() - t0;
    if (file) {
        int fd = open(file, O_RDONLY);
        if (fd < 0) {
            fprintf(stderr, "jb time %s: cannot open %s\n", name, file);
            return 1;
        }
        while ((got = read(fd, buf, sizeof buf)) > 0) {
            h = jb_fnv(h, buf, (size_t)got);
        }
        close(fd);
    }
    jb_report(name, ms, h);
    return 0;
}
