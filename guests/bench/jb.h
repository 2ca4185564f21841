/* janus-bench workloads: shared helpers.
 *
 * Every workload times its own work with CLOCK_MONOTONIC (setup and checking stay outside
 * the timed part) and prints exactly one line:
 *     janus-bench: NAME ms=12.345 sum=0123456789abcdef
 * The sum is a 64-bit FNV-1a hash of the result, so the same argument gives the same sum
 * on every machine (no pointers, times or process ids go into it). The 32-bit build adds
 * "-i386" to every name.
 */
#ifndef JB_H
#define JB_H

#include <stddef.h>
#include <stdint.h>

#define JB_FNV_INIT 0xcbf29ce484222325ULL

double jb_now_ms(void);
uint64_t jb_fnv(uint64_t h, const void *p, size_t n);
uint64_t jb_fnv64(uint64_t h, uint64_t v);
/* Prints the workload's line (with the -i386 suffix in the 32-bit build). */
void jb_report(const char *name, double ms, uint64_t sum);
/* argv[i] as a positive count; exits with a message if it is missing or bad. */
long jb_count(int argc, char **argv, int i);
/* A small deterministic generator (xorshift64*). */
uint64_t jb_rand(uint64_t *state);

/* The workloads: argv[0] is the workload's name. */
int w_fp_scalar(int argc, char **argv);
int w_fp_packed(int argc, char **argv);
int w_string(int argc, char **argv);
int w_int(int argc, char **argv);
int w_indirect(int argc, char **argv);
int w_malloc(int argc, char **argv);
int w_syscall(int argc, char **argv);
int w_fork_exec(int argc, char **argv);
int w_time(int argc, char **argv);
int w_gen(int argc, char **argv);

#endif
