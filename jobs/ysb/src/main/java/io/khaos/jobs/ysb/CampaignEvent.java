package io.khaos.jobs.ysb;

/** A view joined with its campaign. A Flink POJO. */
public class CampaignEvent {
    public String campaignId;
    public long eventTime;

    public CampaignEvent() {}

    public CampaignEvent(String campaignId, long eventTime) {
        this.campaignId = campaignId;
        this.eventTime = eventTime;
    }
}
