/*
 * legacy_reader.c: a reader written only against the original exasock bonding extension's semantics,
 * without libexabond or exabond.h: it shows that unchanged exasock-style code keeps working on an
 * exabond page.
 *
 *   legacy_reader PAGE_FILE [--count N] [--private]
 *
 * What it relies on, and nothing else:
 *   - the page file can be open(O_RDONLY)'d and mmap(PROT_READ, MAP_SHARED)'d, or MAP_PRIVATE with
 *     --private, exactly as libexasock maps /dev/exabond-<bond> (exasock-bonding.c); the file is opened
 *     once and never again, so the page must keep its inode across agent restarts;
 *   - the 32-bit word at offset 0: bits 0-15 flags (bit 0 = an active slave exists), bits 16-23 the
 *     SmartNIC id of the active slave, bits 24-31 its port;
 *   - "the word differs from the cached copy" means the active link changed.
 *
 * Output, one line each, flushed (the tests parse it):
 *   ready word=0x%08x
 *   word K 0x%08x active=0|1 id=ID port=PORT      for every new word, K counting from 1
 * With --count N it exits after N changes, otherwise it runs until killed.
 *
 * Build: cc -std=c11 -O2 -o legacy_reader legacy_reader.c
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define WORD_ACTIVE 0x1u

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s PAGE_FILE [--count N] [--private]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    unsigned long long count = 0; /* 0: forever */
    int flags = MAP_SHARED;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--private") == 0) {
            flags = MAP_PRIVATE;
        } else if (strcmp(argv[i], "--count") == 0) {
            char *end;
            if (++i >= argc)
                usage(argv[0]);
            errno = 0;
            count = strtoull(argv[i], &end, 10);
            if (errno || *end || end == argv[i] || count == 0)
                usage(argv[0]);
        } else if (argv[i][0] == '-' || path) {
            usage(argv[0]);
        } else {
            path = argv[i];
        }
    }
    if (!path)
        usage(argv[0]);

    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "legacy_reader: open %s: %s\n", path, strerror(errno));
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    void *map = mmap(NULL, (size_t)page, PROT_READ, flags, fd, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "legacy_reader: mmap %s: %s\n", path, strerror(errno));
        return 1;
    }
    close(fd);

    /* The exasock way: a volatile 32-bit read of offset 0 (aligned: one load), compared with a cache. */
    const volatile uint32_t *word = (const volatile uint32_t *)map;
    uint32_t cached = *word;
    printf("ready word=0x%08" PRIx32 "\n", cached);
    fflush(stdout);

    for (unsigned long long seen = 0; count == 0 || seen < count;) {
        uint32_t w = *word;
        if (w == cached) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        cached = w;
        seen++;
        printf("word %llu 0x%08" PRIx32 " active=%d id=%u port=%u\n", seen, w, (w & WORD_ACTIVE) != 0,
               (unsigned)((w >> 16) & 0xff), (unsigned)((w >> 24) & 0xff));
        fflush(stdout);
    }
    munmap(map, (size_t)page);
    return 0;
}
