package io.khaos.jobs.ysb;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class YsbTest {
    private static AdEvent parse(String json) {
        return AdEventParser.parse(json.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void parsesYsbJson() {
        AdEvent e = parse("{\"user_id\":\"u1\",\"page_id\":\"p\",\"ad_id\":\"a1\",\"ad_type\":\"banner\","
                + "\"event_type\":\"view\",\"event_time\":\"1700000000123\",\"ip_address\":\"1.2.3.4\"}");
        assertEquals("a1", e.adId);
        assertEquals("view", e.eventType);
        assertEquals(1700000000123L, e.eventTime);
        assertEquals(1700000000123L, parse("{\"ad_id\":\"a\",\"event_type\":\"click\",\"event_time\":1700000000123,\"x\":[1,{\"y\":2}]}").eventTime);
        assertNull(parse("{\"ad_id\":\"a\",\"event_type\":\"view\"}"));
        assertNull(parse("{\"ad_id\":\"a\",\"event_type\":\"view\",\"event_time\":\"soon\"}"));
        assertNull(parse("not json"));
        assertNull(parse("[1,2]"));
        assertNull(AdEventParser.parse(null));
    }

    @Test
    void campaignIdsMatchPython() {
        // uuid.UUID(bytes=hashlib.md5(s.encode()).digest(), version=3)
        assertEquals("47069b5c-0672-36f4-9b4c-d30895310cf6", Campaigns.campaignId(0, 0));
        assertEquals("c6a885f7-dd02-302d-a596-28e8bb91241b", Campaigns.adId(0, 0, 0));
        assertEquals("4370983a-d910-36a8-9a67-6719c95e63d4", Campaigns.adId(7, 3, 9));
        Map<String, String> m = Campaigns.generated(0, 100, 10).build();
        assertEquals(1000, m.size());
        assertEquals(Campaigns.campaignId(0, 0), m.get(Campaigns.adId(0, 0, 0)));
    }

    @Test
    void mappingFile() throws Exception {
        Path f = Files.createTempFile("ads", ".csv");
        Files.writeString(f, "# ad,campaign\na1,c1\n\na2,c1\n");
        assertEquals(Map.of("a1", "c1", "a2", "c1"), Campaigns.fromFile(f).build());
        Files.writeString(f, "a1\n");
        assertThrows(IllegalArgumentException.class, () -> Campaigns.fromFile(f));
        Files.delete(f);
    }

    @Test
    void args() {
        YsbJob.Args a = YsbJob.Args.parse(new String[] {"--bootstrap", "h:1", "--topic", "ads", "--output", "/o"}, "ysb");
        assertEquals("ysb", a.kafka.group);
        assertFalse(a.knobs.work());
        assertThrows(IllegalArgumentException.class, () -> YsbJob.Args.parse(new String[] {"--bootstrap", "h:1", "--topic", "ads"}, "ysb"));
        assertThrows(IllegalArgumentException.class,
                () -> YsbJob.Args.parse(new String[] {"--bootstrap", "h:1", "--topic", "ads", "--output", "o", "--campaigns", "0"}, "ysb"));
    }
}
