package io.khaos.jobs.common;

import org.apache.flink.metrics.Histogram;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * End-to-end latency of the records an operator sees, as the Khaos jobs publish it: a histogram
 * {@code e2eLatencyMs} (last 10,000 samples) and the gauges {@code latencyP99Ms},
 * {@code latencyMaxMs}, {@code latencyCount} of the last complete second (reservoir of 2048
 * samples), with {@code latencySecond} = that epoch second. A sampler reading once per second sees
 * each second once. Not thread-safe: call {@link #record} from the task thread only.
 */
public final class LatencyMeter {
    private static final int RESERVOIR = 2048;
    private final Histogram histogram;
    private final long[] reservoir = new long[RESERVOIR];
    private final SplittableRandom random;
    private long second, count, max;
    private volatile long lastSecond, lastP99, lastMax, lastCount;

    /** Registers the histogram and the four gauges on {@code group} (the operator's metric group). */
    public LatencyMeter(MetricGroup group, int subtask) {
        histogram = group.histogram("e2eLatencyMs", new DescriptiveStatisticsHistogram(10_000));
        group.gauge("latencyP99Ms", () -> lastP99);
        group.gauge("latencyMaxMs", () -> lastMax);
        group.gauge("latencyCount", () -> lastCount);
        group.gauge("latencySecond", () -> lastSecond);
        random = new SplittableRandom(subtask);
    }

    /** One record with latency {@code latencyMs}, observed at {@code nowMs} (epoch ms). */
    public void record(long latencyMs, long nowMs) {
        histogram.update(latencyMs);
        if (nowMs / 1000 != second) {
            roll(nowMs / 1000);
        }
        if (count < RESERVOIR) {
            reservoir[(int) count] = latencyMs;
        } else {
            long j = random.nextLong(count + 1);
            if (j < RESERVOIR) reservoir[(int) j] = latencyMs;
        }
        count++;
        max = Math.max(max, latencyMs);
    }

    /** Publish the finished second (only if it is the one just before `next`) and start anew. */
    private void roll(long next) {
        if (count > 0 && second == next - 1) {
            int n = (int) Math.min(count, RESERVOIR);
            long[] sorted = Arrays.copyOf(reservoir, n);
            Arrays.sort(sorted);
            lastP99 = sorted[Math.min(n - 1, (int) Math.ceil(0.99 * n) - 1)];
            lastMax = max;
            lastCount = count;
            lastSecond = second;
        }
        second = next;
        count = 0;
        max = 0;
    }
}
