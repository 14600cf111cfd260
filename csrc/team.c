/* team.c: the barrier that lets a team of OpenMP threads run a whole decode
 * step inside one parallel region.
 *
 * Why not one `omp parallel` per kernel: a decode step of a small model is
 * ~150 phases (a matmul, the attention of a layer) of 10-100 us each. Every
 * region costs a fork and a join, and ecomlm keeps libgomp's spin short
 * (GOMP_SPINCOUNT, see ecomlm/__init__.py) so that idle threads sleep: the
 * workers are asleep at almost every fork, and waking one costs tens of
 * microseconds on a virtual machine. Inside one region the phases only need
 * a barrier, and this one spins while waits are short: the team is running
 * and the last thread is nearly done. When waits are long (a thread of the
 * team was descheduled because the cores are shared), spinning would burn
 * the core the missing thread needs, so the barrier sleeps on a futex
 * instead. Each thread adapts its own spin budget to the waits it sees
 * (below), and keeps it from one decode step to the next.
 */
#define _GNU_SOURCE
#include "ecm.h"

#include <limits.h>
#include <sched.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* Spin budget of a thread at a barrier: up to SPIN_MAX_NS, a little more after
 * each wait that ended while spinning, half as much after each that did not.
 * Measured on the 2-core VM with the other core busy: any spin that outlasts
 * the missing thread's absence makes it longer (the spinner holds the core
 * the other thread is queued for), and waits there all exceed 8 us, so the
 * budget falls to nothing within a few barriers. On an idle machine waits end
 * within a few us and the budget stays full, which saves the futex wake (tens
 * of us when the sleeper's virtual CPU has halted). */
#define SPIN_MAX_NS 50000
#define SPIN_STEP_NS 5000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(atomic_int *addr, int expected) {
#ifdef __linux__
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)addr, (void)expected;
    sched_yield();
#endif
}

static void futex_wake_all(atomic_int *addr) {
#ifdef __linux__
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

static _Thread_local int64_t spin_budget_ns = SPIN_MAX_NS;

void ecm_team_init(ecm_team *t, int n) {
    ECM_ASSERT(n >= 1);
    atomic_init(&t->arrived, 0);
    atomic_init(&t->phase, 0);
    atomic_init(&t->sleepers, 0);
    t->n = n;
}

void ecm_team_sync(ecm_team *t) {
    if (t->n == 1) return;
    const int ph = atomic_load_explicit(&t->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&t->arrived, 1, memory_order_acq_rel) == t->n - 1) {
        /* the last to arrive: reset the count before releasing anyone, so a
         * released thread that hurries to the next barrier counts from zero */
        atomic_store_explicit(&t->arrived, 0, memory_order_relaxed);
        atomic_store(&t->phase, ph + 1); /* seq_cst: ordered before the sleepers check */
        if (atomic_load(&t->sleepers)) futex_wake_all(&t->phase);
        return;
    }
    int64_t *budget = &spin_budget_ns;
    const int64_t t0 = now_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&t->phase, memory_order_acquire) != ph) {
                *budget = *budget + SPIN_STEP_NS < SPIN_MAX_NS ? *budget + SPIN_STEP_NS : SPIN_MAX_NS;
                return;
            }
            cpu_relax();
        }
        if (now_ns() - t0 > *budget) break;
    }
    atomic_fetch_add(&t->sleepers, 1); /* seq_cst: ordered before the phase check */
    while (atomic_load(&t->phase) == ph) futex_wait(&t->phase, ph);
    atomic_fetch_sub_explicit(&t->sleepers, 1, memory_order_relaxed);
    *budget /= 2;
}

void ecm_team_split(int n, int ith, int nth, int *lo, int *hi) {
    *lo = (int)((int64_t)n * ith / nth);
    *hi = (int)((int64_t)n * (ith + 1) / nth);
}
