package io.khaos.jobs.ysb;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.metrics.Counter;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Kafka record value (YSB JSON) -> AdEvent. Unparsable records are skipped and counted
 * ({@code malformed}); {@code emitted} counts records read and {@code eventTimeLagMs} is now minus
 * event_time of the last record read, when it was read.
 */
final class KafkaAdDeserializer implements KafkaRecordDeserializationSchema<AdEvent> {
    private static final long serialVersionUID = 1L;
    private transient Counter emitted, malformed;
    private transient volatile long lagMs;

    @Override
    public void open(DeserializationSchema.InitializationContext ctx) {
        emitted = ctx.getMetricGroup().counter("emitted");
        malformed = ctx.getMetricGroup().counter("malformed");
        ctx.getMetricGroup().gauge("eventTimeLagMs", () -> lagMs);
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<AdEvent> out) {
        AdEvent e = AdEventParser.parse(record.value());
        if (e == null) {
            if (malformed != null) malformed.inc();
            return;
        }
        if (emitted != null) {
            emitted.inc();
            lagMs = Math.max(0L, System.currentTimeMillis() - e.eventTime);
        }
        out.collect(e);
    }

    @Override
    public TypeInformation<AdEvent> getProducedType() { return TypeInformation.of(AdEvent.class); }
}
