package io.khaos.jobs;

import java.io.IOException;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * When each event is due, relative to the start time. counts[s] events fall in second s of the
 * trace (the trace repeats after its last second); inside a second the c events are spread
 * evenly: event j (0 <= j < c) is due at s*1000 + floor(j*1000/c) ms. A constant rate R is the
 * one-line trace [R].
 */
public final class Schedule implements Serializable {
    private static final long serialVersionUID = 1L;
    private final long[] counts; // events per trace second
    private final long[] cum;    // cum[s] = events before trace second s; cum[n] = events per cycle

    public Schedule(long[] counts) {
        this.counts = counts.clone();
        this.cum = new long[counts.length + 1];
        for (int s = 0; s < counts.length; s++) {
            if (counts[s] < 0) throw new IllegalArgumentException("negative count in second " + s);
            cum[s + 1] = cum[s] + counts[s];
        }
        if (counts.length == 0 || cum[counts.length] == 0)
            throw new IllegalArgumentException("the workload has no events (rate 0 / empty trace)");
    }

    public static Schedule constant(long rate) { return new Schedule(new long[] {rate}); }

    /** Reads a trace: one non-negative number of events per line; blank and '#' lines skipped. */
    public static Schedule fromTrace(Path file) throws IOException {
        List<Long> out = new ArrayList<>();
        int lineNo = 0;
        for (String line : Files.readAllLines(file)) {
            lineNo++;
            String t = line.trim();
            if (t.isEmpty() || t.startsWith("#")) continue;
            double v;
            try { v = Double.parseDouble(t); } catch (NumberFormatException e) { v = Double.NaN; }
            if (!(v >= 0) || Double.isInfinite(v))
                throw new IllegalArgumentException(
                        "trace " + file + " line " + lineNo + ": not a non-negative number: '" + t + "'");
            out.add(Math.round(v));
        }
        return new Schedule(out.stream().mapToLong(Long::longValue).toArray());
    }

    /** Due time of event i, in ms after the start. */
    public long offsetMs(long i) {
        int n = counts.length;
        long perCycle = cum[n];
        long cycle = i / perCycle, r = i % perCycle;
        int s = Arrays.binarySearch(cum, r);            // the second s with cum[s] <= r < cum[s+1]
        if (s < 0) s = -s - 2;
        else while (s + 1 < cum.length && cum[s + 1] == r) s++; // skip empty seconds
        long j = r - cum[s];
        return (cycle * n + s) * 1000L + j * 1000L / counts[s];
    }

    /** Number of events due at or before t ms after the start (i.e. with offsetMs(i) <= t). */
    public long dueCount(long t) {
        if (t < 0) return 0;
        int n = counts.length;
        long sec = t / 1000, ms = t % 1000;
        int s = (int) (sec % n);
        long c = counts[s];
        // j counts iff floor(j*1000/c) <= ms  <=>  j*1000 < (ms+1)*c
        long inSecond = Math.min(c, ((ms + 1) * c + 999) / 1000);
        return (sec / n) * cum[n] + cum[s] + inSecond;
    }
}
