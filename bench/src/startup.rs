//! Start-up time and idle memory of the bus on `config.yaml.example`
//! (inmem + zmq, its ports moved by environment overrides so that runs
//! never collide): the time from spawning `threatbus` to its first answered
//! management request, and its resident memory one second later.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{artifacts, free_port, median, request, Args, TempDir};

/// The example config, as built into this benchmark.
const EXAMPLE: &str = include_str!("../../config.yaml.example");

fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn run(args: &Args) {
    let art = artifacts(args);
    let dir = std::env::temp_dir().join(format!("threatbus-bench-startup-{}", std::process::id()));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let _cleanup = TempDir(dir.clone());
    for d in [&dir, &plugins] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for lib in ["libthreatbus_backbone_inmem.so", "libthreatbus_app_zmq.so"] {
        std::fs::copy(art.join(lib), plugins.join(lib)).expect("build the plugins with --release first");
        std::fs::set_permissions(plugins.join(lib), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let config = dir.join("config.yaml");
    std::fs::write(&config, EXAMPLE).unwrap();
    println!("threatbus-bench startup: config.yaml.example, {} runs", args.runs);
    let (mut startup, mut rss) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let (manage, pub_port, sub_port) = (free_port(), free_port(), free_port());
        let t0 = Instant::now();
        let mut child = Command::new(art.join("threatbus"))
            .arg("-c")
            .arg(&config)
            .arg("--plugin-dir")
            .arg(&plugins)
            .env_remove("RUST_LOG")
            .env("THREATBUS_PLUGINS__APPS__ZMQ__MANAGE", manage.to_string())
            .env("THREATBUS_PLUGINS__APPS__ZMQ__PUB", pub_port.to_string())
            .env("THREATBUS_PLUGINS__APPS__ZMQ__SUB", sub_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start threatbus");
        let ready = loop {
            if request("127.0.0.1", manage, r#"{"action": "heartbeat", "topic": "x"}"#, 2).is_some() {
                break t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "threatbus did not answer");
        };
        // Idle: after start-up work has settled.
        std::thread::sleep(Duration::from_secs(1));
        let kib = rss_kib(child.id()).expect("VmRSS of the bus");
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "  run {}: first management reply after {:.1} ms, idle RSS {:.1} MB",
            run + 1,
            ms(ready),
            kib / 1024.0
        );
        startup.push(ms(ready));
        rss.push(kib / 1024.0);
    }
    println!(
        "\n| measure | median of {} |\n|---|---:|\n| start-up to the first management reply | {:.1} ms |\n| idle RSS | {:.1} MB |",
        args.runs,
        median(startup),
        median(rss)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
