package io.khaos.jobs.common;

/**
 * The keyed-state size knob (--state-bytes B): every key holds a byte[B] in a ValueState that is
 * read and written back on every record of that key. The bytes are pseudo-random (SplitMix64 of
 * the key), so compression (RocksDB, snapshot compression) cannot shrink them: state = keys x B.
 */
public final class StateBlob {
    private StateBlob() {}

    /** The first value of key k: B pseudo-random bytes. */
    public static byte[] initial(long key, int bytes) {
        byte[] b = new byte[bytes];
        long x = Hashing.mix(key ^ 0x5DEECE66DL);
        for (int i = 0; i < bytes; i += 8) {
            x = Hashing.mix(x);
            for (int k = 0; k < 8 && i + k < bytes; k++) b[i + k] = (byte) (x >>> (8 * k));
        }
        return b;
    }

    /** Changes 8 bytes of b (in place) for the n-th update, so every write really differs. Returns b. */
    public static byte[] touch(byte[] b, long n) {
        if (b.length == 0) return b;
        int slots = Math.max(1, b.length / 8);
        int at = (int) Hashing.mod(n, slots) * 8;
        long v = Hashing.mix(n);
        for (int k = 0; k < 8 && at + k < b.length; k++) b[at + k] ^= (byte) (v >>> (8 * k));
        return b;
    }
}
