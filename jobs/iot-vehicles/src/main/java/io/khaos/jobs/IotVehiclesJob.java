package io.khaos.jobs;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringEncoder;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.core.fs.Path;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.filesystem.rollingpolicies.OnCheckpointRollingPolicy;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.util.Collector;
import org.apache.flink.util.ParameterTool;

import java.nio.file.Files;
import java.time.Duration;

/**
 * IoT-vehicles benchmark job.
 *
 * <pre>
 * Replay -+-> AreaFilter -> keyBy(vehicle) -> SpeedWindow (5 s / 1 s, avg speed) -> Speeding -> Alerts
 *         +-> keyBy(vehicle) -> VehicleState (ValueState) -> Latency (e2eLatencyMs) -> AuditSink (ids)
 * </pre>
 *
 * The checkpoint interval is left to the configuration (execution.checkpointing.interval).
 */
public final class IotVehiclesJob {
    static final String USAGE = "usage: IotVehiclesJob (--rate EVENTS_PER_S | --trace FILE) --output DIR"
            + " [--start EPOCH_MS] [--vehicles N] [--speed-limit KMH] [--parallelism P]";

    public static void main(String[] args) throws Exception {
        Args a;
        try {
            a = Args.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("iot-vehicles: " + e.getMessage()); // the one-line reason
            throw e;
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        if (a.parallelism > 0) { // else the cluster's parallelism.default (the source always runs 1 subtask)
            env.setParallelism(a.parallelism);
        }

        DataStream<VehicleEvent> events = env
                .fromSource(new ReplaySource(a.schedule, a.vehicles, a.startMs),
                        WatermarkStrategy.<VehicleEvent>forBoundedOutOfOrderness(Duration.ofSeconds(1))
                                .withTimestampAssigner((e, ts) -> e.timestamp),
                        "Replay")
                .uid("replay").setParallelism(1);


        // Analytics branch: average speed per vehicle over sliding event-time windows.
        final double limit = a.speedLimit;
        events.filter(e -> e.area != 0).name("AreaFilter").uid("area-filter").setParallelism(1) // chained to the source
                .keyBy(e -> e.vehicleId, Types.LONG)
                .window(SlidingEventTimeWindows.of(Duration.ofSeconds(5), Duration.ofSeconds(1)))
                .aggregate(new AvgSpeed()).name("SpeedWindow").uid("speed-window")
                .filter(t -> t.f1 > limit).name("Speeding").uid("speeding")
                .sinkTo(new DiscardingSink<>()).name("Alerts").uid("alerts");

        // Audit branch: keyed state, latency measurement, exactly-once id log.
        events.keyBy(e -> e.vehicleId, Types.LONG)
                .process(new VehicleState()).name("VehicleState").uid("vehicle-state")
                .map(new Latency()).name("Latency").uid("latency")
                .sinkTo(FileSink.forRowFormat(new Path(a.output), new SimpleStringEncoder<Long>("UTF-8"))
                        .withRollingPolicy(OnCheckpointRollingPolicy.build()) // commit on every checkpoint
                        .build())
                .name("AuditSink").uid("audit-sink");

        // pipeline.name (set per job by the submitter) wins; the deploy playbook finds the job by it
        env.execute(env.getConfiguration().getOptional(PipelineOptions.NAME).orElse("iot-vehicles"));
    }

    /** Per-vehicle state (events seen, last speed); forwards every event. */
    static final class VehicleState extends KeyedProcessFunction<Long, VehicleEvent, VehicleEvent> {
        private transient ValueState<Tuple2<Long, Integer>> seen; // (count, last speed)

        @Override
        public void open(OpenContext ctx) {
            seen = getRuntimeContext().getState(
                    new ValueStateDescriptor<>("seen", Types.TUPLE(Types.LONG, Types.INT)));
        }

        @Override
        public void processElement(VehicleEvent e, Context ctx, Collector<VehicleEvent> out) throws Exception {
            Tuple2<Long, Integer> s = seen.value();
            seen.update(Tuple2.of(s == null ? 1L : s.f0 + 1, e.speed));
            out.collect(e);
        }
    }

    /**
     * Records end-to-end latency (now - due time) and passes the event id on. Besides the
     * histogram (last 10,000 events), gauges latencyP99Ms / latencyMaxMs / latencyCount give the
     * p99, max and count of the last complete second (reservoir of 2048 samples), so a sampler
     * reading once per second sees each second once; latencySecond is that second (epoch s).
     */
    static final class Latency extends RichMapFunction<VehicleEvent, Long> {
        private static final int RESERVOIR = 2048;
        private transient Histogram histogram;
        private transient long[] reservoir;
        private transient java.util.SplittableRandom random;
        private transient long second, count, max;
        private transient volatile long lastSecond, lastP99, lastMax, lastCount;

        @Override
        public void open(OpenContext ctx) {
            var group = getRuntimeContext().getMetricGroup();
            histogram = group.histogram("e2eLatencyMs", new DescriptiveStatisticsHistogram(10_000));
            group.gauge("latencyP99Ms", () -> lastP99);
            group.gauge("latencyMaxMs", () -> lastMax);
            group.gauge("latencyCount", () -> lastCount);
            group.gauge("latencySecond", () -> lastSecond);
            reservoir = new long[RESERVOIR];
            random = new java.util.SplittableRandom(getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }

        @Override
        public Long map(VehicleEvent e) {
            long now = System.currentTimeMillis();
            long l = now - e.timestamp;
            histogram.update(l);
            if (now / 1000 != second) {
                roll(now / 1000);
            }
            if (count < RESERVOIR) {
                reservoir[(int) count] = l;
            } else {
                long j = random.nextLong(count + 1);
                if (j < RESERVOIR) reservoir[(int) j] = l;
            }
            count++;
            max = Math.max(max, l);
            return e.id;
        }

        /** Publish the finished second (only if it is the one just before `next`) and start anew. */
        private void roll(long next) {
            if (count > 0 && second == next - 1) {
                int n = (int) Math.min(count, RESERVOIR);
                long[] sorted = java.util.Arrays.copyOf(reservoir, n);
                java.util.Arrays.sort(sorted);
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

    /** Average speed per vehicle; accumulator = (vehicle, speed sum, count). */
    static final class AvgSpeed implements AggregateFunction<VehicleEvent, long[], Tuple2<Long, Double>> {
        @Override public long[] createAccumulator() { return new long[3]; }
        @Override public long[] add(VehicleEvent e, long[] acc) { acc[0] = e.vehicleId; acc[1] += e.speed; acc[2]++; return acc; }
        @Override public Tuple2<Long, Double> getResult(long[] acc) { return Tuple2.of(acc[0], acc[2] == 0 ? 0.0 : (double) acc[1] / acc[2]); }
        @Override public long[] merge(long[] a, long[] b) { a[1] += b[1]; a[2] += b[2]; return a; }
    }

    /** Validated command line. */
    static final class Args {
        Schedule schedule;
        String output;
        long startMs, vehicles;
        double speedLimit;
        int parallelism;

        static Args parse(String[] argv) {
            ParameterTool p = ParameterTool.fromArgs(argv);
            Args a = new Args();
            if (p.has("rate") == p.has("trace"))
                throw new IllegalArgumentException("give exactly one of --rate or --trace; " + USAGE);
            if (p.has("rate")) {
                long rate = number(p, "rate", -1);
                if (rate <= 0) throw new IllegalArgumentException("--rate must be a positive number of events/s, got " + p.get("rate"));
                a.schedule = Schedule.constant(rate);
            } else {
                java.nio.file.Path f = java.nio.file.Path.of(p.get("trace", ""));
                if (!Files.isReadable(f) || Files.isDirectory(f))
                    throw new IllegalArgumentException("--trace: cannot read file '" + f + "'");
                try {
                    a.schedule = Schedule.fromTrace(f);
                } catch (java.io.IOException e) {
                    throw new IllegalArgumentException("--trace: cannot read file '" + f + "': " + e.getMessage());
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("--trace: " + e.getMessage());
                }
            }
            a.output = p.get("output");
            if (a.output == null || a.output.isBlank() || a.output.equals("__NO_VALUE_KEY"))
                throw new IllegalArgumentException("--output DIR is required; " + USAGE);
            a.startMs = number(p, "start", 0);
            if (a.startMs < 0) throw new IllegalArgumentException("--start must be epoch milliseconds >= 0");
            a.vehicles = number(p, "vehicles", 10_000);
            if (a.vehicles <= 0) throw new IllegalArgumentException("--vehicles must be > 0");
            a.parallelism = (int) number(p, "parallelism", 0);
            if (p.has("parallelism") && a.parallelism <= 0) throw new IllegalArgumentException("--parallelism must be > 0");
            try {
                a.speedLimit = Double.parseDouble(p.get("speed-limit", "120"));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--speed-limit must be a number, got " + p.get("speed-limit"));
            }
            return a;
        }

        private static long number(ParameterTool p, String key, long dflt) {
            if (!p.has(key)) return dflt;
            String v = p.get(key);
            try {
                return Long.parseLong(v.trim());
            } catch (RuntimeException e) {
                throw new IllegalArgumentException("--" + key + " must be an integer, got '" + v + "'");
            }
        }
    }
}
