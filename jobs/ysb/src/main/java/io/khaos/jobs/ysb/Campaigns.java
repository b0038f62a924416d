package io.khaos.jobs.ysb;

import java.io.IOException;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.UUID;

/**
 * The ad -> campaign mapping of YSB: either generated from a seed (N campaigns x A ads, ids are
 * name-based UUIDs, reproducible in any language) or read from a CSV file {@code ad_id,campaign_id}.
 * <pre>
 * campaign c:   UUID.nameUUIDFromBytes("ysb:SEED:campaign:c")   (c = 0..N-1)
 * ad j of c:    UUID.nameUUIDFromBytes("ysb:SEED:ad:c:j")       (j = 0..A-1)
 * </pre>
 * Python: {@code uuid.UUID(bytes=hashlib.md5(s.encode()).digest(), version=3)}.
 */
final class Campaigns implements Serializable {
    private static final long serialVersionUID = 1L;
    private final long seed;
    private final int campaigns, adsPerCampaign;
    private final HashMap<String, String> fromFile; // null: generated

    private Campaigns(long seed, int campaigns, int adsPerCampaign, HashMap<String, String> fromFile) {
        this.seed = seed;
        this.campaigns = campaigns;
        this.adsPerCampaign = adsPerCampaign;
        this.fromFile = fromFile;
    }

    static Campaigns generated(long seed, int campaigns, int adsPerCampaign) {
        return new Campaigns(seed, campaigns, adsPerCampaign, null);
    }

    /** Reads ad_id,campaign_id lines (blank and '#' lines skipped) on the client, at submit time. */
    static Campaigns fromFile(Path file) throws IOException {
        HashMap<String, String> m = new HashMap<>();
        int n = 0;
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            n++;
            String t = line.trim();
            if (t.isEmpty() || t.startsWith("#")) continue;
            String[] f = t.split(",", -1);
            if (f.length != 2 || f[0].isBlank() || f[1].isBlank())
                throw new IllegalArgumentException(file + " line " + n + ": expected ad_id,campaign_id, got '" + t + "'");
            m.put(f[0].trim(), f[1].trim());
        }
        if (m.isEmpty()) throw new IllegalArgumentException(file + ": no ad_id,campaign_id lines");
        return new Campaigns(0, 0, 0, m);
    }

    static String campaignId(long seed, int c) {
        return uuid("ysb:" + seed + ":campaign:" + c);
    }

    static String adId(long seed, int c, int j) {
        return uuid("ysb:" + seed + ":ad:" + c + ":" + j);
    }

    private static String uuid(String name) {
        return UUID.nameUUIDFromBytes(name.getBytes(StandardCharsets.UTF_8)).toString();
    }

    /** The whole mapping (built on the task: a generated one does not travel in the job graph). */
    Map<String, String> build() {
        if (fromFile != null) return fromFile;
        Map<String, String> m = new HashMap<>(campaigns * adsPerCampaign * 2);
        for (int c = 0; c < campaigns; c++) {
            String cid = campaignId(seed, c);
            for (int j = 0; j < adsPerCampaign; j++) m.put(adId(seed, c, j), cid);
        }
        return m;
    }

    @Override
    public String toString() {
        return fromFile != null ? fromFile.size() + " ads from a file"
                : campaigns + " campaigns x " + adsPerCampaign + " ads, seed " + seed;
    }
}
