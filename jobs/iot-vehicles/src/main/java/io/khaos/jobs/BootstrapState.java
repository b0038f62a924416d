package io.khaos.jobs;

import io.khaos.jobs.common.Cli;
import io.khaos.jobs.common.Knobs;
import io.khaos.jobs.common.StateBlob;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.state.api.OperatorIdentifier;
import org.apache.flink.state.api.OperatorTransformation;
import org.apache.flink.state.api.SavepointWriter;
import org.apache.flink.state.api.StateBootstrapTransformation;
import org.apache.flink.state.api.functions.KeyedStateBootstrapFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.ParameterTool;

/**
 * Writes a savepoint that holds the keyed state the iot-vehicles job reaches after it has seen every key:
 * for each key 0 .. N-1 of {@code --keys N}, the VehicleState operator's "seen" value and a payload of
 * {@code --state-bytes B} pseudo-random bytes (StateBlob, as the job writes it). A job started from it
 * (same --keys and --state-bytes) has its full state at once, instead of after minutes of records.
 *
 * <pre>flink run -c io.khaos.jobs.BootstrapState iot-vehicles.jar --keys N --state-bytes B --savepoint DIR
 *     [--max-parallelism 128]</pre>
 *
 * A batch job on RocksDB (state of GBs does not fit a TaskManager's heap); the savepoint is canonical, so a
 * RocksDB or a heap job restores it. --max-parallelism must be
 * the job's (128 for parallelism up to 128 unless the job sets its own).
 */
public final class BootstrapState {
    static final String USAGE = "usage: BootstrapState --keys N --state-bytes B --savepoint DIR [--max-parallelism M]";

    private BootstrapState() {}

    public static void main(String[] args) throws Exception {
        ParameterTool p = ParameterTool.fromArgs(args);
        Knobs knobs;
        String target;
        int maxParallelism;
        try {
            knobs = Knobs.parse(p);
            target = Cli.text(p, "savepoint");
            maxParallelism = (int) Cli.integer(p, "max-parallelism", 128);
            if (knobs.keys <= 0 || knobs.stateBytes <= 0 || target == null)
                throw new IllegalArgumentException("--keys, --state-bytes and --savepoint are required");
            if (maxParallelism < 1 || maxParallelism > 32768)
                throw new IllegalArgumentException("--max-parallelism must be in 1 .. 32768");
        } catch (IllegalArgumentException e) {
            System.err.println("BootstrapState: " + e.getMessage() + "\n" + USAGE);
            System.exit(2);
            return;
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setRuntimeMode(RuntimeExecutionMode.BATCH);
        StateBootstrapTransformation<Long> state = OperatorTransformation
                .bootstrapWith(env.fromSequence(0, knobs.keys - 1))
                .keyBy(k -> k, Types.LONG)
                .transform(new Fill(knobs.stateBytes));
        SavepointWriter.newSavepoint(env, maxParallelism)
                // RocksDB: the state spills to disk instead of filling the TaskManager's heap
                .withConfiguration(StateBackendOptions.STATE_BACKEND, "rocksdb")
                .withOperator(OperatorIdentifier.forUid(IotVehiclesJob.VehicleState.UID), state)
                .write(target);
        env.execute("bootstrap-state " + knobs);
    }

    /** One key's state: seen = (0 events, speed 0) and its initial payload. */
    static final class Fill extends KeyedStateBootstrapFunction<Long, Long> {
        private final int bytes;
        private transient ValueState<Tuple2<Long, Integer>> seen;
        private transient ValueState<byte[]> payload;

        Fill(int bytes) { this.bytes = bytes; }

        @Override
        public void open(OpenContext ctx) {
            seen = getRuntimeContext().getState(IotVehiclesJob.VehicleState.seenState());
            payload = getRuntimeContext().getState(Knobs.payloadState());
        }

        @Override
        public void processElement(Long key, Context ctx) throws Exception {
            seen.update(Tuple2.of(0L, 0));
            payload.update(StateBlob.initial(key, bytes));
        }
    }
}
