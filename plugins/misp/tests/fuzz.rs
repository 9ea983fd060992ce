//! Fuzzing of the misp app's decoding of MISP notifications (see
//! `threatbus-fuzz`).

use threatbus_app_misp::mapping;
use threatbus_fuzz::run_target;

/// A notification through the filter and the mapping; whatever indicator
/// comes out goes through the host's validation too.
fn misp_notification(data: &[u8]) {
    let Ok(serde_json::Value::Object(msg)) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let removal = mapping::is_removal(&msg);
    let _ = mapping::is_whitelisted(&msg, &[], removal);
    if let Some(attr) = msg.get("Attribute").and_then(|a| a.as_object()) {
        let action = msg.get("action").and_then(|a| a.as_str()).unwrap_or("");
        if let Ok(json) = mapping::attribute_to_indicator(attr, action, chrono::Utc::now()) {
            let _ = threatbus_stix::parse_stix2(&json);
        }
    }
    if let Some(s) = msg.get("Sighting").and_then(|s| s.as_object()) {
        let _ = mapping::sighting_body(s);
    }
}

#[test]
fn fuzz_misp_notifications() {
    run_target("misp-attribute", misp_notification);
}
