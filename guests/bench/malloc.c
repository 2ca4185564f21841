/* malloc: many malloc and free calls of mixed sizes, and pointer chasing through linked
 * lists whose nodes are scattered over the heap. The sum hashes values, never addresses. */
#include <stdlib.h>

#include "jb.h"

struct node {
    struct node *next;
    uint32_t value;
    uint32_t size;
    unsigned char payload[];
};

#define LISTS 64

int w_malloc(int argc, char **argv) {
    long n = jb_count(argc, argv, 1);
    struct node *lists[LISTS] = {0};
    uint32_t lengths[LISTS] = {0};
    uint64_t rng = 0x1234567;
    uint64_t h = JB_FNV_INIT;
    double t0 = jb_now_ms();
    for (long round = 0; round < 8; round++) {
        /* Grow: push new nodes onto random lists. */
        for (long i = 0; i < n; i++) {
            uint64_t r = jb_rand(&rng);
            uint32_t size = 8 + (uint32_t)(r % 248);
            struct node *nd = malloc(sizeof(struct node) + size);
            if (!nd) {
                return 1;
            }
            nd->value = (uint32_t)(r >> 32);
            nd->size = size;
            nd->payload[0] = (unsigned char)r;
            nd->payload[size - 1] = (unsigned char)(r >> 8);
            int l = (int)((r >> 16) % LISTS);
            nd->next = lists[l];
            lists[l] = nd;
            lengths[l]++;
        }
        /* Chase: walk every list twice. */
        uint64_t sum = 0;
        for (int pass = 0; pass < 2; pass++) {
            for (int l = 0; l < LISTS; l++) {
                for (struct node *p = lists[l]; p; p = p->next) {
                    sum += p->value ^ p->payload[0] ^ ((uint32_t)p->payload[p->size - 1] << 8);
                }
            }
        }
        h = jb_fnv64(h, sum);
        /* Shrink: free every other node of every list. */
        for (int l = 0; l < LISTS; l++) {
            struct node **pp = &lists[l];
            int k = 0;
            while (*pp) {
                if (k++ & 1) {
                    struct node *dead = *pp;
                    *pp = dead->next;
                    free(dead);
                    lengths[l]--;
                } else {
                    pp = &(*pp)->next;
                }
            }
        }
    }
    for (int l = 0; l < LISTS; l++) {
        h = jb_fnv64(h, lengths[l]);
        while (lists[l]) {
            struct node *dead = lists[l];
            lists[l] = dead->next;
            free(dead);
        }
    }
    double ms = jb_now_ms() - t0;
    jb_report(argv[0], ms, h);
    return 0;
}
