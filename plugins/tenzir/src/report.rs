//! What happens to a match: a STIX sighting of the indicator
//! (`last_seen` = the event's time, `x_threatbus_sighting_context` = the
//! event, `x_threatbus_match_type` = `LIVE` or `RETRO`,
//! `x_threatbus_indicator_value` = the matched value), optionally with the
//! context transformed by a command, reported into the bus or, with a
//! `sink`, printed or handed to a command instead; as vast-threatbus did.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use threatbus_plugin_api::logging::excerpt;
use threatbus_plugin_api::MessageKind;

use crate::Shared;

/// LIVE or RETRO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    /// An event that arrived after the indicator.
    Live,
    /// An event from before the indicator.
    Retro,
}

impl MatchType {
    fn as_str(self) -> &'static str {
        match self {
            MatchType::Live => "LIVE",
            MatchType::Retro => "RETRO",
        }
    }
}

/// Splits a command template into words as a POSIX shell would quote them
/// (single and double quotes, backslash), without running a shell.
pub fn split_command(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Runs a command template with `input` on stdin; its stdout.
fn run_command(template: &str, ioc: &str, kind: MatchType, input: &[u8]) -> Result<Vec<u8>, String> {
    let words: Vec<String> = split_command(template)
        .into_iter()
        .map(|w| w.replace("%ioc", ioc).replace("%matchtype", kind.as_str()))
        .collect();
    let (program, args) = words.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let data = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let out = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} exited with {}: {}", out.status, excerpt(&out.stderr)));
    }
    Ok(out.stdout)
}

/// The time of an event: its `ts`, `timestamp`, `time` or `@timestamp`.
fn event_time(event: &Value) -> Option<DateTime<Utc>> {
    ["ts", "timestamp", "time", "@timestamp"]
        .iter()
        .filter_map(|k| event.get(*k)?.as_str())
        .find_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Reports one match of `value` (of indicator `id`) in `event`.
pub fn report(shared: &Shared, id: &str, value: &str, mut event: Value, kind: MatchType) {
    if let Some(m) = event.as_object_mut() {
        m.remove(crate::tql::MATCH_FIELD);
    }
    let last_seen = event_time(&event).unwrap_or_else(Utc::now);
    if let Some(template) = &shared.cfg.transform_context {
        match run_command(template, value, kind, event.to_string().as_bytes()) {
            Ok(out) => match serde_json::from_slice::<Value>(&out) {
                Ok(v) => event = v,
                Err(e) => {
                    log::error!("transform_context printed no JSON ({e}): {}; the sighting is dropped", excerpt(&out));
                    shared.counters.dropped_sightings.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            Err(e) => {
                log::error!("transform_context failed: {e}; the sighting is dropped");
                shared.counters.dropped_sightings.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    if let Some(sink) = &shared.cfg.sink {
        let context = event.to_string();
        if sink.eq_ignore_ascii_case("STDOUT") {
            println!("{context}");
        } else if let Err(e) = run_command(sink, value, kind, context.as_bytes()) {
            log::error!("sink failed: {e}");
        }
        shared.counters.sightings.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let sighting = json!({
        "type": "sighting", "spec_version": "2.1", "id": format!("sighting--{}", uuid::Uuid::new_v4()),
        "created": now, "modified": now, "sighting_of_ref": id,
        "last_seen": last_seen.to_rfc3339_opts(SecondsFormat::Millis, true),
        "x_threatbus_sighting_context": event, "x_threatbus_match_type": kind.as_str(),
        "x_threatbus_indicator_value": value,
    });
    match shared.host.parse(MessageKind::SIGHTING, &sighting.to_string()) {
        Ok(msg) => {
            if shared.host.inq().send_or_stop(msg, shared.stop.flag()).is_ok() {
                shared.counters.sightings.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(e) => {
            shared.counters.dropped_sightings.fetch_add(1, Ordering::Relaxed);
            log::error!("A {} match of {id} is not a valid sighting: {e}", kind.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_as_a_shell_quotes_them() {
        assert_eq!(
            split_command(r#"fever alertify --alert-prefix 'MY PREFIX' --extra-key my-ioc --ioc %ioc"#),
            ["fever", "alertify", "--alert-prefix", "MY PREFIX", "--extra-key", "my-ioc", "--ioc", "%ioc"]
        );
        assert_eq!(split_command(r#"a "b \"c\"" d\ e ''"#), ["a", "b \"c\"", "d e", ""]);
        assert!(split_command("   ").is_empty());
    }

    #[test]
    fn event_times_come_from_the_usual_fields() {
        let t = event_time(&json!({"timestamp": "2021-02-01T00:00:00.5Z"})).unwrap();
        assert_eq!(t.to_rfc3339_opts(SecondsFormat::Millis, true), "2021-02-01T00:00:00.500Z");
        assert!(event_time(&json!({"ts": 5})).is_none());
    }
}
