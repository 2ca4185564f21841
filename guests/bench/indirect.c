/* indirect: indirect calls. glibc's qsort calling a comparator (on 4,096 records, N/64
 * times), and a loop dispatching N calls through a table of eight small functions chosen
 * by a pseudo-random sequence. */
#include <stdlib.h>
#include <string.h>

#include "jb.h"

#define RECORDS 4096

struct record {
    uint32_t key;
    uint32_t tie;
};

static int compare(const void *a, const void *b) {
    const struct record *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    return (x->tie > y->tie) - (x->tie < y->tie);
}

typedef uint64_t (*op_fn)(uint64_t, uint64_t);

__attribute__((noinline)) static uint64_t op_add(uint64_t a, uint64_t b) { return a + b; }
__attribute__((noinline)) static uint64_t op_sub(uint64_t a, uint64_t b) { return a - b; }
__attribute__((noinline)) static uint64_t op_xor(uint64_t a, uint64_t b) { return a ^ (b << 1); }
__attribute__((noinline)) static uint64_t op_mul(uint64_t a, uint64_t b) { return a * (b | 1); }
__attribute__((noinline)) static uint64_t op_rot(uint64_t a, uint64_t b) {
    unsigned r = (unsigned)(b & 63);
    return r ? (a << r) | (a >> (64 - r)) : a;
}
__attribute__((noinline)) static uint64_t op_min(uint64_t a, uint64_t b) { return a < b ? a : b + 1; }
__attribute__((noinline)) static uint64_t op_avg(uint64_t a, uint64_t b) { return (a >> 1) + (b >> 1); }
__attribute__((noinline)) static uint64_t op_neg(uint64_t a, uint64_t b) { return ~a + (b & 255); }

/* volatile: the compiler must not turn the calls into a switch. */
static op_fn volatile table[8] = {op_add, op_sub, op_xor, op_mul, op_rot, op_min, op_avg, op_neg};

int w_indirect(int argc, char **argv) {
    long n = jb_count(argc, argv, 1);
    struct record *orig = malloc(sizeof(struct record) * RECORDS);
    struct record *work = malloc(sizeof(struct record) * RECORDS);
    if (!orig || !work) {
        return 1;
    }
    uint64_t rng = 0xfeedface;
    for (int i = 0; i < RECORDS; i++) {
        orig[i].key = (uint32_t)(jb_rand(&rng) >> 52); /* many equal keys */
        orig[i].tie = (uint32_t)i;
    }
    uint64_t h = JB_FNV_INIT;
    double t0 = jb_now_ms();
    for (long s = 0; s < n / 64 + 1; s++) {
        memcpy(work, orig, sizeof(struct record) * RECORDS);
        work[s % RECORDS].key ^= (uint32_t)s;
        qsort(work, RECORDS, sizeof(struct record), compare);
        h = jb_fnv64(h, work[0].tie + work[RECORDS / 2].tie * 4096ULL + work[RECORDS - 1].tie);
    }
    uint64_t acc = 1;
    uint64_t pick = 7;
    for (long i = 0; i < n * 64; i++) {
        pick = pick * 6364136223846793005ULL + 1442695040888963407ULL;
        acc = table[pick >> 61](acc, pick);
    }
    double ms = jb_now_ms() - t0;
    h = jb_fnv64(h, acc);
    jb_report(argv[0], ms, h);
    free(orig);
    free(work);
    return 0;
}
