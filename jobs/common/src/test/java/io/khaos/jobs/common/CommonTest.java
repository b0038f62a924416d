package io.khaos.jobs.common;

import org.apache.flink.util.ParameterTool;
import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;

import static org.junit.jupiter.api.Assertions.*;

class CommonTest {
    @Test
    void stateBlobIsDeterministicAndChangesOnTouch() {
        byte[] a = StateBlob.initial(42, 100), b = StateBlob.initial(42, 100);
        assertArrayEquals(a, b);
        assertEquals(100, a.length);
        assertFalse(java.util.Arrays.equals(a, StateBlob.initial(43, 100)));
        byte[] before = a.clone();
        StateBlob.touch(a, 7);
        assertFalse(java.util.Arrays.equals(before, a));
        assertEquals(0, StateBlob.touch(new byte[0], 3).length);
        assertEquals(5, StateBlob.touch(StateBlob.initial(1, 5), 3).length); // shorter than 8 bytes
    }

    @Test
    void knobsParseAndValidate() {
        Knobs k = Knobs.parse(ParameterTool.fromArgs(new String[] {"--keys", "10", "--state-bytes", "1024", "--cpu-us", "50"}));
        assertEquals(10, k.keys);
        assertEquals(1024, k.stateBytes);
        assertEquals(50, k.cpuUs);
        assertTrue(k.work());
        assertEquals(3, k.key(13));
        assertEquals(7, k.key(-3));
        Knobs none = Knobs.parse(ParameterTool.fromArgs(new String[0]));
        assertFalse(none.work());
        assertEquals(123456789L, none.key(123456789L));
        assertThrows(IllegalArgumentException.class, () -> Knobs.parse(ParameterTool.fromArgs(new String[] {"--keys", "0"})));
        assertThrows(IllegalArgumentException.class, () -> Knobs.parse(ParameterTool.fromArgs(new String[] {"--state-bytes", "-1"})));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Knobs.parse(ParameterTool.fromArgs(new String[] {"--cpu-us", "x"})));
        assertEquals("--cpu-us must be an integer, got 'x'", e.getMessage());
    }

    @Test
    void cpuBurnerUsesThreadCpuTime() {
        var threads = ManagementFactory.getThreadMXBean();
        CpuBurner b = new CpuBurner(2000); // 2 ms per call
        long t0 = threads.getCurrentThreadCpuTime();
        for (int i = 0; i < 50; i++) b.burn();
        long used = threads.getCurrentThreadCpuTime() - t0;
        assertTrue(used >= 100_000_000L, "used " + used + " ns");
        assertTrue(used < 200_000_000L, "used " + used + " ns");
        assertFalse(new CpuBurner(0).enabled());
        CpuBurner w = new CpuBurner(2000, true);
        long t1 = System.nanoTime();
        for (int i = 0; i < 50; i++) w.burn();
        assertTrue(System.nanoTime() - t1 >= 100_000_000L);
        assertTrue(Knobs.parse(ParameterTool.fromArgs(new String[] {"--cpu-us", "5", "--cpu-clock", "wall"})).cpuWall);
        assertThrows(IllegalArgumentException.class,
                () -> Knobs.parse(ParameterTool.fromArgs(new String[] {"--cpu-clock", "sun"})));
    }

    @Test
    void sleepClockWaitsWithoutCpu() {
        var threads = ManagementFactory.getThreadMXBean();
        CpuBurner s = new CpuBurner(200, CpuBurner.Clock.SLEEP); // 200 us per call, parked every >= 1 ms owed
        long cpu0 = threads.getCurrentThreadCpuTime(), t0 = System.nanoTime();
        for (int i = 0; i < 1000; i++) s.burn();
        long wall = System.nanoTime() - t0, cpu = threads.getCurrentThreadCpuTime() - cpu0;
        assertTrue(wall >= 198_000_000L, "waited " + wall + " ns"); // 200 ms owed, at most 1 ms left owed
        assertTrue(wall < 400_000_000L, "waited " + wall + " ns");
        assertTrue(cpu < wall / 4, "cpu " + cpu + " ns of " + wall);
        Knobs k = Knobs.parse(ParameterTool.fromArgs(new String[] {"--cpu-us", "5", "--cpu-clock", "sleep"}));
        assertTrue(k.cpuSleep);
        assertFalse(k.cpuWall);
        assertEquals(CpuBurner.Clock.SLEEP, k.clock());
    }

    @Test
    void kafkaOptions() {
        KafkaOptions o = KafkaOptions.parse(ParameterTool.fromArgs(new String[] {"--bootstrap", "10.0.0.1:9092", "--topic", "in"}), "job", true);
        assertEquals("job", o.group);
        assertNull(o.outputTopic);
        o = KafkaOptions.parse(ParameterTool.fromArgs(new String[] {"--bootstrap", "h:1", "--topic", "in", "--group", "g", "--output-topic", "out"}), "job", true);
        assertEquals("g", o.group);
        assertEquals("g-out", o.transactionalIdPrefix);
        assertThrows(IllegalArgumentException.class,
                () -> KafkaOptions.parse(ParameterTool.fromArgs(new String[] {"--bootstrap", "nohost", "--topic", "in"}), "job", true));
        assertThrows(IllegalArgumentException.class,
                () -> KafkaOptions.parse(ParameterTool.fromArgs(new String[] {"--topic", "in"}), "job", true));
        assertThrows(IllegalArgumentException.class,
                () -> KafkaOptions.parse(ParameterTool.fromArgs(new String[] {"--bootstrap", "h:99999", "--topic", "in"}), "job", true));
    }
}
