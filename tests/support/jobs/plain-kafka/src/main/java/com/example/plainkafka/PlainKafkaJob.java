package com.example.plainkafka;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.ParameterTool;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetResetStrategy;

import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * Counts records per key in 10 s event-time windows: Kafka in, Kafka out, nothing else.
 *
 * <p>Input: any records; key = the record key (UTF-8) if present, else the value up to its first
 * comma; event time = the Kafka record timestamp. Output (transactional, exactly-once): key = the
 * key, value = {@code key,windowStartMs,windowEndMs,count}.
 *
 * <p>usage: PlainKafkaJob --bootstrap HOST:PORT --input-topic IN --output-topic OUT [--group G]
 */
public class PlainKafkaJob {
    public static void main(String[] args) throws Exception {
        ParameterTool params = ParameterTool.fromArgs(args);
        String bootstrap = params.getRequired("bootstrap");
        String input = params.getRequired("input-topic");
        String output = params.getRequired("output-topic");
        String group = params.get("group", "plain-kafka");

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();

        KafkaSource<Tuple2<String, Long>> source = KafkaSource.<Tuple2<String, Long>>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(input)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST))
                .setDeserializer(new KeyOf())
                .build();

        KafkaSink<Tuple2<String, String>> sink = KafkaSink.<Tuple2<String, String>>builder()
                .setBootstrapServers(bootstrap)
                .setRecordSerializer(KafkaRecordSerializationSchema.<Tuple2<String, String>>builder()
                        .setTopic(output)
                        .setKeySerializationSchema(new Field(0))
                        .setValueSerializationSchema(new Field(1))
                        .build())
                .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .setTransactionalIdPrefix(group + "-" + output)
                .setProperty("transaction.timeout.ms", "600000")
                .build();

        env.fromSource(source, WatermarkStrategy.forBoundedOutOfOrderness(Duration.ofSeconds(1)), "Kafka Source")
                .keyBy(t -> t.f0, Types.STRING)
                .window(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                .aggregate(new CountRecords(), new ToLine())
                .name("Count per key")
                .sinkTo(sink)
                .name("Kafka Sink");

        env.execute("plain-kafka");
    }

    /** One field of a (key, line) pair as UTF-8 bytes. */
    static class Field implements SerializationSchema<Tuple2<String, String>> {
        private final int index;

        Field(int index) { this.index = index; }

        @Override
        public byte[] serialize(Tuple2<String, String> t) {
            return ((String) t.getField(index)).getBytes(StandardCharsets.UTF_8);
        }
    }

    /** (key, 1) from a Kafka record. */
    static class KeyOf implements KafkaRecordDeserializationSchema<Tuple2<String, Long>> {
        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Tuple2<String, Long>> out) {
            String key;
            if (record.key() != null) {
                key = new String(record.key(), StandardCharsets.UTF_8);
            } else {
                String value = record.value() == null ? "" : new String(record.value(), StandardCharsets.UTF_8);
                int comma = value.indexOf(',');
                key = comma < 0 ? value : value.substring(0, comma);
            }
            out.collect(Tuple2.of(key, 1L));
        }

        @Override
        public org.apache.flink.api.common.typeinfo.TypeInformation<Tuple2<String, Long>> getProducedType() {
            return Types.TUPLE(Types.STRING, Types.LONG);
        }
    }

    static class CountRecords implements AggregateFunction<Tuple2<String, Long>, Long, Long> {
        public Long createAccumulator() { return 0L; }
        public Long add(Tuple2<String, Long> value, Long acc) { return acc + value.f1; }
        public Long getResult(Long acc) { return acc; }
        public Long merge(Long a, Long b) { return a + b; }
    }

    static class ToLine extends ProcessWindowFunction<Long, Tuple2<String, String>, String, TimeWindow> {
        @Override
        public void process(String key, Context ctx, Iterable<Long> counts, Collector<Tuple2<String, String>> out) {
            long count = counts.iterator().next();
            out.collect(Tuple2.of(key, key + "," + ctx.window().getStart() + "," + ctx.window().getEnd() + "," + count));
        }
    }
}
