package io.khaos.jobs;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.*;

class IotVehiclesJobTest {
    private static String error(String... args) {
        return assertThrows(IllegalArgumentException.class, () -> IotVehiclesJob.Args.parse(args)).getMessage();
    }

    @Test
    void replayArgsAsBefore() {
        IotVehiclesJob.Args a = IotVehiclesJob.Args.parse(new String[] {"--rate", "100", "--output", "/tmp/o", "--start", "5"});
        assertEquals("/tmp/o", a.output);
        assertEquals(5, a.startMs);
        assertEquals(10_000, a.vehicles);
        assertNull(a.kafka);
        assertFalse(a.knobs.work());
        assertEquals(0, a.savepointSleepMs); // no test knob: no SavepointSleep operator
        assertEquals(12000, IotVehiclesJob.Args.parse(new String[] {"--rate", "1", "--output", "o", "--savepoint-sleep-ms", "12000"}).savepointSleepMs);
        assertEquals("--savepoint-sleep-ms must be >= 0", error("--rate", "1", "--output", "x", "--savepoint-sleep-ms", "-1"));
        assertTrue(error("--output", "/tmp/o").startsWith("give exactly one of --rate or --trace; usage:"));
        assertTrue(error("--rate", "1").startsWith("--output DIR is required; usage:"));
        assertEquals("--rate must be a positive number of events/s, got 0", error("--rate", "0", "--output", "x"));
        assertEquals("--vehicles must be an integer, got 'x'", error("--rate", "1", "--output", "x", "--vehicles", "x"));
        assertEquals("--trace: cannot read file '/nonexistent'", error("--trace", "/nonexistent", "--output", "x"));
    }

    @Test
    void kafkaArgs() {
        IotVehiclesJob.Args a = IotVehiclesJob.Args.parse(new String[] {"--bootstrap", "h:9092", "--topic", "t", "--output", "/o"}, "copy-1");
        assertEquals("copy-1", a.kafka.group);
        assertEquals("t", a.kafka.topic);
        a = IotVehiclesJob.Args.parse(new String[] {"--bootstrap", "h:9092", "--topic", "t", "--output-topic", "ids", "--keys", "5",
                "--state-bytes", "100", "--cpu-us", "3"}, "x");
        assertNull(a.output);
        assertEquals("ids", a.kafka.outputTopic);
        assertEquals(5, a.knobs.keys);
        a = IotVehiclesJob.Args.parse(new String[] {"--rate", "5", "--bootstrap", "h:9092", "--output-topic", "ids"}, "x");
        assertNotNull(a.schedule);
        assertNull(a.kafka.topic);
        assertTrue(error("--rate", "1", "--bootstrap", "h:1", "--topic", "t", "--output", "o").startsWith("give exactly one source"));
        assertEquals("--skew is for the synthetic replay (--rate/--trace), not for a Kafka source",
                error("--bootstrap", "h:1", "--topic", "t", "--output", "o", "--skew", "1"));
        assertTrue(error("--bootstrap", "h:1", "--topic", "t").startsWith("--output DIR is required"));
        assertEquals("--output-topic needs --bootstrap HOST:PORT (the Kafka cluster)", error("--rate", "1", "--output-topic", "ids"));
    }

    @Test
    void csvRecords() {
        VehicleEvent e = KafkaVehicleDeserializer.parse("7,3,88,4,1700000000000".getBytes(StandardCharsets.UTF_8));
        assertEquals(7, e.id);
        assertEquals(3, e.vehicleId);
        assertEquals(88, e.speed);
        assertEquals(4, e.area);
        assertEquals(1700000000000L, e.timestamp);
        assertNull(KafkaVehicleDeserializer.parse("7,3,88,4".getBytes(StandardCharsets.UTF_8)));
        assertNull(KafkaVehicleDeserializer.parse("a,3,88,4,5".getBytes(StandardCharsets.UTF_8)));
        assertNull(KafkaVehicleDeserializer.parse(null));
    }

    @Test
    void skew() {
        // skew 0: exactly the old events
        for (long i = 0; i < 1000; i++) assertEquals(i % 100, VehicleEvent.of(i, 100, 0.0, 0).vehicleId);
        // skew 1.2 over 1000 vehicles: vehicle 0 far hotter than the median vehicle, all in range
        long[] c = new long[1000];
        for (long i = 0; i < 200_000; i++) {
            VehicleEvent e = VehicleEvent.of(i, 1000, 1.2, 0);
            assertTrue(e.vehicleId >= 0 && e.vehicleId < 1000);
            assertEquals(VehicleEvent.of(i, 1000, 0.0, 0).speed, e.speed);
            c[(int) e.vehicleId]++;
        }
        assertTrue(c[0] > 50 * Math.max(1, c[500]), "hot " + c[0] + " median " + c[500]);
    }
}
