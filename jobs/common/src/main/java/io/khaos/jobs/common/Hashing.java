package io.khaos.jobs.common;

import java.nio.charset.StandardCharsets;

/** Small deterministic hashes shared by the jobs (and reproduced by the Python producers). */
public final class Hashing {
    private Hashing() {}

    /** SplitMix64 finaliser: a cheap, well-mixed hash of z. */
    public static long mix(long z) {
        z += 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** 64-bit FNV-1a of the UTF-8 bytes of s, then SplitMix64 (so nearby strings spread well). */
    public static long hash(String s) {
        long h = 0xcbf29ce484222325L;
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            h ^= (b & 0xff);
            h *= 0x100000001b3L;
        }
        return mix(h);
    }

    /** k mod n in [0, n) for any k (also negative), n > 0. */
    public static long mod(long k, long n) {
        return Math.floorMod(k, n);
    }
}
