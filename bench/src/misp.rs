//! The misp path of the benchmark: a MISP ZeroMQ publisher (a PUB socket,
//! as MISP's `mispzmq.py`) sends N attribute notifications of about 1 KB
//! (`misp_json_attribute <json>`, the shape MISP publishes); the bus's
//! misp plugin filters, maps and validates them, and one zmq subscriber
//! receives N indicators. The ceiling of the same run: the same frames
//! through the plain ZeroMQ relay. Medians of the runs.

use std::time::{Duration, Instant};

use crate::{artifacts, ctx, fmt_rate, median, parse_id, start_bus_with, start_relay, subscribe, Args, WARMUP};

/// One attribute notification, numbered, with MISP's fields.
fn notification(tag: u32, n: u64) -> Vec<u8> {
    let uuid = format!("{tag:08x}-{:04x}-4000-8000-{:012x}", (n >> 48) & 0xffff, n & 0xffff_ffff_ffff);
    format!(
        r##"misp_json_attribute {{"Attribute": {{"id": "{n}", "event_id": "1", "object_id": "0", "object_relation": null, "category": "Network activity", "type": "domain", "value1": "h{n:08}.example.com", "value2": "", "to_ids": true, "uuid": "{uuid}", "timestamp": "1614599635", "distribution": "5", "sharing_group_id": "0", "comment": "", "deleted": false, "disable_correlation": false, "first_seen": null, "last_seen": null, "value": "h{n:08}.example.com", "Tag": [{{"id": "3", "name": "TLP:AMBER", "colour": "#FFC000", "exportable": true}}], "Sighting": []}}, "Event": {{"id": "1", "date": "2021-03-01", "info": "bench", "uuid": "5f7b2277-1ebc-4101-9152-032ac0a82f02", "published": false, "analysis": "0", "threat_level_id": "1", "org_id": "1", "orgc_id": "1", "distribution": "1", "sharing_group_id": "0", "Orgc": {{"id": "1", "uuid": "5f7b21ea-52a4-49f0-87df-032ac0a82f02", "name": "ORGNAME"}}}}, "action": "add"}}"##
    )
    .into_bytes()
}

/// Sends warm-ups until the subscriber has one, then drains.
fn warm_up(p: &zmq::Socket, s: &zmq::Socket, frame: impl Fn(u64) -> Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "the subscriber did not connect");
        p.send(frame(n), 0).unwrap();
        n += 1;
        if s.poll(zmq::POLLIN, 10).unwrap() > 0 {
            break;
        }
    }
    // Drain what is in flight: wait until 200 ms pass without a frame.
    while s.poll(zmq::POLLIN, 200).unwrap() > 0 {
        while s.recv_bytes(zmq::DONTWAIT).is_ok() {}
    }
}

/// Sends N frames and counts deliveries of this tag: (per second, lost).
fn measure(p: &zmq::Socket, s: &zmq::Socket, args: &Args, tag: u32, frame: impl Fn(u64) -> Vec<u8>) -> (f64, u64) {
    let frames: Vec<Vec<u8>> = (0..args.count).map(&frame).collect();
    let t0 = Instant::now();
    for f in &frames {
        p.send(f.as_slice(), 0).unwrap();
    }
    let mut got = 0;
    let mut last = t0;
    let idle = Duration::from_secs_f64(args.idle_secs);
    let mut since = Instant::now();
    while got < args.count && since.elapsed() < idle {
        if s.poll(zmq::POLLIN, 100).unwrap() > 0 {
            while let Ok(f) = s.recv_bytes(zmq::DONTWAIT) {
                if parse_id(&f).is_some_and(|(t, _)| t == tag) {
                    got += 1;
                    last = Instant::now();
                }
            }
            since = Instant::now();
        }
    }
    (got as f64 / last.duration_since(t0).as_secs_f64().max(1e-9), args.count - got)
}

/// One run through the bus: attributes/s and lost.
fn bus_once(args: &Args, tag: u32) -> (f64, u64) {
    let misp = ctx().socket(zmq::PUB).unwrap();
    misp.set_sndhwm(0).unwrap();
    misp.bind("tcp://127.0.0.1:*").unwrap();
    let port: u16 = misp.get_last_endpoint().unwrap().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let apps = format!("    misp:\n      zmq:\n        host: 127.0.0.1\n        port: {port}\n");
    let t = start_bus_with(&artifacts(args), &["libthreatbus_app_misp.so"], &apps);
    let subs = subscribe(&t, 1);
    warm_up(&misp, &subs[0].0, |n| notification(WARMUP, n));
    measure(&misp, &subs[0].0, args, tag, |n| notification(tag, n))
}

/// The same frames through the plain relay, as `stix2/indicator` frames
/// of the same size (the relay does not look inside).
fn relay_once(args: &Args, tag: u32) -> (f64, u64) {
    let t = start_relay();
    let subs = subscribe(&t, 1);
    let p = crate::publisher(&t, 0);
    let as_indicator = |tag, n| {
        let mut f = b"stix2/indicator ".to_vec();
        let body = notification(tag, n);
        f.extend_from_slice(&body["misp_json_attribute ".len()..]);
        // The relay's subscriber finds the id by the indicator prefix.
        let uuid_at = f.windows(8).position(|w| w == format!("{tag:08x}").as_bytes()).unwrap();
        f.splice(uuid_at..uuid_at, b"indicator--".iter().copied());
        f.insert(uuid_at, b'"');
        f
    };
    warm_up(&p, &subs[0].0, |n| as_indicator(WARMUP, n));
    measure(&p, &subs[0].0, args, tag, |n| as_indicator(tag, n))
}

pub fn run(args: &Args) {
    println!(
        "threatbus-bench misp: N={} MISP attributes per run ({} bytes each), {} runs",
        args.count,
        notification(0, 0).len(),
        args.runs
    );
    let (mut bus, mut relay) = (Vec::new(), Vec::new());
    let (mut lost_bus, mut lost_relay) = (0, 0);
    for run in 0..args.runs {
        let tag = 0x3a00_0000 + run as u32 * 2;
        let (r, l) = relay_once(args, tag);
        let (b, lb) = bus_once(args, tag + 1);
        println!(
            "  run {}: bus {} attributes/s (lost {lb}), relay {} frames/s (lost {l})",
            run + 1,
            fmt_rate(b),
            fmt_rate(r)
        );
        bus.push(b);
        relay.push(r);
        lost_bus += lb;
        lost_relay += l;
    }
    let (b, r) = (median(bus), median(relay));
    println!(
        "median: bus {} MISP attributes/s to a zmq subscriber (lost {lost_bus}); plain relay {} frames/s (lost {lost_relay}); bus/relay {:.0} %",
        fmt_rate(b),
        fmt_rate(r),
        100.0 * b / r
    );
}
