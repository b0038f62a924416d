package io.khaos.jobs.common;

import org.apache.flink.util.ParameterTool;

/** Argument helpers: every bad value becomes an IllegalArgumentException with a one-line reason. */
public final class Cli {
    private Cli() {}

    /** An integer option, or dflt when absent. */
    public static long integer(ParameterTool p, String key, long dflt) {
        if (!p.has(key)) return dflt;
        String v = p.get(key);
        try {
            return Long.parseLong(v.trim());
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("--" + key + " must be an integer, got '" + v + "'");
        }
    }

    /** A string option that, if given, must have a value; null when absent. */
    public static String text(ParameterTool p, String key) {
        if (!p.has(key)) return null;
        String v = p.get(key);
        if (v == null || v.isBlank() || v.equals("__NO_VALUE_KEY"))
            throw new IllegalArgumentException("--" + key + " needs a value");
        return v.trim();
    }

    /** A floating-point option, or dflt when absent. */
    public static double real(ParameterTool p, String key, double dflt) {
        if (!p.has(key)) return dflt;
        String v = p.get(key);
        try {
            double d = Double.parseDouble(v.trim());
            if (Double.isNaN(d) || Double.isInfinite(d)) throw new NumberFormatException();
            return d;
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("--" + key + " must be a number, got '" + v + "'");
        }
    }
}
