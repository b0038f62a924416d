package io.khaos.jobs;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.metrics.Counter;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

import java.nio.charset.StandardCharsets;

/**
 * Kafka record value (UTF-8 CSV, no header) {@code id,vehicleId,speed,area,eventTimeMs} ->
 * VehicleEvent (timestamp = eventTimeMs). The key and the Kafka timestamp are ignored. A record that
 * does not parse is skipped and counted ({@code malformed}). Besides Flink's own KafkaSource metrics
 * it publishes, on the source's metric group, {@code emitted} (records read) and
 * {@code eventTimeLagMs} (now minus eventTimeMs of the last record read, when it was read).
 */
final class KafkaVehicleDeserializer implements KafkaRecordDeserializationSchema<VehicleEvent> {
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
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<VehicleEvent> out) {
        VehicleEvent e = parse(record.value());
        if (e == null) {
            if (malformed != null) malformed.inc();
            return;
        }
        if (emitted != null) {
            emitted.inc();
            lagMs = Math.max(0L, System.currentTimeMillis() - e.timestamp);
        }
        out.collect(e);
    }

    /** The event in value, or null if it is not 5 comma-separated integers. */
    static VehicleEvent parse(byte[] value) {
        if (value == null) return null;
        String[] f = new String(value, StandardCharsets.UTF_8).trim().split(",", -1);
        if (f.length != 5) return null;
        try {
            VehicleEvent e = new VehicleEvent();
            e.id = Long.parseLong(f[0].trim());
            e.vehicleId = Long.parseLong(f[1].trim());
            e.speed = Integer.parseInt(f[2].trim());
            e.area = Integer.parseInt(f[3].trim());
            e.timestamp = Long.parseLong(f[4].trim());
            return e;
        } catch (NumberFormatException ex) {
            return null;
        }
    }

    @Override
    public TypeInformation<VehicleEvent> getProducedType() { return TypeInformation.of(VehicleEvent.class); }
}
