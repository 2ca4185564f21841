/* janus-bench workloads: one static multi-call binary, `jb WORKLOAD ARGS...`.
 *
 *   jb fp-scalar STEPS         n-body simulation in scalar doubles (SSE2)
 *   jb fp-packed REPS          element-wise loops gcc -O3 turns into packed SSE2
 *   jb string REPS             glibc strlen/memcpy/memcmp/strchr/strcmp over many buffers
 *   jb int N                   branchy integer code: a sieve, a switch interpreter, sorting
 *   jb indirect N              qsort with a comparator and a function-pointer table
 *   jb malloc N                malloc/free and linked-list pointer chasing
 *   jb syscall N               N system calls (getppid and 1-byte reads of /dev/zero)
 *   jb fork-exec N PROG ARGV0...
 *                              N times fork, exec PROG (as ARGV0...), wait
 *   jb time NAME [-f FILE] -- PROG ARGS...
 *                              runs PROG, times it, and sums its output (and FILE after it)
 *   jb gen FILE MIB            writes MIB MiB of pseudo-random, compressible text (untimed)
 */
#include <stdio.h>
#include <string.h>

#include "jb.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
} workloads[] = {
    {"fp-scalar", w_fp_scalar},
    {"fp-packed", w_fp_packed},
    {"string", w_string},
    {"int", w_int},
    {"indirect", w_indirect},
    {"malloc", w_malloc},
    {"syscall", w_syscall},
    {"fork-exec", w_fork_exec},
    {"time", w_time},
    {"gen", w_gen},
};

int main(int argc, char **argv) {
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
            if (strcmp(argv[1], workloads[i].name) == 0) {
                return workloads[i].run(argc - 1, argv + 1);
            }
        }
    }
    fprintf(stderr, "usage: jb WORKLOAD ARGS... (workloads:");
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
        fprintf(stderr, " %s", workloads[i].name);
    }
    fprintf(stderr, ")\n");
    return 2;
}
