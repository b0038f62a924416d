package io.khaos.jobs.ysb;

import io.khaos.jobs.common.Cli;
import io.khaos.jobs.common.KafkaOptions;
import io.khaos.jobs.common.Knobs;
import io.khaos.jobs.common.LatencyMeter;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.api.common.serialization.SimpleStringEncoder;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.core.fs.Path;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.filesystem.rollingpolicies.OnCheckpointRollingPolicy;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.ParameterTool;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.Map;

/**
 * YSB-style job (Yahoo Streaming Benchmark) reading ad events from Kafka.
 *
 * <pre>
 * Kafka -> FilterViews -> [keyBy(user mod keys) -> Work (payload state, CPU)] -> keyBy(ad_id)
 *   -> CampaignJoin (ad -> campaign in keyed state) -> Latency (now - event_time)
 *   -> keyBy(campaign) -> CampaignWindow (10 s event-time tumbling count)
 *   -> AuditSink (FileSink) and/or ResultSink (transactional KafkaSink): "windowStartMs,campaignId,count"
 * </pre>
 * The Work operator exists only with --state-bytes or --cpu-us. The checkpoint interval comes from
 * the configuration.
 */
public final class YsbJob {
    static final String NAME = "ysb";
    static final String USAGE = "usage: YsbJob --bootstrap HOST:PORT --topic T [--group G]"
            + " (--output DIR | --output-topic T2 | both) [--campaigns N] [--ads-per-campaign A] [--seed S]"
            + " [--campaigns-file FILE] [--parallelism P] " + Knobs.USAGE + " [--transactional-id-prefix P]";
    static final long WINDOW_MS = 10_000;

    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        String name = env.getConfiguration().getOptional(PipelineOptions.NAME).orElse(NAME);
        Args a;
        try {
            a = Args.parse(args, name);
        } catch (IllegalArgumentException e) {
            System.err.println("ysb: " + e.getMessage());
            throw e;
        }
        if (a.parallelism > 0) env.setParallelism(a.parallelism);

        DataStream<AdEvent> views = env
                .fromSource(a.kafka.source(new KafkaAdDeserializer()),
                        WatermarkStrategy.<AdEvent>forBoundedOutOfOrderness(Duration.ofSeconds(1))
                                .withTimestampAssigner((e, ts) -> e.eventTime),
                        "Kafka")
                .uid("kafka-source")
                .filter(e -> "view".equals(e.eventType)).name("FilterViews").uid("filter-views");

        final Knobs knobs = a.knobs;
        if (knobs.work()) {
            views = views.keyBy(e -> knobs.key(e.userKey), Types.LONG)
                    .process(new Work(knobs)).name("Work").uid("work");
        }

        DataStream<WindowCount> counts = views
                .keyBy(e -> e.adId, Types.STRING)
                .process(new CampaignJoin(a.campaigns)).name("CampaignJoin").uid("campaign-join")
                .map(new Latency()).name("Latency").uid("latency")
                .keyBy(e -> e.campaignId, Types.STRING)
                .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
                .aggregate(new Count(), new Emit()).name("CampaignWindow").uid("campaign-window");

        if (a.output != null) {
            counts.sinkTo(FileSink.forRowFormat(new Path(a.output), new SimpleStringEncoder<WindowCount>("UTF-8"))
                            .withRollingPolicy(OnCheckpointRollingPolicy.build())
                            .build())
                    .name("AuditSink").uid("audit-sink");
        }
        if (a.kafka.outputTopic != null) {
            counts.sinkTo(a.kafka.sink(new LineSchema()))
                    .name("ResultSink").uid("result-sink");
        }
        env.execute(name);
    }

    /** Kafka value of a result: the line windowStartMs,campaignId,count in UTF-8. */
    static final class LineSchema implements SerializationSchema<WindowCount> {
        @Override
        public byte[] serialize(WindowCount w) { return w.toString().getBytes(StandardCharsets.UTF_8); }
    }

    /** The workload knobs: the key's payload read and rewritten, CPU burnt; forwards every view. */
    static final class Work extends KeyedProcessFunction<Long, AdEvent, AdEvent> {
        private final Knobs knobs;
        private transient Knobs.Worker worker;

        Work(Knobs knobs) { this.knobs = knobs; }

        @Override
        public void open(OpenContext ctx) { worker = knobs.open(getRuntimeContext()); }

        @Override
        public void processElement(AdEvent e, Context ctx, Collector<AdEvent> out) throws Exception {
            worker.process(ctx.getCurrentKey());
            out.collect(e);
        }
    }

    /**
     * The YSB join, from keyed state: the key is ad_id; its campaign is kept in a ValueState, filled
     * from the mapping on the ad's first view. Views of unknown ads are dropped and counted (unknownAds).
     */
    static final class CampaignJoin extends KeyedProcessFunction<String, AdEvent, CampaignEvent> {
        private final Campaigns campaigns;
        private transient Map<String, String> mapping;
        private transient ValueState<String> campaign;
        private transient Counter unknown;

        CampaignJoin(Campaigns campaigns) { this.campaigns = campaigns; }

        @Override
        public void open(OpenContext ctx) {
            mapping = campaigns.build();
            campaign = getRuntimeContext().getState(new ValueStateDescriptor<>("campaign", Types.STRING));
            unknown = getRuntimeContext().getMetricGroup().counter("unknownAds");
        }

        @Override
        public void processElement(AdEvent e, Context ctx, Collector<CampaignEvent> out) throws Exception {
            String c = campaign.value();
            if (c == null) {
                c = mapping.get(e.adId);
                if (c == null) {
                    unknown.inc();
                    return;
                }
                campaign.update(c);
            }
            out.collect(new CampaignEvent(c, e.eventTime));
        }
    }

    /** Per-record end-to-end latency at the join: now - event_time (the Latency.* gauges). */
    static final class Latency extends RichMapFunction<CampaignEvent, CampaignEvent> {
        private transient LatencyMeter meter;

        @Override
        public void open(OpenContext ctx) {
            meter = new LatencyMeter(getRuntimeContext().getMetricGroup(),
                    getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }

        @Override
        public CampaignEvent map(CampaignEvent e) {
            long now = System.currentTimeMillis();
            meter.record(now - e.eventTime, now);
            return e;
        }
    }

    static final class Count implements AggregateFunction<CampaignEvent, Long, Long> {
        @Override public Long createAccumulator() { return 0L; }
        @Override public Long add(CampaignEvent e, Long acc) { return acc + 1; }
        @Override public Long getResult(Long acc) { return acc; }
        @Override public Long merge(Long a, Long b) { return a + b; }
    }

    /**
     * Emits (window start, campaign, count) and measures YSB's own latency: emit time minus window
     * end, as a histogram windowLatencyMs (last 1000 windows) and a gauge windowLatencyLastMs.
     */
    static final class Emit extends ProcessWindowFunction<Long, WindowCount, String, TimeWindow> {
        private transient Histogram windowLatency;
        private transient volatile long last;

        @Override
        public void open(OpenContext ctx) {
            var group = getRuntimeContext().getMetricGroup();
            windowLatency = group.histogram("windowLatencyMs", new DescriptiveStatisticsHistogram(1000));
            group.gauge("windowLatencyLastMs", () -> last);
        }

        @Override
        public void process(String campaign, Context ctx, Iterable<Long> counts, Collector<WindowCount> out) {
            long l = System.currentTimeMillis() - ctx.window().getEnd();
            windowLatency.update(l);
            last = l;
            out.collect(new WindowCount(ctx.window().getStart(), campaign, counts.iterator().next()));
        }
    }

    /** Validated command line. */
    static final class Args {
        KafkaOptions kafka;
        String output;
        Campaigns campaigns;
        int parallelism;
        Knobs knobs;

        static Args parse(String[] argv, String jobName) {
            ParameterTool p = ParameterTool.fromArgs(argv);
            Args a = new Args();
            a.kafka = KafkaOptions.parse(p, jobName, true);
            a.output = Cli.text(p, "output");
            if (a.output == null && a.kafka.outputTopic == null)
                throw new IllegalArgumentException("give --output DIR and/or --output-topic T2; " + USAGE);
            if (p.has("campaigns-file")) {
                for (String k : new String[] {"campaigns", "ads-per-campaign", "seed"})
                    if (p.has(k)) throw new IllegalArgumentException("--" + k + " and --campaigns-file exclude each other");
                java.nio.file.Path f = java.nio.file.Path.of(Cli.text(p, "campaigns-file"));
                if (!Files.isReadable(f) || Files.isDirectory(f))
                    throw new IllegalArgumentException("--campaigns-file: cannot read file '" + f + "'");
                try {
                    a.campaigns = Campaigns.fromFile(f);
                } catch (java.io.IOException e) {
                    throw new IllegalArgumentException("--campaigns-file: cannot read file '" + f + "': " + e.getMessage());
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("--campaigns-file: " + e.getMessage());
                }
            } else {
                long n = Cli.integer(p, "campaigns", 100);
                long ads = Cli.integer(p, "ads-per-campaign", 10);
                if (n <= 0 || n > 1_000_000) throw new IllegalArgumentException("--campaigns must be between 1 and 1000000");
                if (ads <= 0 || ads > 1000) throw new IllegalArgumentException("--ads-per-campaign must be between 1 and 1000");
                if (n * ads > 10_000_000) throw new IllegalArgumentException("--campaigns x --ads-per-campaign must be <= 10000000");
                a.campaigns = Campaigns.generated(Cli.integer(p, "seed", 0), (int) n, (int) ads);
            }
            a.parallelism = (int) Cli.integer(p, "parallelism", 0);
            if (p.has("parallelism") && a.parallelism <= 0) throw new IllegalArgumentException("--parallelism must be > 0");
            a.knobs = Knobs.parse(p);
            return a;
        }
    }
}
