//! One subscriber's throughput alone and among many idle subscriptions:
//! idle subscriptions (never connected, past `connect_grace`) are not on
//! the bus, so they must not slow delivery down.

use std::time::Duration;

use crate::{artifacts, fmt_rate, median, request, run_once, start_bus_full, Args};

/// Makes `n` subscriptions through the management port and never connects
/// to their p2p topics.
fn make_idle(t: &crate::Target, n: usize) {
    let manage = t.manage.expect("a bus");
    for i in 0..n {
        let r = request(&t.host, manage, r#"{"action": "subscribe", "topic": "stix2/indicator"}"#, 5000)
            .unwrap_or_else(|| panic!("no reply to subscription {i}"));
        assert!(r.contains("success"), "subscription {i}: {r}");
    }
}

pub fn run(args: &Args, idle: usize) {
    println!(
        "threatbus-bench idle: N={} indicators to 1 subscriber, alone and beside {idle} idle subscriptions, {} runs",
        args.count, args.runs
    );
    let zmq = format!("      max_subscriptions: {}\n      connect_grace: 0.2\n", idle + 100);
    let mut alone = Vec::new();
    let mut among = Vec::new();
    let mut tag = 7_000u32;
    for run in 0..args.runs {
        for (n_idle, out) in [(0, &mut alone), (idle, &mut among)] {
            let t = start_bus_full(&artifacts(args), &[], "", &zmq);
            make_idle(&t, n_idle);
            // Past connect_grace, the idle ones leave the bus (checked every
            // half second).
            std::thread::sleep(Duration::from_millis(3_000));
            tag += 1;
            let o = run_once(&t, 1, args.count, None, args, tag);
            let rate = o.received as f64 / o.elapsed.as_secs_f64().max(1e-9);
            println!(
                "  run {} with {n_idle:>6} idle: {:>8} indicators/s, lost {} of {}",
                run + 1,
                fmt_rate(rate),
                o.expected - o.received,
                o.expected
            );
            out.push(rate);
        }
    }
    let (a, b) = (median(alone), median(among));
    println!(
        "\n| subscriptions | indicators/s to the one subscriber (median) |\n|---|---:|\n| 1 | {} |\n| 1 + {idle} idle | {} |\n\nratio (with idle / alone): {:.2}",
        fmt_rate(a),
        fmt_rate(b),
        b / a
    );
}
