//! The zeek path of the benchmark: a zmq publisher sends N indicators,
//! K fake Zeek peers (Broker protocol over TLS as Zeek's default, via the
//! zeek plugin's client) each receive N intel events; then each Zeek sends
//! N/K sightings, which a zmq subscriber receives. Medians of the runs.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use threatbus_app_zeek::client::{Client, Stream};
use threatbus_app_zeek::value::Value;

use crate::{
    artifacts, fmt_rate, frame, free_port, median, publisher, start_bus_with, subscribe, warm_up, Args, WARMUP,
};

fn connect(port: u16, tls: &str) -> Box<dyn Stream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the zeek plugin");
    tcp.set_nodelay(true).unwrap();
    if tls == "none" {
        return Box::new(tcp);
    }
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_cipher_list("AECDH-AES256-SHA@SECLEVEL=0").unwrap();
    b.set_groups_list("P-384").unwrap();
    b.set_min_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let mut cfg = b.build().configure().unwrap();
    cfg.set_verify_hostname(false);
    Box::new(cfg.connect("threatbus", tcp).expect("TLS"))
}

/// One run: (indicators/s per peer, sightings/s).
fn run_once(args: &Args, peers: usize, tls: &str, tag: u32) -> (f64, f64, u64) {
    let port = free_port();
    let apps = format!("    zeek:\n      host: 127.0.0.1\n      port: {port}\n      tls: {tls}\n");
    let t = start_bus_with(&artifacts(args), &["libthreatbus_app_zeek.so"], &apps);
    // Connect the publisher first (warm-ups through a zmq subscriber), so
    // that the Zeeks see only the measured indicators.
    let p = publisher(&t, 0);
    let subs = subscribe(&t, 1);
    warm_up(&p, &subs);
    crate::unsubscribe(&t, &subs);
    let mut zeeks: Vec<Client> = (0..peers)
        .map(|i| {
            let mut id = [0u8; 16];
            id[15] = i as u8 + 1;
            let mut c = Client::peer(connect(port, tls), id, &["threatbus/manage"], "Tenzir").expect("peering");
            c.subscribe("stix2/indicator", 0).expect("subscription");
            c
        })
        .collect();
    let count = args.count;
    let t0 = Instant::now();
    let readers: Vec<_> = zeeks
        .drain(..)
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut got = 0;
                while got < count {
                    match c.recv_event() {
                        Ok((_, e)) if e.name == "Tenzir::intel" => got += 1,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                (c, got, Instant::now())
            })
        })
        .collect();
    for n in 0..count {
        p.send(frame(tag, n), 0).unwrap();
    }
    let mut zeeks = Vec::new();
    let mut last = t0;
    let mut lost = 0;
    for r in readers {
        let (c, got, at) = r.join().unwrap();
        lost += count - got;
        last = last.max(at);
        zeeks.push(c);
    }
    let ind_per_s = count as f64 / last.duration_since(t0).as_secs_f64();

    // Sightings: each Zeek sends its share; one zmq subscriber counts them.
    let sub = crate::subscribe_topic(&t, "stix2/sighting");
    // A first sighting proves the subscriber is connected.
    let sighting = |c: &mut Client, n: u64| {
        let id = format!("indicator--{WARMUP:08x}-0000-4000-8000-{n:012x}");
        let ctx = Value::Table(vec![(Value::string("noisy"), Value::Bool(false))]);
        c.send_event(
            "stix2/sighting",
            "sighting",
            vec![Value::Timestamp(1_700_000_000_000_000_000), Value::string(&id), ctx],
        )
        .unwrap();
    };
    loop {
        sighting(&mut zeeks[0], 0);
        if sub.poll(zmq::POLLIN, 100).unwrap() > 0 {
            while sub.recv_bytes(zmq::DONTWAIT).is_ok() {}
            break;
        }
    }
    let share = (count / peers as u64).max(1);
    let t1 = Instant::now();
    let senders: Vec<_> = zeeks
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                for n in 0..share {
                    sighting(&mut c, n + 1);
                }
                c
            })
        })
        .collect();
    let expected = share * peers as u64;
    let mut received = 0;
    let mut idle = Instant::now();
    while received < expected && idle.elapsed() < Duration::from_secs_f64(args.idle_secs) {
        if sub.poll(zmq::POLLIN, 100).unwrap() > 0 {
            while sub.recv_bytes(zmq::DONTWAIT).is_ok() {
                received += 1;
            }
            idle = Instant::now();
        }
    }
    let sig_per_s = received as f64 / t1.elapsed().as_secs_f64();
    for s in senders {
        drop(s.join());
    }
    lost += expected - received;
    (ind_per_s, sig_per_s, lost)
}

pub fn run(args: &Args, peers: &[usize], tls: &str) {
    println!(
        "threatbus-bench zeek: N={} indicators per run, peers {peers:?}, TLS {tls}, {} runs",
        args.count, args.runs
    );
    let mut tag = 0x2e00_0000;
    for &k in peers {
        let (mut ind, mut sig) = (Vec::new(), Vec::new());
        let mut lost = 0;
        for run in 0..args.runs {
            tag += 1;
            let (i, s, l) = run_once(args, k, tls, tag);
            println!(
                "  run {} K={k}: {} intel events/s per Zeek, {} sightings/s, lost {l}",
                run + 1,
                fmt_rate(i),
                fmt_rate(s)
            );
            ind.push(i);
            sig.push(s);
            lost += l;
        }
        println!(
            "K={k}: median {} indicators/s to each of {k} Zeek(s) ({} events/s in all), {} sightings/s from Zeek; lost {lost}",
            fmt_rate(median(ind.clone())),
            fmt_rate(median(ind) * k as f64),
            fmt_rate(median(sig))
        );
    }
}
