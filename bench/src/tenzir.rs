//! The tenzir path of the benchmark, against a real Tenzir node (from the
//! `tenzir` wheel in `--tenzir-venv`): a zmq app publishes N IP indicators
//! and the time until the last one is in the node's lookup table gives
//! indicators/s in; then M events holding those addresses are imported into
//! the node, and the time until a zmq subscriber has M LIVE sightings gives
//! sightings/s out. Medians of the runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{artifacts, fmt_rate, free_port, median, publisher, start_bus_with, Args};

fn bundled(venv: &Path) -> PathBuf {
    std::fs::read_dir(venv.join("lib"))
        .expect("the Tenzir venv (bash .ci/tenzir-setup.sh installs it)")
        .flatten()
        .map(|e| e.path().join("site-packages/tenzir/bundled"))
        .find(|p| p.join("bin/tenzir").is_file())
        .expect("the tenzir wheel in the venv")
}

struct Node {
    child: Child,
    dir: PathBuf,
    client: PathBuf,
    endpoint: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    fn start(venv: &Path) -> Node {
        let b = bundled(venv);
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("threatbus-bench-tenzir-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(b.join("libexec/tenzir-engine"), dir.join("tenzir-node")).unwrap();
        let child = Command::new(dir.join("tenzir-node"))
            .arg(format!("--endpoint=127.0.0.1:{port}"))
            .arg(format!("--state-directory={}", dir.join("state").display()))
            .arg(format!("--cache-directory={}", dir.join("cache").display()))
            .arg("--console-verbosity=warning")
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tenzir-node");
        let node = Node { child, dir, client: b.join("bin/tenzir"), endpoint: format!("127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(120);
        while node.run("version", None).is_err() {
            assert!(Instant::now() < deadline, "the Tenzir node did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        node
    }

    fn run(&self, pipeline: &str, input: Option<&[u8]>) -> Result<String, String> {
        let mut child = Command::new(&self.client)
            .arg(format!("--endpoint={}", self.endpoint))
            .arg("--connection-timeout=5s")
            .arg("--console-verbosity=error")
            .arg(pipeline)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(data).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{}", out.status))
        }
    }
}

fn ip(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

fn indicator(n: u64) -> Vec<u8> {
    format!(
        r#"stix2/indicator {{"type": "indicator", "spec_version": "2.1", "id": "indicator--7e570000-{:04x}-4000-8000-{:012x}", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[ipv4-addr:value = '{}']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}}"#,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff,
        ip(n)
    )
    .into_bytes()
}

/// One run: (indicators/s into the table, sightings/s out).
fn run_once(args: &Args, venv: &Path, events: u64) -> (f64, f64) {
    let node = Node::start(venv);
    let apps = format!(
        "    tenzir:\n      tenzir_binary: {}\n      endpoint: \"{}\"\n      snapshot: 0\n      live_match: true\n      retro_match: false\n",
        node.client.display(),
        node.endpoint
    );
    let t = start_bus_with(&artifacts(args), &["libthreatbus_app_tenzir.so"], &apps);
    let sub = crate::subscribe_topic(&t, "stix2/sighting");
    let p = publisher(&t, 0);
    // The publisher is connected once a first indicator is in the table.
    let n = args.count;
    let in_table = |k: u64| {
        node.run(&format!("context_inspect \"threatbus\"\nwhere key == {}\nwrite_ndjson", ip(k)), None)
            .is_ok_and(|o| !o.trim().is_empty())
    };
    while !in_table(0) {
        p.send(indicator(0), 0).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let t0 = Instant::now();
    for k in 1..=n {
        p.send(indicator(k), 0).unwrap();
    }
    while !in_table(n) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ind_per_s = n as f64 / t0.elapsed().as_secs_f64();

    // The live lookup is running once a probe event is reported.
    let import = "load_stdin\nread_ndjson\nsrc_ip = ip(src_ip)\nimport";
    loop {
        node.run(import, Some(b"{\"ts\":\"2022-01-01T00:00:00Z\",\"src_ip\":\"10.0.0.0\"}\n")).unwrap();
        if sub.poll(zmq::POLLIN, 2000).unwrap() > 0 {
            while sub.recv_bytes(zmq::DONTWAIT).is_ok() {}
            break;
        }
    }
    let body: String = (0..events)
        .map(|k| format!("{{\"ts\":\"2022-01-01T00:00:00Z\",\"src_ip\":\"{}\",\"n\":{k}}}\n", ip(1 + k % n)))
        .collect();
    let t1 = Instant::now();
    node.run(import, Some(body.as_bytes())).unwrap();
    let mut got = 0;
    let mut idle = Instant::now();
    while got < events && idle.elapsed() < Duration::from_secs_f64(args.idle_secs.max(10.0)) {
        if sub.poll(zmq::POLLIN, 100).unwrap() > 0 {
            while sub.recv_bytes(zmq::DONTWAIT).is_ok() {
                got += 1;
            }
            idle = Instant::now();
        }
    }
    let sig_per_s = got as f64 / t1.elapsed().as_secs_f64();
    if got < events {
        println!("  (only {got} of {events} sightings arrived)");
    }
    (ind_per_s, sig_per_s)
}

pub fn run(args: &Args, venv: &Path, events: u64) {
    println!("threatbus-bench tenzir: N={} indicators, M={events} events per run, {} runs", args.count, args.runs);
    let (mut ind, mut sig) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let (i, s) = run_once(args, venv, events);
        println!(
            "  run {}: {} indicators/s into the lookup table, {} LIVE sightings/s out",
            run + 1,
            fmt_rate(i),
            fmt_rate(s)
        );
        ind.push(i);
        sig.push(s);
    }
    println!(
        "median: {} indicators/s into the lookup table, {} LIVE sightings/s out",
        fmt_rate(median(ind)),
        fmt_rate(median(sig))
    );
}
