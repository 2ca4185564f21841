/* string: glibc's string functions (strlen, memcpy, memcmp, strchr, strcmp) over 256
 * buffers of 1 to 2,000 bytes. glibc picks each routine's implementation from the CPU's
 * features (SSE2, AVX2, EVEX), so this measures the code a program really runs there. */
#include <stdlib.h>
#include <string.h>

#include "jb.h"

#define BUFS 256
#define MAXLEN 2000

static char *bufs[BUFS];
static char scratch[MAXLEN + 64];

int w_string(int argc, char **argv) {
    long reps = jb_count(argc, argv, 1);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < BUFS; i++) {
        size_t len = 1 + jb_rand(&rng) % MAXLEN;
        bufs[i] = malloc(len + 1);
        if (!bufs[i]) {
            return 1;
        }
        /* Few distinct letters, so memcmp and strcmp find long equal prefixes. */
        for (size_t k = 0; k < len; k++) {
            bufs[i][k] = (char)('a' + (k % 7 == 6 ? jb_rand(&rng) % 26 : k % 3));
        }
        bufs[i][len] = '\0';
    }
    uint64_t acc = 0;
    double t0 = jb_now_ms();
    for (long r = 0; r < reps; r++) {
        for (int i = 0; i < BUFS; i++) {
            const char *s = bufs[i];
            const char *t = bufs[(i * 7 + r) % BUFS];
            size_t n = strlen(s);
            size_t m = strlen(t);
            size_t off = (size_t)(r + i) % 16;
            memcpy(scratch + off, s, n + 1);
            int c = memcmp(scratch + off, t, n < m ? n : m);
            acc += n + (c < 0 ? 1 : c > 0 ? 2 : 3);
            const char *p = strchr(scratch + off, 'a' + (int)((r + i) % 26));
            acc += p ? (uint64_t)(p - (scratch + off)) : 7;
            int d = strcmp(scratch + off, t);
            acc = acc * 3 + (d < 0 ? 1 : d > 0 ? 2 : 0);
        }
    }
    double ms = jb_now_ms() - t0;
    jb_report(argv[0], ms, jb_fnv64(JB_FNV_INIT, acc));
    return 0;
}
