/* gen: `jb gen FILE MIB` writes MIB MiB of pseudo-random text that compresses like prose
 * (words from a small vocabulary with a skewed choice, numbers, line breaks). Untimed: it
 * prepares the input of the gzip workload. */
#include <stdio.h>
#include <string.h>

#include "jb.h"

static const char *const words[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with",
    "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but",
    "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
    "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no",
    "hypervisor", "guest", "translation", "interrupt", "register", "memory", "page",
    "instruction", "exception", "device", "kernel", "benchmark", "janus", "emulator",
};

int w_gen(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: jb gen FILE MIB\n");
        return 2;
    }
    long mib = jb_count(argc, argv, 2);
    FILE *out = fopen(argv[1], "wb");
    if (!out) {
        fprintf(stderr, "jb gen: cannot create %s\n", argv[1]);
        return 1;
    }
    const size_t nwords = sizeof words / sizeof words[0];
    uint64_t rng = 0xabcdef12345ULL;
    long total = mib << 20, written = 0;
    char line[256];
    while (written < total) {
        size_t len = 0;
        while (len < 70) {
            uint64_t r = jb_rand(&rng);
            /* Skewed: the low indices (the common words) come up far more often. */
            size_t w = (size_t)((r % nwords) * ((r >> 8) % nwords) / nwords);
            const char *word = words[w];
            size_t wl = strlen(word);
            memcpy(line + len, word, wl);
            len += wl;
            if ((r >> 20) % 16 == 0) {
                len += (size_t)snprintf(line + len, sizeof line - len, " %u", (unsigned)((r >> 24) % 10000));
            }
            line[len++] = (r >> 30) % 12 == 0 ? ',' : ' ';
        }
        line[len - 1] = '\n';
        long take = total - written < (long)len ? total - written : (long)len;
        if (fwrite(line, 1, (size_t)take, out) != (size_t)take) {
            fclose(out);
            return 1;
        }
        written += take;
    }
    return fclose(out) == 0 ? 0 : 1;
}
