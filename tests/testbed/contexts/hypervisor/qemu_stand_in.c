/*
 * TEST BED ONLY: stands in for a QEMU/KVM guest process on a simulated
 * hypervisor. It ignores its arguments (the test bed starts it with the
 * command line of a real guest, e.g. `-name guest=one-42,debug-threads=on
 * -machine pc`, so /proc/PID/cmdline looks like OpenNebula's) and uses a
 * little CPU (about 1 %) so that a per-process power estimate is above zero.
 */
#include <time.h>

static long elapsed_ns(const struct timespec *from, const struct timespec *to)
{
    return (to->tv_sec - from->tv_sec) * 1000000000L + (to->tv_nsec - from->tv_nsec);
}

int main(void)
{
    const long busy_ns = 5000000L;              /* 5 ms of work ...       */
    const struct timespec idle = {0, 495000000L}; /* ... every half second */

    for (;;) {
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while (elapsed_ns(&start, &now) < busy_ns);
        nanosleep(&idle, NULL);
    }
    return 0;
}
