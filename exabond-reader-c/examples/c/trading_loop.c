/*
 * trading_loop.c: the shape of a trading process's hot loop reading a bond page through libexabond.
 *
 *   trading_loop BOND [PAGE_DIR] [--count N | --once]
 *
 * Opens PAGE_DIR/exabond-BOND (PAGE_DIR defaults to /dev), then spins on exabond_changed() (one atomic
 * load: no syscall, no lock; of the kernel's own fast word when the agent offers it, else of the page's
 * word). On a change it takes the new word and active ifindex from exabond_active() (what a trading loop
 * acts on), then the slave's name from a snapshot of the page, which follows the fast word within the
 * agent's latency (the loop re-reads it until it shows that ifindex, for at most a second). With --count N
 * it exits after N changes; with --once it prints one snapshot and exits.
 *
 * Output, one line each, flushed (the tests parse it):
 *   ready word=0x%08x                       after the open: the word the first change is compared with
 *   change K word=0x%08x active=NAME ifindex=I slot=S failovers=F source=fast|page
 *                                           K counts from 1; NAME is "-" when no slave is active
 *   snapshot bond=B word=0x%08x active=NAME ifindex=I slot=S failovers=F slaves=N stale=0|1   (--once)
 *
 * Build (see exabond-reader-c/tests/c_programs.rs):
 *   cc -std=c11 -O2 -I exabond-reader-c/include trading_loop.c -L target/release -lexabond \
 *      -Wl,-rpath,target/release                                                          (shared)
 *   cc -std=c11 -O2 -I exabond-reader-c/include trading_loop.c target/release/libexabond.a \
 *      -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc                                          (static)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exabond.h"

/* A heartbeat older than this makes the page stale (the agent's default poll period is 200 ms). */
#define MAX_HEARTBEAT_AGE_NS (2ull * 1000 * 1000 * 1000)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s BOND [PAGE_DIR] [--count N | --once]\n", argv0);
    exit(2);
}

/* The active slave's name, or "-" when none is active. `buf` has room for EXABOND_IFNAMSIZ bytes. */
static const char *active_name(const struct exabond_snapshot *s, char *buf)
{
    if (!(s->flags & EXABOND_FLAG_ACTIVE))
        return "-";
    memcpy(buf, s->active_name, EXABOND_IFNAMSIZ);
    buf[EXABOND_IFNAMSIZ - 1] = '\0';
    return buf[0] ? buf : "-";
}

int main(int argc, char **argv)
{
    const char *bond = NULL, *dir = NULL;
    unsigned long long count = 0; /* 0: forever */
    int once = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0) {
            once = 1;
        } else if (strcmp(argv[i], "--count") == 0) {
            char *end;
            if (++i >= argc)
                usage(argv[0]);
            errno = 0;
            count = strtoull(argv[i], &end, 10);
            if (errno || *end || end == argv[i] || count == 0)
                usage(argv[0]);
        } else if (argv[i][0] == '-') {
            usage(argv[0]);
        } else if (!bond) {
            bond = argv[i];
        } else if (!dir) {
            dir = argv[i];
        } else {
            usage(argv[0]);
        }
    }
    if (!bond || (once && count))
        usage(argv[0]);

    int err;
    struct exabond_reader *r = exabond_open(bond, dir, &err);
    if (!r) {
        fprintf(stderr, "trading_loop: %s%s%s: %s (error %d)\n", dir ? dir : EXABOND_DEFAULT_PAGE_DIR,
                "/" EXABOND_PAGE_FILE_PREFIX, bond, exabond_strerror(err), err);
        return 1;
    }

    struct exabond_snapshot s;
    char name[EXABOND_IFNAMSIZ];

    if (once) {
        err = exabond_snapshot(r, &s);
        if (err != EXABOND_OK) {
            fprintf(stderr, "trading_loop: snapshot: %s\n", exabond_strerror(err));
            exabond_close(r);
            return 1;
        }
        int stale = exabond_is_stale(r, MAX_HEARTBEAT_AGE_NS);
        char bond_name[EXABOND_IFNAMSIZ];
        memcpy(bond_name, s.bond_name, EXABOND_IFNAMSIZ);
        bond_name[EXABOND_IFNAMSIZ - 1] = '\0';
        printf("snapshot bond=%s word=0x%08" PRIx32 " active=%s ifindex=%" PRIu32 " slot=%" PRId32
               " failovers=%" PRIu64 " slaves=%" PRIu32 " stale=%d\n",
               bond_name, s.legacy_word, active_name(&s, name), s.active_ifindex,
               (int32_t)s.active_slot, s.failover_count, s.slave_count, stale);
        exabond_close(r);
        return stale < 0 ? 1 : 0;
    }

    printf("ready word=0x%08" PRIx32 "\n", exabond_legacy_word(r));
    fflush(stdout);

    for (unsigned long long seen = 0; count == 0 || seen < count;) {
        /* The hot path: a real loop does its trading work here and checks the page once per turn. */
        if (exabond_changed(r) <= 0) {
            cpu_relax();
            continue;
        }
        seen++;
        struct exabond_active a;
        err = exabond_active(r, &a);
        if (err != EXABOND_OK) {
            fprintf(stderr, "trading_loop: active: %s\n", exabond_strerror(err));
            continue;
        }
        /* The page (names, members, counters) follows the fast word within the agent's latency. */
        for (unsigned long spins = 0;; spins++) {
            err = exabond_snapshot(r, &s);
            uint32_t shown = (err == EXABOND_OK && (s.flags & EXABOND_FLAG_ACTIVE)) ? s.active_ifindex : 0;
            if (err == EXABOND_OK && (shown == a.ifindex || spins > 100000000ul))
                break;
            cpu_relax();
        }
        if (err != EXABOND_OK) {
            fprintf(stderr, "trading_loop: snapshot: %s\n", exabond_strerror(err));
            continue;
        }
        printf("change %llu word=0x%08" PRIx32 " active=%s ifindex=%" PRIu32 " slot=%" PRId32
               " failovers=%" PRIu64 " source=%s\n",
               seen, a.word, active_name(&s, name), a.ifindex, (int32_t)s.active_slot, s.failover_count,
               a.source == EXABOND_ACTIVE_FAST ? "fast" : "page");
        fflush(stdout);
    }
    exabond_close(r);
    return 0;
}
