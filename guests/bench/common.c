/* janus-bench workloads: the clock, the hash, the report line and argument parsing. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "jb.h"

double jb_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

uint64_t jb_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t jb_fnv64(uint64_t h, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
    return jb_fnv(h, b, 8);
}

void jb_report(const char *name, double ms, uint64_t sum) {
#ifdef __i386__
    const char *suffix = "-i386";
#else
    const char *suffix = "";
#endif
    printf("janus-bench: %s%s ms=%.3f sum=%016llx\n", name, suffix, ms, (unsigned long long)sum);
    fflush(stdout);
}

long jb_count(int argc, char **argv, int i) {
    char *end;
    long v = i < argc ? strtol(argv[i], &end, 10) : 0;
    if (i >= argc || *end != '\0' || v <= 0) {
        fprintf(stderr, "jb %s: argument %d must be a positive count\n", argv[0], i);
        exit(2);
    }
    return v;
}

uint64_t jb_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}
