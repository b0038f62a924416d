package io.khaos.jobs;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringEncoder;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.filesystem.rollingpolicies.OnCheckpointRollingPolicy;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.util.Collector;
import org.apache.flink.util.ParameterTool;

import io.khaos.jobs.common.Cli;
import io.khaos.jobs.common.KafkaOptions;
import io.khaos.jobs.common.Knobs;
import io.khaos.jobs.common.LatencyMeter;

import java.nio.file.Files;
import java.time.Duration;

/**
 * IoT-vehicles benchmark job.
 *
 * <pre>
 * Replay|Kafka -+-> AreaFilter -> keyBy(vehicle) -> SpeedWindow (5 s / 1 s, avg speed) -> Speeding -> Alerts
 *               +-> keyBy(vehicle [mod keys]) -> VehicleState (ValueState [+ payload, CPU]) -> Latency (e2eLatencyMs)
 *                     -> AuditSink (ids, FileSink) and/or AuditKafkaSink (ids, transactional KafkaSink)
 * </pre>
 *
 * The checkpoint interval is left to the configuration (execution.checkpointing.interval).
 */
public final class IotVehiclesJob {
    static final String USAGE = "usage: IotVehiclesJob (--rate EVENTS_PER_S | --trace FILE | --bootstrap HOST:PORT --topic T [--group G])"
            + " (--output DIR | --output-topic T2 | both) [--start EPOCH_MS] [--vehicles N] [--skew S] [--speed-limit KMH]"
            + " [--parallelism P] " + Knobs.USAGE + " [--transactional-id-prefix P]";
    static final String NAME = "iot-vehicles";

    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        // pipeline.name (set per job by the submitter) wins; the deploy playbook finds the job by it
        String name = env.getConfiguration().getOptional(PipelineOptions.NAME).orElse(NAME);
        Args a;
        try {
            a = Args.parse(args, name);
        } catch (IllegalArgumentException e) {
            System.err.println("iot-vehicles: " + e.getMessage()); // the one-line reason
            throw e;
        }
        if (a.parallelism > 0) { // else the cluster's parallelism.default (Replay always runs 1 subtask)
            env.setParallelism(a.parallelism);
        }

        WatermarkStrategy<VehicleEvent> watermarks = WatermarkStrategy
                .<VehicleEvent>forBoundedOutOfOrderness(Duration.ofSeconds(1))
                .withTimestampAssigner((e, ts) -> e.timestamp);
        DataStream<VehicleEvent> events;
        boolean replay = a.kafka == null || a.kafka.topic == null;
        if (replay) {
            events = env.fromSource(new ReplaySource(a.schedule, a.vehicles, a.skew, a.startMs), watermarks, "Replay")
                    .uid("replay").setParallelism(1);
        } else { // the job's parallelism
            events = env.fromSource(a.kafka.source(new KafkaVehicleDeserializer()), watermarks, "Kafka")
                    .uid("kafka-source");
        }

        // Analytics branch: average speed per vehicle over sliding event-time windows.
        final double limit = a.speedLimit;
        SingleOutputStreamOperator<VehicleEvent> moving = events.filter(e -> e.area != 0).name("AreaFilter").uid("area-filter");
        if (replay) moving.setParallelism(1); // chained to the source (with Kafka: the source's parallelism, chained too)
        moving.keyBy(e -> e.vehicleId, Types.LONG)
                .window(SlidingEventTimeWindows.of(Duration.ofSeconds(5), Duration.ofSeconds(1)))
                .aggregate(new AvgSpeed()).name("SpeedWindow").uid("speed-window")
                .filter(t -> t.f1 > limit).name("Speeding").uid("speeding")
                .sinkTo(new DiscardingSink<>()).name("Alerts").uid("alerts");

        // Audit branch: keyed state (+ the workload knobs), latency measurement, exactly-once id log.
        final Knobs knobs = a.knobs;
        DataStream<Long> ids = (knobs.keys > 0
                        ? events.keyBy(e -> knobs.key(e.vehicleId), Types.LONG)
                        : events.keyBy(e -> e.vehicleId, Types.LONG))
                .process(new VehicleState(knobs)).name("VehicleState").uid(VehicleState.UID)
                .map(new Latency()).name("Latency").uid("latency");
        if (a.savepointSleepMs > 0) { // test knob: slow savepoints (slow stops); absent, the graph is as before
            ids = ids.transform("SavepointSleep", Types.LONG, new SavepointSleep(a.savepointSleepMs)).uid("savepoint-sleep");
        }
        if (a.output != null) {
            ids.sinkTo(FileSink.forRowFormat(new Path(a.output), new SimpleStringEncoder<Long>("UTF-8"))
                            .withRollingPolicy(OnCheckpointRollingPolicy.build()) // commit on every checkpoint
                            .build())
                    .name("AuditSink").uid("audit-sink");
        }
        if (a.kafka != null && a.kafka.outputTopic != null) { // one record per id, value = decimal id
            ids.sinkTo(a.kafka.sink(new IdSchema()))
                    .name("AuditKafkaSink").uid("audit-kafka-sink");
        }

        env.execute(name);
    }

    /**
     * Per-vehicle state (events seen, last speed); forwards every event. With --state-bytes /
     * --cpu-us it also reads and rewrites the key's payload and burns CPU on every event.
     */
    static final class VehicleState extends KeyedProcessFunction<Long, VehicleEvent, VehicleEvent> {
        static final String UID = "vehicle-state";
        private final Knobs knobs;
        private transient ValueState<Tuple2<Long, Integer>> seen; // (count, last speed)
        private transient Knobs.Worker work; // null: no knob asks for work

        VehicleState(Knobs knobs) { this.knobs = knobs; }

        /** (events seen, last speed) of a vehicle; the state bootstrap writes the same one. */
        static ValueStateDescriptor<Tuple2<Long, Integer>> seenState() {
            return new ValueStateDescriptor<>("seen", Types.TUPLE(Types.LONG, Types.INT));
        }

        @Override
        public void open(OpenContext ctx) {
            seen = getRuntimeContext().getState(seenState());
            work = knobs.work() ? knobs.open(getRuntimeContext()) : null;
        }

        @Override
        public void processElement(VehicleEvent e, Context ctx, Collector<VehicleEvent> out) throws Exception {
            Tuple2<Long, Integer> s = seen.value();
            seen.update(Tuple2.of(s == null ? 1L : s.f0 + 1, e.speed));
            if (work != null) work.process(ctx.getCurrentKey());
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
        private transient LatencyMeter meter;

        @Override
        public void open(OpenContext ctx) {
            meter = new LatencyMeter(getRuntimeContext().getMetricGroup(),
                    getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }

        @Override
        public Long map(VehicleEvent e) {
            long now = System.currentTimeMillis();
            meter.record(now - e.timestamp, now);
            return e.id;
        }
    }

    /** Kafka value of an audit record: the decimal id in UTF-8 (a named class: the sink infers its type). */
    static final class IdSchema implements SerializationSchema<Long> {
        @Override
        public byte[] serialize(Long id) { return Long.toString(id).getBytes(java.nio.charset.StandardCharsets.UTF_8); }
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
        Schedule schedule;      // Replay only
        KafkaOptions kafka;     // null: no Kafka source and no Kafka sink
        String output;          // null: no file sink (then kafka.outputTopic is set)
        long startMs, vehicles;
        double speedLimit, skew;
        int parallelism;
        long savepointSleepMs;  // test knob --savepoint-sleep-ms (0: none)
        Knobs knobs;

        static Args parse(String[] argv) {
            return parse(argv, NAME);
        }

        /** jobName: the default Kafka consumer group (and transactional id prefix). */
        static Args parse(String[] argv, String jobName) {
            ParameterTool p = ParameterTool.fromArgs(argv);
            Args a = new Args();
            if (KafkaOptions.sourceWanted(p)) {
                if (p.has("rate") || p.has("trace"))
                    throw new IllegalArgumentException("give exactly one source: --rate, --trace or --bootstrap/--topic; " + USAGE);
                for (String k : new String[] {"start", "vehicles", "skew"})
                    if (p.has(k))
                        throw new IllegalArgumentException("--" + k + " is for the synthetic replay (--rate/--trace), not for a Kafka source");
                a.kafka = KafkaOptions.parse(p, jobName, true);
            } else {
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
                if (KafkaOptions.anyWanted(p)) a.kafka = KafkaOptions.parse(p, jobName, false);
            }
            a.output = p.get("output");
            boolean toKafka = a.kafka != null && a.kafka.outputTopic != null;
            if (p.has("output") || !toKafka) {
                if (a.output == null || a.output.isBlank() || a.output.equals("__NO_VALUE_KEY"))
                    throw new IllegalArgumentException("--output DIR is required; " + USAGE);
            }
            a.startMs = number(p, "start", 0);
            if (a.startMs < 0) throw new IllegalArgumentException("--start must be epoch milliseconds >= 0");
            a.vehicles = number(p, "vehicles", 10_000);
            if (a.vehicles <= 0) throw new IllegalArgumentException("--vehicles must be > 0");
            a.skew = Cli.real(p, "skew", 0.0);
            if (a.skew < 0 || a.skew > 10) throw new IllegalArgumentException("--skew must be between 0 and 10, got " + p.get("skew"));
            a.parallelism = (int) number(p, "parallelism", 0);
            if (p.has("parallelism") && a.parallelism <= 0) throw new IllegalArgumentException("--parallelism must be > 0");
            try {
                a.speedLimit = Double.parseDouble(p.get("speed-limit", "120"));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--speed-limit must be a number, got " + p.get("speed-limit"));
            }
            a.knobs = Knobs.parse(p);
            a.savepointSleepMs = number(p, "savepoint-sleep-ms", 0);
            if (a.savepointSleepMs < 0) throw new IllegalArgumentException("--savepoint-sleep-ms must be >= 0");
            return a;
        }

        private static long number(ParameterTool p, String key, long dflt) {
            return Cli.integer(p, key, dflt);
        }
    }
}
