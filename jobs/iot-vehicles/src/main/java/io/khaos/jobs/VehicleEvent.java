package io.khaos.jobs;

/** One vehicle reading. A Flink POJO (public fields, no-arg constructor). */
public class VehicleEvent {
    public long id;         // event index i in the replayed workload
    public long vehicleId;  // i mod vehicles
    public int speed;       // km/h, 30..150, pseudo-random from i
    public int area;        // 0..9, pseudo-random from i
    public long timestamp;  // due time of the event (epoch ms) = its event time

    public VehicleEvent() {}

    /** Deterministic event i; every field is a pure function of (i, vehicles, dueMs). */
    public static VehicleEvent of(long i, long vehicles, long dueMs) {
        VehicleEvent e = new VehicleEvent();
        long h = mix(i);
        e.id = i;
        e.vehicleId = i % vehicles;
        e.speed = 30 + (int) ((h >>> 1) % 121);
        e.area = (int) ((h >>> 33) % 10);
        e.timestamp = dueMs;
        return e;
    }

    /** SplitMix64 finaliser: a cheap, well-mixed hash of i. */
    static long mix(long z) {
        z += 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
