/* team.c: the barrier that lets a team of OpenMP threads run a whole decode
 * step inside one parallel region.
 *
 * Why not one `omp parallel` per kernel: a decode step of a small model is
 * ~150 phases (a matmul, the attention of a layer) of 10-100 us each. Every
 * region costs a fork and a join, and ecomlm keeps libgomp's spin short
 * (GOMP_SPINCOUNT, see ecomlm/__init__.py) so that idle threads sleep: the
 * workers are asleep at almost every fork, and waking one costs tens of
 * microseconds on a virtual machine. Inside one region the phases only need
 * a barrier, and this one spins while the machine is otherwise idle and
 * sleeps on a futex at once when the cores are shared.
 *
 * Why not a fixed spin (measured on the 2-core VMs these run on): on an idle
 * machine a sleeping thread's virtual CPU halts and waking it takes 60-250
 * us, longer than the phases themselves, so a team that sleeps at its
 * barriers decodes at half speed. When other processes keep the cores busy,
 * the opposite: the late thread is often queued behind one of them, a
 * spinning thread holds a core it could run on, and the CPU time spent
 * spinning counts against the team when the scheduler shares the cores out
 * (200 us spins made waits ~300 us and decoding 3x slower than sleeping at
 * once; even spins that do end in an arrival cost more than they save).
 * So each thread keeps a spin budget, grown while the evidence says the
 * team runs alone and halved when it says otherwise. The evidence: whether
 * the late thread's CPU clock advances while we wait for it (running) or not
 * (queued behind another process). With a small budget the thread still
 * looks for a few microseconds at every eighth barrier, so that the budget
 * grows back when the other processes stop.
 */
#define _GNU_SOURCE
#include "ecm.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define SPIN_MAX_NS 200000 /* the largest budget: a running thread arrives well within it */
#define SPIN_STEP_NS 10000 /* the budget's growth per wait that found the team running */
#define PROBE_NS 4000      /* how often a spinning thread looks at the late one's clock */
#define LOOK_NS 12000      /* the least spin at every eighth barrier */

static _Thread_local int64_t spin_budget_ns = SPIN_MAX_NS;
static _Thread_local unsigned n_waits;

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

void ecm_team_init(ecm_team *t, int n) {
    ECM_ASSERT(n >= 1);
    atomic_init(&t->arrived, 0);
    atomic_init(&t->phase, 0);
    atomic_init(&t->sleepers, 0);
    t->n = n;
    for (int i = 0; i < ECM_TEAM_TRACK; i++) {
        atomic_init(&t->member[i].at, 0);
        atomic_init(&t->member[i].clock_set, 0);
    }
}

void ecm_team_enter(ecm_team *t, int ith) {
    if (ith >= ECM_TEAM_TRACK) return;
#ifdef __linux__ /* elsewhere no clock: waits spin up to the budget, then yield */
    if (pthread_getcpuclockid(pthread_self(), &t->member[ith].clock) == 0)
        atomic_store_explicit(&t->member[ith].clock_set, 1, memory_order_release);
#endif
}

/* CPU time of thread i, or -1 when it cannot be read. */
static int64_t cpu_ns(ecm_team *t, int i) {
    struct timespec ts;
    if (i >= ECM_TEAM_TRACK || !atomic_load_explicit(&t->member[i].clock_set, memory_order_acquire) ||
        clock_gettime(t->member[i].clock, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A thread of the team that has not reached barrier `ph` yet, or -1. */
static int late_member(ecm_team *t, int ph) {
    const int n = t->n < ECM_TEAM_TRACK ? t->n : ECM_TEAM_TRACK;
    for (int i = 0; i < n; i++)
        if (atomic_load_explicit(&t->member[i].at, memory_order_relaxed) <= ph) return i;
    return -1;
}

void ecm_team_sync(ecm_team *t, int ith) {
    if (t->n == 1) return;
    const int ph = atomic_load_explicit(&t->phase, memory_order_acquire);
    if (ith < ECM_TEAM_TRACK) atomic_store_explicit(&t->member[ith].at, ph + 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&t->arrived, 1, memory_order_acq_rel) == t->n - 1) {
        /* the last to arrive: reset the count before releasing anyone, so a
         * released thread that hurries to the next barrier counts from zero */
        atomic_store_explicit(&t->arrived, 0, memory_order_relaxed);
        atomic_store(&t->phase, ph + 1); /* seq_cst: ordered before the sleepers check */
        if (atomic_load(&t->sleepers)) futex_wake_all(&t->phase);
        return;
    }
    int64_t *budget = &spin_budget_ns;
    const int64_t limit = (++n_waits & 7) == 0 && *budget < LOOK_NS ? LOOK_NS : *budget;
    const int64_t t0 = now_ns();
    int64_t probe_wall = t0, probe_cpu = -1;
    int late = -1, ran = 0;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&t->phase, memory_order_acquire) != ph) {
                *budget = *budget + SPIN_STEP_NS < SPIN_MAX_NS ? *budget + SPIN_STEP_NS : SPIN_MAX_NS;
                return;
            }
            cpu_relax();
        }
        const int64_t now = now_ns();
        if (now - probe_wall >= PROBE_NS) {
            /* the late thread runs if its CPU clock advanced at least half as fast as the wall clock */
            const int who = late_member(t, ph);
            const int64_t cpu = who >= 0 ? cpu_ns(t, who) : -1;
            if (who >= 0 && who == late && probe_cpu >= 0 && cpu >= 0) {
                if (2 * (cpu - probe_cpu) < now - probe_wall) {
                    *budget /= 2; /* queued behind another process: give up this core */
                    break;
                }
                ran = 1;
            }
            late = who, probe_cpu = cpu, probe_wall = now;
        }
        if (now - t0 > limit) {
            if (ran) /* it ran all along, only later than the budget: no case against spinning */
                *budget = *budget + SPIN_STEP_NS < SPIN_MAX_NS ? *budget + SPIN_STEP_NS : SPIN_MAX_NS;
            break;
        }
    }
    atomic_fetch_add(&t->sleepers, 1); /* seq_cst: ordered before the phase check */
    while (atomic_load(&t->phase) == ph) futex_wait(&t->phase, ph);
    atomic_fetch_sub_explicit(&t->sleepers, 1, memory_order_relaxed);
}

void ecm_team_split(int n, int ith, int nth, int *lo, int *hi) {
    *lo = (int)((int64_t)n * ith / nth);
    *hi = (int)((int64_t)n * (ith + 1) / nth);
}
