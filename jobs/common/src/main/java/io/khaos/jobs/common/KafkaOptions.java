package io.khaos.jobs.common;

import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.util.ParameterTool;
import org.apache.kafka.clients.consumer.OffsetResetStrategy;

import java.io.Serializable;

/**
 * Kafka options of the Khaos jobs: {@code --bootstrap HOST:PORT --topic T [--group G]
 * [--output-topic T2] [--transactional-id-prefix P]}.
 * <ul>
 * <li>Source: offsets live in Flink's checkpoints (and are committed to group G on each completed
 * checkpoint, for lag monitoring only); a fresh start (no checkpoint/savepoint) begins at G's
 * committed offsets, else at the earliest offset.</li>
 * <li>Sink: transactional, exactly-once: records become visible to read_committed consumers when the
 * checkpoint that covers them completes.</li>
 * </ul>
 */
public final class KafkaOptions implements Serializable {
    private static final long serialVersionUID = 1L;
    /** Producer transaction timeout: under the broker's transaction.max.timeout.ms (default 15 min). */
    public static final String TRANSACTION_TIMEOUT_MS = "600000";

    public final String bootstrap;
    public final String topic;
    public final String group;
    public final String outputTopic; // null: none
    public final String transactionalIdPrefix;

    private KafkaOptions(String bootstrap, String topic, String group, String outputTopic, String prefix) {
        this.bootstrap = bootstrap;
        this.topic = topic;
        this.group = group;
        this.outputTopic = outputTopic;
        this.transactionalIdPrefix = prefix;
    }

    /** Whether the command line names a Kafka source (--topic or --group). */
    public static boolean sourceWanted(ParameterTool p) {
        return p.has("topic") || p.has("group");
    }

    /** Whether the command line names any Kafka option. */
    public static boolean anyWanted(ParameterTool p) {
        return sourceWanted(p) || p.has("bootstrap") || p.has("output-topic") || p.has("transactional-id-prefix");
    }

    /** Parses the options; jobName is the default consumer group and transactional id prefix. */
    public static KafkaOptions parse(ParameterTool p, String jobName, boolean needSource) {
        String bootstrap = Cli.text(p, "bootstrap");
        String topic = Cli.text(p, "topic");
        if (needSource && (bootstrap == null || topic == null))
            throw new IllegalArgumentException("a Kafka source needs --bootstrap HOST:PORT and --topic T");
        if (bootstrap == null)
            throw new IllegalArgumentException("--output-topic needs --bootstrap HOST:PORT (the Kafka cluster)");
        if (!needSource && topic == null && !p.has("output-topic"))
            throw new IllegalArgumentException("--bootstrap without --topic (Kafka source) or --output-topic (Kafka sink)");
        checkBootstrap(bootstrap);
        String group = p.has("group") ? Cli.text(p, "group") : jobName;
        String out = Cli.text(p, "output-topic");
        String prefix = p.has("transactional-id-prefix") ? Cli.text(p, "transactional-id-prefix")
                : group + "-" + (out == null ? "out" : out);
        return new KafkaOptions(bootstrap, topic, group, out, prefix);
    }

    private static void checkBootstrap(String b) {
        for (String hp : b.split(",")) {
            int c = hp.lastIndexOf(':');
            boolean ok = c > 0 && c < hp.length() - 1;
            if (ok) {
                try {
                    int port = Integer.parseInt(hp.substring(c + 1));
                    ok = port > 0 && port < 65536;
                } catch (NumberFormatException e) {
                    ok = false;
                }
            }
            if (!ok) throw new IllegalArgumentException("--bootstrap must be HOST:PORT[,HOST:PORT...], got '" + b + "'");
        }
    }

    /** The KafkaSource of the input topic. */
    public <T> KafkaSource<T> source(KafkaRecordDeserializationSchema<T> deserializer) {
        return KafkaSource.<T>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(topic)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST))
                .setDeserializer(deserializer)
                .setProperty("commit.offsets.on.checkpoint", "true")
                .setProperty("client.id.prefix", group)
                .build();
    }

    /** A transactional exactly-once sink of the output topic; values from valueSchema, no key. */
    public <T> KafkaSink<T> sink(SerializationSchema<T> valueSchema) {
        return KafkaSink.<T>builder()
                .setBootstrapServers(bootstrap)
                .setRecordSerializer(KafkaRecordSerializationSchema.<T>builder()
                        .setTopic(outputTopic)
                        .setValueSerializationSchema(valueSchema)
                        .build())
                .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .setTransactionalIdPrefix(transactionalIdPrefix)
                .setProperty("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
                .build();
    }
}
