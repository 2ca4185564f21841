/* fp-packed: element-wise loops over arrays of doubles and floats that gcc -O3 vectorizes
 * into packed SSE2 (mulpd/addpd, mulps/addps, with unaligned loads and stores). The values
 * stay in a fixed range (no overflow, no denormals), so every machine computes the same bits. */
#include "jb.h"

#define N 2048

static double a[N], b[N], c[N];
static float f[N], g[N];

static void step(void) {
    for (int i = 0; i < N; i++) {
        a[i] = a[i] * 0.75 + b[i] * c[i];
    }
    for (int i = 0; i < N; i++) {
        b[i] = b[i] * 0.5 + a[i] * 0.125 + 0.25;
    }
    for (int i = 0; i < N; i++) {
        c[i] = (c[i] + a[i]) * 0.5 - b[i] * 0.0625;
    }
    for (int i = 0; i < N; i++) {
        f[i] = f[i] * 0.5f + g[i] * 0.25f + 1.0f;
        g[i] = g[i] * 0.75f - f[i] * 0.125f + 0.5f;
    }
}

int w_fp_packed(int argc, char **argv) {
    long reps = jb_count(argc, argv, 1);
    for (int i = 0; i < N; i++) {
        a[i] = (double)(i % 17) / 17.0;
        b[i] = (double)(i % 13) / 13.0;
        c[i] = (double)(i % 11) / 11.0 - 0.5;
        f[i] = (float)(i % 7) / 7.0f;
        g[i] = (float)(i % 5) / 5.0f;
    }
    double t0 = jb_now_ms();
    for (long r = 0; r < reps; r++) {
        step();
    }
    double ms = jb_now_ms() - t0;
    uint64_t h = jb_fnv(JB_FNV_INIT, a, sizeof a);
    h = jb_fnv(h, b, sizeof b);
    h = jb_fnv(h, c, sizeof c);
    h = jb_fnv(h, f, sizeof f);
    h = jb_fnv(h, g, sizeof g);
    jb_report(argv[0], ms, h);
    return 0;
}
