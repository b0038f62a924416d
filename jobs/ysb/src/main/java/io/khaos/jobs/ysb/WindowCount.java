package io.khaos.jobs.ysb;

/** Views of one campaign in one 10 s event-time window. A Flink POJO. */
public class WindowCount {
    public long windowStartMs;
    public String campaignId;
    public long count;

    public WindowCount() {}

    public WindowCount(long windowStartMs, String campaignId, long count) {
        this.windowStartMs = windowStartMs;
        this.campaignId = campaignId;
        this.count = count;
    }

    /** The output line (file and Kafka): {@code windowStartMs,campaignId,count}. */
    @Override
    public String toString() { return windowStartMs + "," + campaignId + "," + count; }
}
