//! `threatbus-bench`: drives the real `threatbus` (inmem + zmq) over ZeroMQ
//! the way apps do, and the same traffic through a plain ZeroMQ relay
//! (SUB → PUB, no parsing) as the ceiling.
//!
//! * throughput: N distinct indicators (~330-byte JSON) published as fast
//!   as possible on the bus's `sub` port, received by K subscribers on its
//!   `pub` port: indicators/s, deliveries/s and loss;
//! * latency: the same at a fixed rate: p50/p99/max from the send call to
//!   the receipt, in one process, with one clock.
//!
//! Build in release mode: `cargo build --release -p threatbus-bench
//! -p threatbus -p threatbus-backbone-inmem -p threatbus-app-zmq`, then
//! `target/release/threatbus-bench` (see BENCHMARKS.md).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod amqp;
mod idle;
mod metrics;
mod misp;
mod startup;
mod tenzir;
mod zeek;

#[derive(Parser)]
#[command(about = "Benchmark of the threatbus zmq path against a plain ZeroMQ relay")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Indicators per throughput run.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    count: u64,
    /// Subscriber counts for the throughput runs (comma separated).
    #[arg(short = 'k', long, value_delimiter = ',', default_value = "1,10")]
    subscribers: Vec<usize>,
    /// Rate (indicators/s) of the latency runs; 0 skips them.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Duration of each latency run in seconds.
    #[arg(long, default_value_t = 3.0)]
    latency_secs: f64,
    /// Repetitions of every measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Send high-water mark of the publishing app (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    publisher_hwm: i32,
    /// Directory with `threatbus` and the plugin libraries (default: next to this binary).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Benchmark an already running bus at this management endpoint
    /// (host:port) instead of starting one; e.g. the Python original.
    #[arg(long)]
    connect: Option<String>,
    /// Process id of the --connect bus, to account its CPU time.
    #[arg(long)]
    connect_pid: Option<u32>,
    /// Run only the throughput or only the latency measurements.
    #[arg(long, value_parser = ["throughput", "latency"])]
    only: Option<String>,
    /// Skip the plain relay.
    #[arg(long)]
    no_relay: bool,
    /// Idle time after which missing messages count as lost (seconds).
    #[arg(long, default_value_t = 3.0)]
    idle_secs: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// The zeek path: indicators from a zmq publisher to N fake Zeek peers
    /// (Broker protocol, the plugin's client), and sightings back.
    Zeek {
        /// Fake Zeek peers per run (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        peers: Vec<usize>,
        /// `anonymous` (Broker's default TLS) or `none`.
        #[arg(long, default_value = "anonymous", value_parser = ["anonymous", "none"])]
        tls: String,
    },
    /// The tenzir path: indicators into a real Tenzir node's lookup table,
    /// LIVE sightings out.
    Tenzir {
        /// The venv of the `tenzir` wheel.
        #[arg(long, default_value = "/opt/tenzir")]
        tenzir_venv: std::path::PathBuf,
        /// Events imported per run.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
    /// One subscriber alone, then among many idle subscriptions (made
    /// through the management port, never connected).
    Idle {
        /// Idle subscriptions beside the measured one.
        #[arg(long, default_value_t = 20_000)]
        idle: usize,
    },
    /// One subscriber's throughput with the metrics endpoint off and on
    /// (scraped every --scrape-ms), alternating in the same run.
    Metrics {
        /// Milliseconds between two scrapes while metrics are on.
        #[arg(long, default_value_t = 1000)]
        scrape_ms: u64,
    },
    /// Start-up time to the first management reply and idle RSS of the
    /// bus on config.yaml.example.
    Startup,
    /// Only the validation loop, `-n` indicators (for instruction counts:
    /// `valgrind --tool=callgrind --toggle-collect='*validate_all*'
    /// threatbus-bench -n 10000 validate`, then divide by n).
    Validate,
    /// The misp path: MISP attributes from a MISP ZeroMQ publisher through
    /// the misp plugin to a zmq subscriber, against the plain relay.
    Misp,
    /// The rabbitmq path: the bus with the rabbitmq backbone against a plain
    /// AMQP relay through the same broker (its ceiling), 1 subscriber.
    Rabbitmq,
    /// The plain AMQP relay (used internally).
    AmqpRelay {
        #[arg(long)]
        sub: u16,
        #[arg(long)]
        r#pub: u16,
        #[arg(long)]
        exchange: String,
    },
    /// The plain relay (used internally): SUB bound on --sub, PUB bound on --pub.
    Relay {
        #[arg(long)]
        sub: u16,
        #[arg(long)]
        r#pub: u16,
        #[arg(long, default_value_t = 100_000)]
        hwm: i32,
    },
}

// ---------------------------------------------------------------- targets

/// Where the traffic goes: the bus (management handshake, p2p topics) or
/// the relay (subscribe to the publish topic).
struct Target {
    host: String,
    manage: Option<u16>,
    pub_port: u16,
    sub_port: u16,
    child: Option<Child>,
    /// Process whose CPU time is accounted (the child, or --connect-pid).
    pid: Option<u32>,
    _dir: Option<TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a plain signal to our own child, which we have not
            // waited for yet (so its pid is not reused).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn artifacts(args: &Args) -> PathBuf {
    args.artifacts.clone().unwrap_or_else(|| std::env::current_exe().unwrap().parent().unwrap().to_path_buf())
}

fn start_bus(art: &Path) -> Target {
    start_bus_with(art, &[], "")
}

/// Starts the bus with inmem, zmq, the `extra` plugin libraries and the
/// `apps` config lines (indented for `plugins.apps`).
fn start_bus_with(art: &Path, extra: &[&str], apps: &str) -> Target {
    start_bus_full(art, extra, apps, "")
}

/// Like [`start_bus_with`]; `zmq` holds more lines of the zmq section
/// (indented for it).
fn start_bus_full(art: &Path, extra: &[&str], apps: &str, zmq: &str) -> Target {
    let mut libs = vec!["libthreatbus_backbone_inmem.so"];
    libs.extend_from_slice(extra);
    start_bus_config(art, &libs, "    inmem: {}\n", apps, zmq)
}

/// The bus with another backbone (`backbone`: its section, indented for
/// `plugins.backbones`) from the library `lib`, and the zmq app.
fn start_bus_backbone(art: &Path, libs: &[&str], backbone: &str, zmq: &str) -> Target {
    start_bus_config(art, libs, backbone, "", zmq)
}

fn start_bus_config(art: &Path, libs: &[&str], backbone: &str, apps: &str, zmq: &str) -> Target {
    let dir = std::env::temp_dir().join(format!("threatbus-bench-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
    for lib in ["libthreatbus_app_zmq.so"].iter().chain(libs) {
        let src = art.join(lib);
        assert!(src.exists(), "{} missing: build with --release first", src.display());
        std::fs::copy(&src, plugins.join(lib)).unwrap();
        std::fs::set_permissions(plugins.join(lib), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (manage, pub_port, sub_port) = (free_port(), free_port(), free_port());
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "logging:\n  console: true\n  console_verbosity: WARNING\nplugins:\n  backbones:\n{backbone}  apps:\n{apps}    zmq:\n      host: 127.0.0.1\n      manage: {manage}\n      pub: {pub_port}\n      sub: {sub_port}\n{zmq}"
        ),
    )
    .unwrap();
    let child = Command::new(art.join("threatbus"))
        .arg("-c")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(&plugins)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .spawn()
        .expect("start threatbus");
    let t = Target {
        host: "127.0.0.1".into(),
        manage: Some(manage),
        pub_port,
        sub_port,
        pid: Some(child.id()),
        child: Some(child),
        _dir: Some(TempDir(dir)),
    };
    // Alive once the management endpoint answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if request(&t.host, manage, r#"{"action": "heartbeat", "topic": "x"}"#, 200).is_some() {
            return t;
        }
        assert!(Instant::now() < deadline, "threatbus did not start");
    }
}

fn connect_bus(endpoint: &str) -> Target {
    let (host, port) = endpoint.rsplit_once(':').expect("--connect host:port");
    let manage: u16 = port.parse().expect("port");
    // Ports come from a subscribe reply.
    let reply = request(host, manage, r#"{"action": "subscribe", "topic": "bench/none"}"#, 5000).expect("bus answers");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let t = Target {
        host: host.into(),
        manage: Some(manage),
        pub_port: v["pub_port"].as_u64().unwrap() as u16,
        sub_port: v["sub_port"].as_u64().unwrap() as u16,
        child: None,
        pid: None,
        _dir: None,
    };
    let unsub = serde_json::json!({"action": "unsubscribe", "topic": v["topic"]}).to_string();
    request(host, manage, &unsub, 5000);
    t
}

fn start_relay() -> Target {
    start_relay_process("relay", &[])
}

/// Starts `threatbus-bench <subcommand> --sub S --pub P <more>` (a relay
/// process) on two free ports; returns once both accept connections.
fn start_relay_process(subcommand: &str, more: &[&str]) -> Target {
    let (pub_port, sub_port) = (free_port(), free_port());
    let child = Command::new(std::env::current_exe().unwrap())
        .args([subcommand, "--sub", &sub_port.to_string(), "--pub", &pub_port.to_string()])
        .args(more)
        .stdin(Stdio::null())
        .spawn()
        .expect("start relay");
    let t = Target {
        host: "127.0.0.1".into(),
        manage: None,
        pub_port,
        sub_port,
        pid: Some(child.id()),
        child: Some(child),
        _dir: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while [pub_port, sub_port].iter().any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err()) {
        assert!(Instant::now() < deadline, "{subcommand} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    t
}

/// The plain relay: every frame from SUB goes to PUB unchanged (zero copy).
fn relay(sub_port: u16, pub_port: u16, hwm: i32) {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(hwm).unwrap();
    sub.set_subscribe(b"stix2/").unwrap();
    sub.bind(&format!("tcp://127.0.0.1:{sub_port}")).unwrap();
    let publ = ctx.socket(zmq::PUB).unwrap();
    publ.set_sndhwm(hwm).unwrap();
    publ.bind(&format!("tcp://127.0.0.1:{pub_port}")).unwrap();
    loop {
        let mut m = zmq::Message::new();
        if sub.recv(&mut m, 0).is_err() {
            break;
        }
        let _ = publ.send(m, 0);
    }
}

fn ctx() -> &'static zmq::Context {
    static C: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
    C.get_or_init(zmq::Context::new)
}

fn request(host: &str, port: u16, req: &str, timeout_ms: i64) -> Option<String> {
    let s = ctx().socket(zmq::REQ).unwrap();
    s.set_linger(0).unwrap();
    s.connect(&format!("tcp://{host}:{port}")).unwrap();
    s.send(req, 0).unwrap();
    if s.poll(zmq::POLLIN, timeout_ms).unwrap() == 0 {
        return None;
    }
    s.recv_string(0).unwrap().ok()
}

/// Subscribers: SUB socket and p2p topic.
type Subs = Vec<(zmq::Socket, String)>;

/// Subscribes `k` apps; returns their SUB sockets and p2p topics.
fn subscribe(t: &Target, k: usize) -> Subs {
    (0..k)
        .map(|_| {
            let topic = match t.manage {
                Some(m) => {
                    let r = request(
                        &t.host,
                        m,
                        r#"{"action": "subscribe", "topic": "stix2/indicator", "snapshot": 0}"#,
                        5000,
                    )
                    .expect("subscribe reply");
                    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
                    assert_eq!(v["status"], "success", "{r}");
                    v["topic"].as_str().unwrap().to_string()
                }
                None => "stix2/indicator".to_string(),
            };
            let s = ctx().socket(zmq::SUB).unwrap();
            s.set_rcvhwm(0).unwrap();
            s.set_linger(0).unwrap();
            s.connect(&format!("tcp://{}:{}", t.host, t.pub_port)).unwrap();
            s.set_subscribe(topic.as_bytes()).unwrap();
            (s, topic)
        })
        .collect()
}

/// A SUB socket on the bus's p2p topic for `topic` (through the
/// management protocol), connected.
fn subscribe_topic(t: &Target, topic: &str) -> zmq::Socket {
    let req = serde_json::json!({"action": "subscribe", "topic": topic, "snapshot": 0}).to_string();
    let r = request(&t.host, t.manage.expect("a bus"), &req, 5000).expect("subscribe");
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    let sub = ctx().socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(0).unwrap();
    sub.connect(&format!("tcp://127.0.0.1:{}", t.pub_port)).unwrap();
    sub.set_subscribe(v["topic"].as_str().unwrap().as_bytes()).unwrap();
    sub
}

fn unsubscribe(t: &Target, subs: &[(zmq::Socket, String)]) {
    if let Some(m) = t.manage {
        for (_, p2p) in subs {
            let req = serde_json::json!({"action": "unsubscribe", "topic": p2p}).to_string();
            request(&t.host, m, &req, 5000);
        }
    }
}

fn publisher(t: &Target, hwm: i32) -> zmq::Socket {
    let p = ctx().socket(zmq::PUB).unwrap();
    p.set_sndhwm(hwm).unwrap();
    p.set_linger(0).unwrap();
    p.connect(&format!("tcp://{}:{}", t.host, t.sub_port)).unwrap();
    p
}

// ---------------------------------------------------------------- traffic

const WARMUP: u32 = 0xffff_0000;

/// `stix2/indicator <json>`: a distinct indicator, ~330 bytes of JSON,
/// already in the bus's canonical layout.
fn frame(tag: u32, n: u64) -> Vec<u8> {
    format!(
        r#"stix2/indicator {{"type": "indicator", "spec_version": "2.1", "id": "indicator--{tag:08x}-{:04x}-4000-8000-{:012x}", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'h{n:08}.example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}}"#,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
    .into_bytes()
}

/// (tag, n) of a delivered frame, from its indicator id.
fn parse_id(frame: &[u8]) -> Option<(u32, u64)> {
    const NEEDLE: &[u8] = b"\"indicator--";
    let at = frame.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let uuid = std::str::from_utf8(frame.get(at..at + 36)?).ok()?;
    let tag = u32::from_str_radix(&uuid[..8], 16).ok()?;
    let n = u64::from_str_radix(&uuid[24..], 16).ok()?;
    Some((tag, n))
}

/// Publishes warm-ups until every subscriber got one, then a barrier that
/// drains all warm-ups: afterwards the pipes are connected and empty.
fn warm_up(p: &zmq::Socket, subs: &[(zmq::Socket, String)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = vec![false; subs.len()];
    let mut n = 0;
    while seen.iter().any(|s| !s) {
        assert!(Instant::now() < deadline, "subscribers did not connect");
        p.send(frame(WARMUP, n), 0).unwrap();
        n += 1;
        for (i, (s, _)) in subs.iter().enumerate() {
            if s.poll(zmq::POLLIN, 5).unwrap() > 0 {
                seen[i] = true;
                while s.recv_bytes(zmq::DONTWAIT).is_ok() {}
            }
        }
    }
    let barrier = 1 << 40;
    p.send(frame(WARMUP, barrier), 0).unwrap();
    for (s, _) in subs {
        loop {
            assert!(s.poll(zmq::POLLIN, 30_000).unwrap() > 0, "barrier lost");
            let f = s.recv_bytes(0).unwrap();
            if parse_id(&f) == Some((WARMUP, barrier)) {
                break;
            }
        }
    }
}

/// The unit of the CPU times in `/proc/<pid>/stat` (never 0).
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(100).max(1)
}

/// CPU time (user + system) a process has used so far, if known.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks_per_second()))
}

/// CPU time (user + system) of each thread of a process so far, summed by
/// thread name.
fn thread_cpu_times(pid: Option<u32>) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Some(pid) = pid else { return out };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    let hz = clock_ticks_per_second();
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_default() += Duration::from_nanos((ticks(11) + ticks(12)) * 1_000_000_000 / hz);
    }
    out
}

/// The CPU each thread name used between two [`thread_cpu_times`] samples,
/// busiest first; threads that used none are left out.
fn thread_cpu_split(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
) -> Vec<(String, Duration)> {
    let mut split: Vec<(String, Duration)> = after
        .iter()
        .map(|(name, t)| (name.clone(), t.saturating_sub(before.get(name).copied().unwrap_or_default())))
        .filter(|(_, t)| !t.is_zero())
        .collect();
    split.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    split
}

struct Outcome {
    /// CPU time the bus or relay process used for the run.
    cpu: Option<Duration>,
    /// The same by thread name, busiest first.
    threads: Vec<(String, Duration)>,
    elapsed: Duration,
    received: u64,
    expected: u64,
    latencies: Vec<u64>, // ns, only in latency runs
}

/// What the receiving thread saw.
struct Received {
    subs: Subs,
    received: u64,
    last: Option<Instant>,
    latencies: Vec<u64>,
}

/// Receives on all subscribers in one thread until every message arrived
/// or nothing came for `idle`.
fn receive(
    subs: Subs,
    tag: u32,
    count: u64,
    idle: Duration,
    t0: Instant,
    sent_at: Option<Arc<Vec<AtomicU64>>>,
) -> Received {
    let expected = count * subs.len() as u64;
    let mut received = 0u64;
    let mut last: Option<Instant> = None;
    let mut lat = Vec::new();
    let mut msg = zmq::Message::new();
    let mut last_progress = Instant::now();
    while received < expected {
        let mut items: Vec<zmq::PollItem> = subs.iter().map(|(s, _)| s.as_poll_item(zmq::POLLIN)).collect();
        let n = zmq::poll(&mut items, 100).unwrap();
        if n == 0 {
            if last_progress.elapsed() >= idle {
                break;
            }
            continue;
        }
        drop(items);
        for (s, _) in &subs {
            while s.recv(&mut msg, zmq::DONTWAIT).is_ok() {
                let now = Instant::now();
                if let Some((t, n)) = parse_id(&msg) {
                    if t == tag && n < count {
                        received += 1;
                        last = Some(now);
                        if let Some(sent) = &sent_at {
                            let s_ns = sent[n as usize].load(Ordering::Acquire);
                            let r_ns = now.duration_since(t0).as_nanos() as u64;
                            lat.push(r_ns.saturating_sub(s_ns));
                        }
                    }
                }
            }
        }
        last_progress = Instant::now();
    }
    Received { subs, received, last, latencies: lat }
}

fn run_once(t: &Target, k: usize, count: u64, rate: Option<u64>, args: &Args, tag: u32) -> Outcome {
    let subs = subscribe(t, k);
    let p = publisher(t, args.publisher_hwm);
    warm_up(&p, &subs);
    let pid = t.pid;
    let cpu0 = cpu_time(pid);
    let threads0 = thread_cpu_times(pid);
    let frames: Vec<Vec<u8>> = (0..count).map(|n| frame(tag, n)).collect();
    let sent_at: Option<Arc<Vec<AtomicU64>>> = rate.map(|_| Arc::new((0..count).map(|_| AtomicU64::new(0)).collect()));
    let t0 = Instant::now();
    let idle = Duration::from_secs_f64(args.idle_secs);
    let rx = {
        let sent_at = sent_at.clone();
        std::thread::spawn(move || receive(subs, tag, count, idle, t0, sent_at))
    };
    match rate {
        None => {
            for f in frames {
                p.send(f, 0).unwrap();
            }
        }
        Some(r) => {
            let period = Duration::from_secs_f64(1.0 / r as f64);
            let sent = sent_at.as_ref().unwrap();
            for (n, f) in frames.into_iter().enumerate() {
                let due = t0 + period * n as u32;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                sent[n].store(Instant::now().duration_since(t0).as_nanos() as u64, Ordering::Release);
                p.send(f, 0).unwrap();
            }
        }
    }
    let Received { subs, received, last, latencies } = rx.join().unwrap();
    let cpu = cpu_time(pid).zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    let threads = thread_cpu_split(&threads0, &thread_cpu_times(pid));
    unsubscribe(t, &subs);
    Outcome {
        cpu,
        threads,
        elapsed: last.map(|l| l.duration_since(t0)).unwrap_or_default(),
        received,
        expected: count * k as u64,
        latencies,
    }
}

// ---------------------------------------------------------------- report

/// One line: CPU µs per indicator of each thread of the bus or relay
/// (clock ticks, so threads below about 10 ms in the run read as 0).
fn print_thread_split(threads: &[(String, Duration)], indicators: f64) {
    if threads.is_empty() {
        return;
    }
    let parts: Vec<String> =
        threads.iter().map(|(name, t)| format!("{name} {:.2}", t.as_secs_f64() * 1e6 / indicators.max(1.0))).collect();
    println!("        CPU µs/indicator by thread: {}", parts.join(", "));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

#[derive(Default, Clone)]
struct Summary {
    ind_per_s: Vec<f64>,
    deliveries_per_s: Vec<f64>,
    lost: Vec<u64>,
    cpu_us: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
}

fn make_target(name: &str, args: &Args) -> Target {
    match name {
        "relay" => start_relay(),
        _ => match &args.connect {
            Some(ep) => connect_bus(ep),
            None => start_bus(&artifacts(args)),
        },
    }
}

fn label(name: &str, args: &Args) -> &'static str {
    match (name, &args.connect) {
        ("relay", _) => "plain ZeroMQ relay",
        (_, Some(_)) => "connected bus",
        _ => "threatbus (inmem + zmq)",
    }
}

fn opt(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        "?".into()
    } else {
        format!("{:.*}", digits, median(v.to_vec()))
    }
}

/// Validates and canonicalizes `n` distinct indicators as the host does for
/// every frame; returns the time the loop took (not the set-up).
fn validate_indicators(n: u64) -> Duration {
    let sample: Vec<Vec<u8>> = (0..n).map(|i| frame(1, i)).collect();
    let t = Instant::now();
    validate_all(&sample);
    t.elapsed()
}

/// The measured loop, on its own so that callgrind can count just it
/// (`--toggle-collect=*validate_all*`).
#[inline(never)]
fn validate_all(frames: &[Vec<u8>]) {
    for f in frames {
        let json = std::str::from_utf8(&f[b"stix2/indicator ".len()..]).unwrap();
        // What the host's parse service does with every STIX message.
        std::hint::black_box(threatbus_stix::canonicalize_stix2(json).unwrap());
    }
}

fn main() {
    let args = Args::parse();
    match &args.cmd {
        Some(Cmd::Relay { sub, r#pub, hwm }) => return relay(*sub, *r#pub, *hwm),
        Some(Cmd::Zeek { peers, tls }) => return zeek::run(&args, peers, tls),
        Some(Cmd::Misp) => return misp::run(&args),
        Some(Cmd::Idle { idle }) => return idle::run(&args, *idle),
        Some(Cmd::Startup) => return startup::run(&args),
        Some(Cmd::Metrics { scrape_ms }) => return metrics::run(&args, *scrape_ms),
        Some(Cmd::Rabbitmq) => return amqp::run(&args),
        Some(Cmd::AmqpRelay { sub, r#pub, exchange }) => return amqp::relay(*sub, *r#pub, exchange),
        Some(Cmd::Validate) => {
            let took = validate_indicators(args.count);
            println!(
                "{} indicators validated in {:.3} s ({:.2} µs each)",
                args.count,
                took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / args.count as f64
            );
            return;
        }
        Some(Cmd::Tenzir { tenzir_venv, events }) => return tenzir::run(&args, tenzir_venv, *events),
        None => {}
    }
    // Precise sleeps for the fixed-rate runs.
    // SAFETY: PR_SET_TIMERSLACK only sets a value of the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0) };
    let mut targets = vec!["bus"];
    if !args.no_relay {
        targets.push("relay");
    }
    println!(
        "threatbus-bench: N={} per throughput run, K={:?}, latency at {}/s for {} s, {} runs, publisher HWM {}",
        args.count, args.subscribers, args.rate, args.latency_secs, args.runs, args.publisher_hwm
    );
    let mut tag = 1u32;
    let mut report = String::new();

    // The bound of the bus's inbound path: validating and canonicalizing
    // one indicator, as the zmq receiver does for every frame.
    let parse_us = validate_indicators(50_000).as_secs_f64() * 1e6 / 50_000.0;
    report += &format!(
        "\nthe host's validation (STIX validation + canonical JSON) of one indicator: {parse_us:.2} µs, \
         i.e. at most {} indicators/s on one core\n",
        fmt_rate(1e6 / parse_us)
    );

    let throughput = args.only.as_deref() != Some("latency");
    let latency = args.only.as_deref() != Some("throughput") && args.rate > 0;
    for &k in args.subscribers.iter().filter(|_| throughput) {
        let mut sums: Vec<Summary> = vec![Summary::default(); targets.len()];
        for run in 0..args.runs {
            for (i, name) in targets.iter().enumerate() {
                let mut t = make_target(name, &args);
                if t.child.is_none() {
                    t.pid = args.connect_pid;
                }
                tag += 1;
                let o = run_once(&t, k, args.count, None, &args, tag);
                drop(t);
                let secs = o.elapsed.as_secs_f64().max(1e-9);
                let per_sub = o.received as f64 / k as f64;
                let cpu_us = o.cpu.map(|c| c.as_secs_f64() * 1e6 / per_sub.max(1.0));
                let s = &mut sums[i];
                s.ind_per_s.push(per_sub / secs);
                s.deliveries_per_s.push(o.received as f64 / secs);
                s.lost.push(o.expected - o.received);
                s.cpu_us.extend(cpu_us);
                println!(
                    "  run {} {:<6} K={k:<3} {:>8} indicators/s {:>8} deliveries/s  lost {} of {}  ({:.3} s, {} CPU µs/indicator)",
                    run + 1,
                    name,
                    fmt_rate(per_sub / secs),
                    fmt_rate(o.received as f64 / secs),
                    o.expected - o.received,
                    o.expected,
                    secs,
                    cpu_us.map(|c| format!("{c:.1}")).unwrap_or_else(|| "?".into())
                );
                print_thread_split(&o.threads, per_sub);
            }
        }
        report += &format!(
            "\n### Throughput: {} indicators, {k} subscriber(s), median of {} runs\n\n\
             | target | indicators/s | deliveries/s | lost (worst run) | CPU µs per indicator |\n|---|---:|---:|---:|---:|\n",
            args.count, args.runs
        );
        for (i, name) in targets.iter().enumerate() {
            let s = &sums[i];
            report += &format!(
                "| {} | {} | {} | {} | {} |\n",
                label(name, &args),
                fmt_rate(median(s.ind_per_s.clone())),
                fmt_rate(median(s.deliveries_per_s.clone())),
                s.lost.iter().max().unwrap(),
                opt(&s.cpu_us, 1)
            );
        }
        if targets.len() == 2 {
            report += &format!(
                "\nbus / relay (indicators/s): {:.0}%\n",
                100.0 * median(sums[0].ind_per_s.clone()) / median(sums[1].ind_per_s.clone())
            );
        }
    }

    if latency {
        let count = (args.rate as f64 * args.latency_secs) as u64;
        let mut sums: Vec<Summary> = vec![Summary::default(); targets.len()];
        for run in 0..args.runs {
            for (i, name) in targets.iter().enumerate() {
                let mut t = make_target(name, &args);
                if t.child.is_none() {
                    t.pid = args.connect_pid;
                }
                tag += 1;
                let o = run_once(&t, 1, count, Some(args.rate), &args, tag);
                drop(t);
                let mut l = o.latencies;
                l.sort_unstable();
                let s = &mut sums[i];
                s.p50.push(pct(&l, 0.50));
                s.p99.push(pct(&l, 0.99));
                s.max.push(pct(&l, 1.0));
                s.lost.push(o.expected - o.received);
                s.cpu_us.extend(o.cpu.map(|c| c.as_secs_f64() * 1e6 / o.received.max(1) as f64));
                println!(
                    "  run {} {:<6} {}/s  p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs  lost {}",
                    run + 1,
                    name,
                    args.rate,
                    pct(&l, 0.5),
                    pct(&l, 0.99),
                    pct(&l, 1.0),
                    o.expected - o.received
                );
                print_thread_split(&o.threads, o.received as f64);
            }
        }
        report += &format!(
            "\n### Latency at {} indicators/s: 1 subscriber, {count} indicators, median of {} runs\n\n\
             | target | p50 | p99 | max | lost (worst run) | CPU µs per indicator |\n|---|---:|---:|---:|---:|---:|\n",
            args.rate, args.runs
        );
        for (i, name) in targets.iter().enumerate() {
            let s = &sums[i];
            report += &format!(
                "| {} | {} µs | {} µs | {} µs | {} | {} |\n",
                label(name, &args),
                opt(&s.p50, 0),
                opt(&s.p99, 0),
                opt(&s.max, 0),
                s.lost.iter().max().unwrap(),
                opt(&s.cpu_us, 1)
            );
        }
    }
    println!("{report}");
}
