//! The cost of metrics: one subscriber's throughput with the `metrics`
//! section off and on (scraped every `scrape_ms`; Prometheus' default is
//! once a minute, common settings 15 to 30 s), alternating in the same run
//! and swapping which goes first from run to run.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{artifacts, fmt_rate, free_port, median, run_once, start_bus_full, Args};

/// Scrapes `http://127.0.0.1:port/metrics` every `every` until `stop`.
fn scraper(port: u16, every: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut scrapes = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
                let mut body = Vec::new();
                if s.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                    scrapes += 1;
                }
            }
            std::thread::sleep(every);
        }
        scrapes
    })
}

pub fn run(args: &Args, scrape_ms: u64) {
    println!(
        "threatbus-bench metrics: N={} indicators to 1 subscriber, metrics off and on (scraped every {scrape_ms} ms), {} runs",
        args.count, args.runs
    );
    let every = Duration::from_millis(scrape_ms.max(1));
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut tag = 9_000u32;
    for run in 0..args.runs {
        let order = if run % 2 == 0 { [false, true] } else { [true, false] };
        for with_metrics in order {
            let port = free_port();
            let extra = if with_metrics { format!("metrics:\n  port: {port}\n") } else { String::new() };
            let t = start_bus_full(&artifacts(args), &[], "", &extra);
            let stop = Arc::new(AtomicBool::new(false));
            let scraping = with_metrics.then(|| scraper(port, every, stop.clone()));
            tag += 1;
            let o = run_once(&t, 1, args.count, None, args, tag);
            stop.store(true, Ordering::Relaxed);
            let scrapes = scraping.map(|h| h.join().unwrap_or(0));
            let rate = o.received as f64 / o.elapsed.as_secs_f64().max(1e-9);
            println!(
                "  run {} metrics {:<3}: {:>8} indicators/s, lost {} of {}{}",
                run + 1,
                if with_metrics { "on" } else { "off" },
                fmt_rate(rate),
                o.expected - o.received,
                o.expected,
                scrapes.map(|n| format!(", {n} scrapes")).unwrap_or_default()
            );
            if with_metrics {
                assert!(scrapes.unwrap_or(0) > 0, "the endpoint never answered a scrape");
                on.push(rate);
            } else {
                off.push(rate);
            }
        }
    }
    let (a, b) = (median(off), median(on));
    println!(
        "\n| metrics | indicators/s to 1 subscriber (median) |\n|---|---:|\n| off | {} |\n| on, scraped every {scrape_ms} ms | {} |\n\nratio (on / off): {:.3}",
        fmt_rate(a),
        fmt_rate(b),
        b / a
    );
}
