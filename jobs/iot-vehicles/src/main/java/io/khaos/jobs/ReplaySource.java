package io.khaos.jobs;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.core.io.SimpleVersionedSerializer;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Replays a workload like a Kafka topic would: event i is available from start + schedule(i) on.
 * One split (parallelism 1); the enumerator only hands that split out and takes it back on failover.
 */
public final class ReplaySource implements Source<VehicleEvent, ReplaySplit, List<ReplaySplit>> {
    private static final long serialVersionUID = 1L;
    private final Schedule schedule;
    private final long vehicles;
    private final double skew;  // 0: vehicle = i mod vehicles; > 0: Zipf-like exponent
    private final long startMs; // <= 0: use the time the split is first created

    public ReplaySource(Schedule schedule, long vehicles, long startMs) {
        this(schedule, vehicles, 0.0, startMs);
    }

    public ReplaySource(Schedule schedule, long vehicles, double skew, long startMs) {
        this.schedule = schedule;
        this.vehicles = vehicles;
        this.skew = skew;
        this.startMs = startMs;
    }

    @Override
    public Boundedness getBoundedness() { return Boundedness.CONTINUOUS_UNBOUNDED; }

    @Override
    public SourceReader<VehicleEvent, ReplaySplit> createReader(SourceReaderContext ctx) {
        return new ReplayReader(ctx, schedule, vehicles, skew);
    }

    @Override
    public SplitEnumerator<ReplaySplit, List<ReplaySplit>> createEnumerator(SplitEnumeratorContext<ReplaySplit> ctx) {
        long start = startMs > 0 ? startMs : System.currentTimeMillis();
        List<ReplaySplit> pending = new ArrayList<>();
        pending.add(new ReplaySplit(0, start));
        return new Enumerator(ctx, pending);
    }

    @Override
    public SplitEnumerator<ReplaySplit, List<ReplaySplit>> restoreEnumerator(
            SplitEnumeratorContext<ReplaySplit> ctx, List<ReplaySplit> pending) {
        return new Enumerator(ctx, new ArrayList<>(pending));
    }

    @Override
    public SimpleVersionedSerializer<ReplaySplit> getSplitSerializer() { return ReplaySplit.Serializer.INSTANCE; }

    @Override
    public SimpleVersionedSerializer<List<ReplaySplit>> getEnumeratorCheckpointSerializer() {
        return new PendingSerializer();
    }

    /** Holds the split until reader 0 registers; gets it back if that reader fails. */
    static final class Enumerator implements SplitEnumerator<ReplaySplit, List<ReplaySplit>> {
        private final SplitEnumeratorContext<ReplaySplit> ctx;
        private final List<ReplaySplit> pending;

        Enumerator(SplitEnumeratorContext<ReplaySplit> ctx, List<ReplaySplit> pending) {
            this.ctx = ctx;
            this.pending = pending;
        }

        @Override public void start() {}
        @Override public void handleSplitRequest(int subtask, String host) { assign(); }
        @Override public void addReader(int subtask) { assign(); }
        @Override public void addSplitsBack(List<ReplaySplit> splits, int subtask) { pending.addAll(splits); assign(); }
        @Override public List<ReplaySplit> snapshotState(long checkpointId) { return new ArrayList<>(pending); }
        @Override public void close() {}

        private void assign() {
            if (pending.isEmpty() || !ctx.registeredReaders().containsKey(0)) return;
            for (ReplaySplit s : pending) ctx.assignSplit(s, 0);
            pending.clear();
        }
    }

    /** Enumerator state: the unassigned splits (version 1). */
    static final class PendingSerializer implements SimpleVersionedSerializer<List<ReplaySplit>> {
        @Override public int getVersion() { return 1; }

        @Override
        public byte[] serialize(List<ReplaySplit> splits) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                out.writeInt(splits.size());
                for (ReplaySplit s : splits) { out.writeLong(s.nextIndex); out.writeLong(s.startMs); }
            }
            return bytes.toByteArray();
        }

        @Override
        public List<ReplaySplit> deserialize(int version, byte[] b) throws IOException {
            if (version != 1) throw new IOException("unknown Replay enumerator state version " + version);
            List<ReplaySplit> out = new ArrayList<>();
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(b))) {
                for (int n = in.readInt(); n > 0; n--) out.add(new ReplaySplit(in.readLong(), in.readLong()));
            }
            return out;
        }
    }
}
