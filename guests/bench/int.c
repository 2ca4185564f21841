/* int: branchy integer code on arrays, with fixed-width types so the 32-bit build computes
 * the same: a sieve of Eratosthenes, a bytecode interpreter (a switch in a loop) running
 * Collatz sequences, and an insertion sort of small arrays. N scales all three. */
#include <stdlib.h>
#include <string.h>

#include "jb.h"

static uint32_t sieve(uint32_t limit, uint8_t *composite) {
    memset(composite, 0, limit);
    uint32_t count = 0, last = 0;
    for (uint32_t i = 2; i < limit; i++) {
        if (composite[i]) {
            continue;
        }
        count++;
        last = i;
        for (uint32_t j = i * 2; j < limit; j += i) {
            composite[j] = 1;
        }
    }
    return count * 2654435761u + last;
}

enum op { IS_ONE, IS_ODD, JUMP_IF, JUMP, HALVE, TRIPLE, INC_STEPS, HALT };

/* while (x != 1) { steps++; x = x odd ? 3x + 1 : x / 2; } */
static const uint8_t program[] = {
    IS_ONE, JUMP_IF, 13, INC_STEPS, IS_ODD, JUMP_IF, 10, HALVE, JUMP, 0, TRIPLE, JUMP, 0, HALT,
};

static uint32_t interpret(uint64_t x) {
    uint32_t steps = 0, pc = 0;
    int flag = 0;
    for (;;) {
        switch (program[pc++]) {
        case IS_ONE:
            flag = x == 1;
            break;
        case IS_ODD:
            flag = (int)(x & 1);
            break;
        case JUMP_IF:
            pc = flag ? program[pc] : pc + 1;
            break;
        case JUMP:
            pc = program[pc];
            break;
        case HALVE:
            x >>= 1;
            break;
        case TRIPLE:
            x = 3 * x + 1;
            break;
        case INC_STEPS:
            steps++;
            break;
        case HALT:
            return steps;
        default:
            abort();
        }
    }
}

static void insertion_sort(uint32_t *v, int n) {
    for (int i = 1; i < n; i++) {
        uint32_t key = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > key) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = key;
    }
}

int w_int(int argc, char **argv) {
    long n = jb_count(argc, argv, 1);
    uint32_t limit = (uint32_t)n * 64;
    uint8_t *composite = malloc(limit);
    if (!composite) {
        return 1;
    }
    uint64_t rng = 12345;
    double t0 = jb_now_ms();
    uint64_t h = JB_FNV_INIT;
    h = jb_fnv64(h, sieve(limit, composite));
    uint32_t steps = 0;
    for (uint32_t x = 1; x <= (uint32_t)n; x++) {
        steps += interpret(x);
    }
    h = jb_fnv64(h, steps);
    uint32_t v[32];
    for (long k = 0; k < n / 8; k++) {
        for (int i = 0; i < 32; i++) {
            v[i] = (uint32_t)(jb_rand(&rng) >> 40);
        }
        insertion_sort(v, 32);
        h = jb_fnv64(h, v[0] ^ v[15] ^ v[31]);
    }
    double ms = jb_now_ms() - t0;
    jb_report(argv[0], ms, h);
    free(composite);
    return 0;
}
