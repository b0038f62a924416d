package io.khaos.jobs.common;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

/**
 * The per-record CPU cost knob (--cpu-us U): {@link #burn()} spins on a hash loop until the calling
 * thread has used U microseconds of CPU time (its own thread CPU clock, not wall time). So one
 * subtask on a core of its own processes at most about 1e6 / U records/s; when the core is shared,
 * the capacity drops as it would for real work. U = 0: no cost.
 * With {@code wall} (--cpu-clock wall) it spins until U microseconds of wall time have passed
 * instead: the capacity is then about 1e6 / U records/s per subtask whatever else runs on the machine.
 */
public final class CpuBurner {
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();
    private final long nanos;
    private final boolean wall;
    private long sink; // keeps the loop from being optimised away

    public CpuBurner(long micros) {
        this(micros, false);
    }

    public CpuBurner(long micros, boolean wall) {
        if (micros < 0) throw new IllegalArgumentException("--cpu-us must be >= 0");
        this.nanos = micros * 1000L;
        this.wall = wall;
        if (micros > 0 && !wall && !THREADS.isCurrentThreadCpuTimeSupported())
            throw new IllegalStateException("--cpu-us needs thread CPU time, which this JVM does not support");
    }

    public boolean enabled() { return nanos > 0; }

    /** Use the configured CPU time on this thread. */
    public void burn() {
        if (nanos == 0) return;
        long x = sink;
        if (wall) {
            long end = System.nanoTime() + nanos;
            do {
                for (int i = 0; i < 32; i++) x = Hashing.mix(x);
            } while (System.nanoTime() - end < 0);
        } else {
            long end = THREADS.getCurrentThreadCpuTime() + nanos;
            do {
                for (int i = 0; i < 32; i++) x = Hashing.mix(x);
            } while (THREADS.getCurrentThreadCpuTime() < end);
        }
        sink = x;
    }

    /** The accumulated hash (for tests; its value means nothing). */
    public long sink() { return sink; }
}
