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
 * With {@code sleep} (--cpu-clock sleep) each call owes U microseconds of waiting, paid by parking the
 * thread once at least 1 ms is owed (an oversleep is credited to the next calls): a per-record wait
 * like a synchronous call to another service. The capacity is exactly 1e6 / U records/s per subtask
 * while it is busy, and it uses almost no CPU, so it stays the same on a loaded machine.
 */
public final class CpuBurner {
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();
    /** How a call pays its cost: thread CPU time, spinning wall time, or parked (sleeping) wall time. */
    public enum Clock { THREAD, WALL, SLEEP }

    private static final long PARK_MIN_NANOS = 1_000_000L; // park only once this much is owed
    private final long nanos;
    private final Clock clock;
    private long sink; // keeps the loop from being optimised away
    private long owed; // SLEEP: nanoseconds of waiting owed (negative: an oversleep credited)

    public CpuBurner(long micros) {
        this(micros, false);
    }

    public CpuBurner(long micros, boolean wall) {
        this(micros, wall ? Clock.WALL : Clock.THREAD);
    }

    public CpuBurner(long micros, Clock clock) {
        if (micros < 0) throw new IllegalArgumentException("--cpu-us must be >= 0");
        this.nanos = micros * 1000L;
        this.clock = clock;
        if (micros > 0 && clock == Clock.THREAD && !THREADS.isCurrentThreadCpuTimeSupported())
            throw new IllegalStateException("--cpu-us needs thread CPU time, which this JVM does not support");
    }

    public boolean enabled() { return nanos > 0; }

    /** Use the configured CPU time on this thread. */
    public void burn() {
        if (nanos == 0) return;
        if (clock == Clock.SLEEP) {
            owed += nanos;
            if (owed >= PARK_MIN_NANOS) {
                long t0 = System.nanoTime();
                java.util.concurrent.locks.LockSupport.parkNanos(owed);
                owed -= System.nanoTime() - t0; // an early wake-up stays owed, an oversleep is credited
            }
            return;
        }
        long x = sink;
        if (clock == Clock.WALL) {
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
