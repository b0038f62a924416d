package io.khaos.jobs;

/** One vehicle reading. A Flink POJO (public fields, no-arg constructor). */
public class VehicleEvent {
    public long id;         // event index i in the replayed workload (Kafka: the record's id field)
    public long vehicleId;  // i mod vehicles, or Zipf-like with --skew (Kafka: the record's vehicleId field)
    public int speed;       // km/h, 30..150, pseudo-random from i
    public int area;        // 0..9, pseudo-random from i
    public long timestamp;  // due time of the event (epoch ms) = its event time

    public VehicleEvent() {}

    /** Deterministic event i; every field is a pure function of (i, vehicles, dueMs). */
    public static VehicleEvent of(long i, long vehicles, long dueMs) {
        return of(i, vehicles, 0.0, dueMs);
    }

    /**
     * Deterministic event i with vehicle skew: skew 0 gives vehicle = i mod vehicles (uniform);
     * skew s > 0 draws the vehicle from a Zipf-like law P(rank r) ~ (r+1)^-s over [0, vehicles)
     * (vehicle 0 the hottest), as a pure function of i.
     */
    public static VehicleEvent of(long i, long vehicles, double skew, long dueMs) {
        VehicleEvent e = new VehicleEvent();
        long h = mix(i);
        e.id = i;
        e.vehicleId = skew > 0 ? zipf(mix(h), vehicles, skew) : i % vehicles;
        e.speed = 30 + (int) ((h >>> 1) % 121);
        e.area = (int) ((h >>> 33) % 10);
        e.timestamp = dueMs;
        return e;
    }

    /**
     * Rank in [0, n) with density ~ x^-s (the continuous bounded power law on [1, n+1) whose
     * inverse CDF is closed-form), from the 64-bit hash h.
     */
    static long zipf(long h, long n, double s) {
        double u = ((h >>> 11) + 1) * 0x1.0p-53; // (0, 1]
        double top = n + 1.0, x;
        if (Math.abs(s - 1.0) < 1e-9) {
            x = Math.pow(top, u);
        } else {
            double a = 1.0 - s;
            x = Math.pow(1.0 + u * (Math.pow(top, a) - 1.0), 1.0 / a);
        }
        long r = (long) Math.floor(x) - 1;
        return Math.max(0, Math.min(n - 1, r));
    }

    /** SplitMix64 finaliser: a cheap, well-mixed hash of i. */
    static long mix(long z) {
        z += 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
