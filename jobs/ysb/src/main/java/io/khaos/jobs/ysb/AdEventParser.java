package io.khaos.jobs.ysb;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;

import io.khaos.jobs.common.Hashing;

import java.io.IOException;

/**
 * Parses one YSB event, a flat JSON object such as
 * {@code {"user_id":"...","page_id":"...","ad_id":"...","ad_type":"banner","event_type":"view",
 * "event_time":"1700000000000","ip_address":"1.2.3.4"}}. event_time is epoch ms as a string (as
 * YSB writes it) or a number. Other fields are read past. Returns null for anything else.
 */
final class AdEventParser {
    private static final JsonFactory JSON = new JsonFactory();

    private AdEventParser() {}

    static AdEvent parse(byte[] value) {
        if (value == null) return null;
        String user = null, ad = null, type = null;
        long time = -1;
        try (JsonParser p = JSON.createParser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) return null;
            for (JsonToken t = p.nextToken(); t != JsonToken.END_OBJECT; t = p.nextToken()) {
                if (t != JsonToken.FIELD_NAME) return null;
                String field = p.currentName();
                JsonToken v = p.nextToken();
                if (v == JsonToken.START_OBJECT || v == JsonToken.START_ARRAY) {
                    p.skipChildren();
                    continue;
                }
                switch (field) {
                    case "user_id": user = p.getValueAsString(); break;
                    case "ad_id": ad = p.getValueAsString(); break;
                    case "event_type": type = p.getValueAsString(); break;
                    case "event_time":
                        if (v == JsonToken.VALUE_NUMBER_INT) time = p.getLongValue();
                        else if (v == JsonToken.VALUE_STRING) time = Long.parseLong(p.getText().trim());
                        break;
                    default: break;
                }
            }
        } catch (IOException | RuntimeException e) {
            return null;
        }
        if (ad == null || type == null || time < 0) return null;
        AdEvent e = new AdEvent();
        e.userKey = Hashing.hash(user == null ? "" : user);
        e.adId = ad;
        e.eventType = type;
        e.eventTime = time;
        return e;
    }
}
