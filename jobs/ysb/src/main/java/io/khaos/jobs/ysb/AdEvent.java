package io.khaos.jobs.ysb;

/** The fields of a YSB ad event the job uses. A Flink POJO. */
public class AdEvent {
    public long userKey;      // Hashing.hash(user_id): the key field of the workload knobs
    public String adId;       // ad_id
    public String eventType;  // event_type: "view", "click" or "purchase"
    public long eventTime;    // event_time, epoch ms

    public AdEvent() {}
}
