package io.khaos.jobs;

import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.core.io.SimpleVersionedSerializer;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.ByteArrayInputStream;

/** The one split of the Replay source; its state is the next event index and the start time. */
public final class ReplaySplit implements SourceSplit {
    public static final String ID = "replay-0";
    public final long nextIndex; // first event not yet emitted
    public final long startMs;   // epoch ms at which event 0 is due (fixed for the job's life)

    public ReplaySplit(long nextIndex, long startMs) {
        this.nextIndex = nextIndex;
        this.startMs = startMs;
    }

    @Override
    public String splitId() { return ID; }

    @Override
    public String toString() { return "ReplaySplit{next=" + nextIndex + ", start=" + startMs + "}"; }

    /** Version 1: two longs. */
    public static final class Serializer implements SimpleVersionedSerializer<ReplaySplit> {
        public static final Serializer INSTANCE = new Serializer();

        @Override
        public int getVersion() { return 1; }

        @Override
        public byte[] serialize(ReplaySplit s) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(16);
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                out.writeLong(s.nextIndex);
                out.writeLong(s.startMs);
            }
            return bytes.toByteArray();
        }

        @Override
        public ReplaySplit deserialize(int version, byte[] b) throws IOException {
            if (version != 1) throw new IOException("unknown ReplaySplit version " + version);
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(b))) {
                return new ReplaySplit(in.readLong(), in.readLong());
            }
        }
    }
}
