package io.khaos.jobs;

import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.metrics.Counter;

import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Emits every event that is due (never one before its due time), BATCH events per pollNext so
 * checkpoint barriers get through while catching up. When nothing is due it returns
 * NOTHING_AVAILABLE and a timer completes the availability future at the next due time.
 */
final class ReplayReader implements SourceReader<VehicleEvent, ReplaySplit> {
    private static final int BATCH = 1000;

    private final Schedule schedule;
    private final long vehicles;
    private final double skew;
    private final Counter emitted;
    private final ScheduledExecutorService timer;

    // Written by the task thread only; volatile so the metric gauges (other thread) see them.
    private volatile boolean hasSplit;
    private volatile long startMs;
    private volatile long next; // next event index to emit
    private CompletableFuture<Void> available = new CompletableFuture<>(); // completed by addSplits / timer

    ReplayReader(SourceReaderContext ctx, Schedule schedule, long vehicles, double skew) {
        this.schedule = schedule;
        this.vehicles = vehicles;
        this.skew = skew;
        this.emitted = ctx.metricGroup().counter("emitted");
        ctx.metricGroup().gauge("backlog", this::backlog);
        ctx.metricGroup().gauge("eventTimeLagMs", this::eventTimeLagMs);
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "replay-timer");
            t.setDaemon(true);
            return t;
        });
    }

    @Override public void start() {}

    @Override
    public InputStatus pollNext(ReaderOutput<VehicleEvent> output) {
        if (!hasSplit) return InputStatus.NOTHING_AVAILABLE; // 'available' completes in addSplits
        long now = System.currentTimeMillis();
        long i = next, start = startMs, due = start + schedule.offsetMs(i);
        int n = 0;
        while (due <= now && n < BATCH) {
            output.collect(VehicleEvent.of(i, vehicles, skew, due), due);
            i++;
            n++;
            due = start + schedule.offsetMs(i);
        }
        next = i;
        emitted.inc(n);
        if (due <= now) return InputStatus.MORE_AVAILABLE; // still behind: keep going, no sleep
        if (available.isDone()) { // arm a timer for the next due event
            CompletableFuture<Void> f = new CompletableFuture<>();
            available = f;
            timer.schedule(() -> f.complete(null), due - now, TimeUnit.MILLISECONDS);
        }
        return InputStatus.NOTHING_AVAILABLE;
    }

    @Override public CompletableFuture<Void> isAvailable() { return available; }

    @Override
    public List<ReplaySplit> snapshotState(long checkpointId) {
        return hasSplit ? List.of(new ReplaySplit(next, startMs)) : Collections.emptyList();
    }

    @Override
    public void addSplits(List<ReplaySplit> splits) {
        for (ReplaySplit s : splits) { // exactly one split ever
            startMs = s.startMs;
            next = s.nextIndex;
            hasSplit = true;
        }
        available.complete(null);
    }

    @Override public void notifyNoMoreSplits() {}

    @Override public void close() { timer.shutdownNow(); }

    /** Events due by now that are not emitted yet. */
    private long backlog() {
        if (!hasSplit) return 0L;
        return Math.max(0L, schedule.dueCount(System.currentTimeMillis() - startMs) - next);
    }

    /** How late the next event is (0 if it is not due yet). */
    private long eventTimeLagMs() {
        if (!hasSplit) return 0L;
        return Math.max(0L, System.currentTimeMillis() - (startMs + schedule.offsetMs(next)));
    }
}
