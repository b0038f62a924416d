package io.khaos.jobs.common;

import org.apache.flink.api.common.functions.RuntimeContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.util.ParameterTool;

import java.io.IOException;
import java.io.Serializable;

/**
 * The workload knobs of the Kafka jobs: key space, keyed state size, per-record CPU.
 * <ul>
 * <li>{@code --keys N}: the key of the stateful operator is the record's key field mod N (0 or absent: the key field as is);</li>
 * <li>{@code --state-bytes B}: each key holds a byte[B] ValueState ("payload") read and rewritten on every record;</li>
 * <li>{@code --cpu-us U}: every record costs U microseconds of the task thread's CPU time
 * ({@code --cpu-clock wall}: U microseconds of wall time, spinning; {@code --cpu-clock sleep}: U microseconds
 * of waiting, parked, almost no CPU).</li>
 * </ul>
 */
public final class Knobs implements Serializable {
    private static final long serialVersionUID = 1L;
    /** Upper bound of --state-bytes (one Java array, one RocksDB value). */
    public static final long MAX_STATE_BYTES = 16L << 20;
    public static final String USAGE = "[--keys N] [--state-bytes B] [--cpu-us U [--cpu-clock thread|wall|sleep]]";

    public final long keys;
    public final int stateBytes;
    public final long cpuUs;
    public final boolean cpuWall; // --cpu-clock wall
    public final boolean cpuSleep; // --cpu-clock sleep

    public Knobs(long keys, long stateBytes, long cpuUs) {
        this(keys, stateBytes, cpuUs, false);
    }

    public Knobs(long keys, long stateBytes, long cpuUs, boolean cpuWall) {
        this(keys, stateBytes, cpuUs, cpuWall ? CpuBurner.Clock.WALL : CpuBurner.Clock.THREAD);
    }

    public Knobs(long keys, long stateBytes, long cpuUs, CpuBurner.Clock clock) {
        if (keys < 0) throw new IllegalArgumentException("--keys must be > 0");
        if (stateBytes < 0 || stateBytes > MAX_STATE_BYTES)
            throw new IllegalArgumentException("--state-bytes must be between 0 and " + MAX_STATE_BYTES + ", got " + stateBytes);
        if (cpuUs < 0 || cpuUs > 10_000_000) throw new IllegalArgumentException("--cpu-us must be between 0 and 10000000, got " + cpuUs);
        this.keys = keys;
        this.stateBytes = (int) stateBytes;
        this.cpuUs = cpuUs;
        this.cpuWall = clock == CpuBurner.Clock.WALL;
        this.cpuSleep = clock == CpuBurner.Clock.SLEEP;
    }

    public static Knobs parse(ParameterTool p) {
        long keys = Cli.integer(p, "keys", 0);
        if (p.has("keys") && keys <= 0) throw new IllegalArgumentException("--keys must be > 0, got " + p.get("keys"));
        String clock = p.has("cpu-clock") ? Cli.text(p, "cpu-clock") : "thread";
        if (!clock.equals("thread") && !clock.equals("wall") && !clock.equals("sleep"))
            throw new IllegalArgumentException("--cpu-clock must be thread, wall or sleep, got '" + clock + "'");
        return new Knobs(keys, Cli.integer(p, "state-bytes", 0), Cli.integer(p, "cpu-us", 0),
                CpuBurner.Clock.valueOf(clock.toUpperCase(java.util.Locale.ROOT)));
    }

    /** Any per-record work or state asked for. */
    public boolean work() { return stateBytes > 0 || cpuUs > 0; }

    /** The key of a record whose key field is k. */
    public long key(long k) { return keys > 0 ? Hashing.mod(k, keys) : k; }

    /** The payload state of a key (--state-bytes); the state bootstrap writes the same one. */
    public static ValueStateDescriptor<byte[]> payloadState() {
        return new ValueStateDescriptor<>("payload", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO);
    }

    /** The per-subtask worker of a keyed function; call from open(). */
    public Worker open(RuntimeContext ctx) {
        ValueState<byte[]> payload = stateBytes > 0 ? ctx.getState(payloadState()) : null;
        return new Worker(payload, stateBytes, new CpuBurner(cpuUs, clock()));
    }

    @Override
    public String toString() {
        return "keys=" + keys + " state-bytes=" + stateBytes + " cpu-us=" + cpuUs + (cpuWall ? " (wall)" : cpuSleep ? " (sleep)" : "");
    }

    /** The clock of --cpu-us. */
    public CpuBurner.Clock clock() {
        return cpuWall ? CpuBurner.Clock.WALL : cpuSleep ? CpuBurner.Clock.SLEEP : CpuBurner.Clock.THREAD;
    }

    /** Does the work of one record for the current key of a keyed function. */
    public static final class Worker {
        private final ValueState<byte[]> payload;
        private final int bytes;
        private final CpuBurner burner;
        private long n;

        Worker(ValueState<byte[]> payload, int bytes, CpuBurner burner) {
            this.payload = payload;
            this.bytes = bytes;
            this.burner = burner;
        }

        /** Read and rewrite the current key's payload (key = the current key, for its first value), then burn CPU. */
        public void process(long key) throws IOException {
            if (payload != null) {
                byte[] b = payload.value();
                if (b == null || b.length != bytes) b = StateBlob.initial(key, bytes);
                payload.update(StateBlob.touch(b, n++));
            }
            burner.burn();
        }
    }
}
