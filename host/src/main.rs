//! `threatbus`: the Threat Bus host. Loads app and backbone plugins from a
//! directory and connects them through the bus core.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod bus;
mod client;
mod config;
mod loader;
mod logger;
mod metrics;
mod metrics_http;
mod services;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use threatbus_plugin_api::abi::{PluginKind, ABI_MAJOR, ABI_MINOR, API_VERSION};

/// The allocator of the whole process. Built with `override`, mimalloc also
/// defines `malloc` and `free`, which the dynamic linker then binds for
/// every library, the plugins and their libzmq included. Each outbound
/// ZeroMQ frame is allocated on a plugin's thread and freed on a libzmq
/// I/O thread. Under glibc's allocator those frees contend for the
/// allocating thread's arena lock; mimalloc frees across threads without a
/// lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "threatbus", version, about = "Threat Bus: a pub/sub broker for threat intelligence")]
struct Cli {
    /// Configuration file (YAML). Default: config.yaml or config.yml in the working directory.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Directory with plugin libraries (*.so). Overrides the config's plugin_dir.
    #[arg(long, global = true, env = "THREATBUS_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect installed plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Subscribe through the zmq app and print what arrives, one JSON object a line.
    Watch {
        /// Topic prefix to subscribe to (repeatable).
        #[arg(long = "topic", default_value = "stix2/")]
        topics: Vec<String>,
        /// The zmq app's management port.
        #[arg(long, default_value = "127.0.0.1:13370")]
        manage: String,
        /// Also ask for a snapshot of this many days.
        #[arg(long, default_value_t = 0)]
        snapshot: u64,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send indicators and sightings (one JSON object a line) to the zmq app.
    Publish {
        /// File to read, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
        /// The zmq app's sub port.
        #[arg(long, default_value = "127.0.0.1:13372")]
        sub: String,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List every .so in the plugin directory with name, kind, versions and status.
    List,
    /// Show the manifest of one plugin file and whether this host accepts it (runs no plugin code).
    Inspect {
        /// Path to the plugin library.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Plugins { command: PluginsCommand::List }) => {
            logger::init_quiet();
            let dir = plugin_dir_for_subcommand(&cli);
            list_plugins(&dir)
        }
        Some(Command::Plugins { command: PluginsCommand::Inspect { file } }) => {
            logger::init_quiet();
            inspect_plugin(&file)
        }
        Some(Command::Watch { topics, manage, snapshot, count }) => {
            exit_with(client::watch(&topics, &manage, snapshot, count), "watch")
        }
        Some(Command::Publish { file, sub }) => exit_with(client::publish(&file, &sub), "publish"),
        None => match run(cli.config.as_deref(), cli.plugin_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                eprintln!("threatbus: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn exit_with(r: Result<(), String>, what: &str) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("threatbus {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn plugin_dir_for_subcommand(cli: &Cli) -> PathBuf {
    if let Some(d) = &cli.plugin_dir {
        return d.clone();
    }
    if let Ok(path) = config::locate(cli.config.as_deref()) {
        if let Ok((cfg, _)) = config::load(&path) {
            if let Some(d) = cfg.plugin_dir {
                return d;
            }
        }
    }
    PathBuf::from(config::DEFAULT_PLUGIN_DIR)
}

fn describe(d: &loader::Declaration) -> String {
    format!(
        "{:<12} {:<9} version {:<8} plugin-api {} (ABI {}.{})",
        d.name,
        d.kind.as_str().unwrap_or("unknown"),
        d.plugin_version,
        d.api_version,
        d.abi_major,
        d.abi_minor
    )
}

fn list_plugins(dir: &Path) -> ExitCode {
    println!("plugin directory: {} (host plugin-api {API_VERSION}, ABI {ABI_MAJOR}.{ABI_MINOR})", dir.display());
    let checked = match loader::check_dir(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("threatbus: {e}");
            return ExitCode::FAILURE;
        }
    };
    if checked.is_empty() {
        println!("no plugins found");
    }
    for c in checked {
        match c {
            Ok(p) => println!("ok        {}  {}", describe(&p.decl), p.path.display()),
            Err(r) => {
                let what = r.decl.as_deref().map(describe).unwrap_or_else(|| "-".into());
                println!("rejected  {what}  {}\n          reason: {}", r.path.display(), r.reason);
            }
        }
    }
    ExitCode::SUCCESS
}

fn inspect_plugin(file: &Path) -> ExitCode {
    match loader::check_file(file) {
        Ok(p) => {
            let d = &p.decl;
            println!("file:        {}", p.path.display());
            println!("name:        {}", d.name);
            println!("kind:        {}", d.kind.as_str().unwrap_or("unknown"));
            println!("version:     {}", d.plugin_version);
            println!("plugin-api:  {} (ABI {}.{})", d.api_version, d.abi_major, d.abi_minor);
            println!(
                "status:      ok: this threatbus (ABI {ABI_MAJOR}.{ABI_MINOR}) accepts it; read from the file, not loaded"
            );
            ExitCode::SUCCESS
        }
        Err(r) => {
            println!("file:        {}", r.path.display());
            if let Some(d) = &r.decl {
                println!("name:        {}", d.name);
                println!("kind:        {}", d.kind.as_str().unwrap_or("unknown"));
                println!("version:     {}", d.plugin_version);
                println!("plugin-api:  {} (ABI {}.{})", d.api_version, d.abi_major, d.abi_minor);
            }
            println!("status:      rejected: {}", r.reason);
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit of open files to the hard limit: every app
/// connection is a descriptor, and the usual soft limit of 1024 is far
/// below what a bus serving many apps (or weathering a connection flood)
/// needs. The systemd unit sets both limits; this covers other launchers.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the local, valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur >= lim.rlim_max {
        log::info!("open files limit: {}", lim.rlim_cur);
        return;
    }
    let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads one rlimit from the local, valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        log::info!("open files limit raised from {} to {}", lim.rlim_cur, lim.rlim_max);
    } else {
        log::warn!(
            "open files limit stays at {} (cannot raise it to {}: {})",
            lim.rlim_cur,
            lim.rlim_max,
            std::io::Error::last_os_error()
        );
    }
}

/// Logs the stats line every `interval` seconds until the process ends.
fn start_stats_line(bus: std::sync::Arc<bus::Bus>, interval: u64) -> Result<(), String> {
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            let mut last = metrics::Totals::default();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(interval));
                let (line, now) = metrics::stats_line(&bus, &last, interval);
                log::info!("{line}");
                last = now;
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the stats thread: {e}"))
}

fn run(config_arg: Option<&Path>, plugin_dir_arg: Option<PathBuf>) -> Result<(), String> {
    let path = config::locate(config_arg)?;
    let (cfg, _) = config::load(&path)?;
    logger::init(&cfg.logging)?;
    let dir = plugin_dir_arg.or(cfg.plugin_dir.clone()).unwrap_or_else(|| PathBuf::from(config::DEFAULT_PLUGIN_DIR));
    log::info!(
        "threatbus {} (plugin-api {API_VERSION}) using plugins from {}",
        env!("CARGO_PKG_VERSION"),
        dir.display()
    );
    raise_open_files_limit();

    // Register signal handling before any plugin thread exists. SIGHUP stops
    // the bus cleanly too (a restart reloads config and plugins).
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let checked = loader::check_dir(&dir)?;
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    for c in checked {
        match c {
            Ok(p) => found.push(p),
            Err(r) => {
                log::warn!("{}", r.reason);
                rejected.push(r);
            }
        }
    }
    let pick = |kind: PluginKind, wanted: &std::collections::BTreeMap<String, serde_json::Value>| {
        let section = if kind == PluginKind::APP { "apps" } else { "backbones" };
        let mut picked = Vec::new();
        for (name, conf) in wanted {
            match found.iter().find(|p| &p.decl.name == name) {
                Some(p) if p.decl.kind == kind => picked.push((p.clone(), conf.clone())),
                Some(p) => {
                    return Err(format!(
                        "config lists '{name}' under plugins.{section}, but {} is a {} plugin; move its section to plugins.{}s",
                        p.path.display(),
                        p.decl.kind.as_str().unwrap_or("?"),
                        p.decl.kind.as_str().unwrap_or("?")
                    ))
                }
                None => {
                    // A file that declares this name but was rejected says why.
                    if let Some(r) = rejected.iter().find(|r| r.decl.as_ref().is_some_and(|d| &d.name == name)) {
                        return Err(format!("config enables '{name}', but {} was rejected: {}", r.path.display(), r.reason));
                    }
                    let unreadable: Vec<String> = rejected
                        .iter()
                        .filter(|r| r.decl.is_none())
                        .map(|r| format!("{} ({})", r.path.display(), r.reason))
                        .collect();
                    let names: Vec<&str> = found.iter().map(|p| p.decl.name.as_str()).collect();
                    let mut msg = format!(
                        "config enables {} '{name}' but no loadable plugin named '{name}' is in {} (found: {}); install it (e.g. libthreatbus_{}_{name}.so) or remove plugins.{section}.{name}",
                        &section[..section.len() - 1],
                        dir.display(),
                        if names.is_empty() { "none".to_string() } else { names.join(", ") },
                        &section[..section.len() - 1],
                    );
                    if !unreadable.is_empty() {
                        msg.push_str(&format!("; rejected files that may contain it: {}", unreadable.join("; ")));
                    }
                    return Err(msg);
                }
            }
        }
        Ok(picked)
    };
    let backbones = pick(PluginKind::BACKBONE, &cfg.plugins.backbones)?;
    let apps = pick(PluginKind::APP, &cfg.plugins.apps)?;
    for p in &found {
        if !cfg.plugins.apps.contains_key(&p.decl.name) && !cfg.plugins.backbones.contains_key(&p.decl.name) {
            log::info!(
                "Ignoring installed, but unconfigured {} '{}'",
                p.decl.kind.as_str().unwrap_or("plugin"),
                p.decl.name
            );
        }
    }
    if backbones.is_empty() {
        log::warn!("no backbone configured: messages will not be routed");
    }

    let bus = bus::Bus::new(&cfg.core);
    if let Some(m) = &cfg.metrics {
        let exposition = std::sync::Arc::new(metrics::Exposition::new(bus.clone()));
        let addr = metrics_http::start(&m.host, m.port, exposition)?;
        log::info!("metrics: Prometheus metrics at http://{addr}/metrics");
    }
    if cfg.logging.stats_interval > 0 {
        start_stats_line(bus.clone(), cfg.logging.stats_interval)?;
    }
    log::info!("Starting plugins...");
    let started = (|| {
        for (p, conf) in &backbones {
            bus.start_plugin(p, conf)?;
        }
        bus.subscribe_core()?;
        for (p, conf) in &apps {
            bus.start_plugin(p, conf)?;
        }
        bus.start_snapshots()?;
        Ok::<(), String>(())
    })();
    if let Err(e) = started {
        bus.stop();
        return Err(e);
    }
    log::info!(
        "Threat Bus running: backbones [{}], apps [{}]",
        bus.names(PluginKind::BACKBONE).join(", "),
        bus.names(PluginKind::APP).join(", ")
    );

    // Wait for a signal, or until no backbone is left to route messages.
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<i32>(4);
    let handle = signals.handle();
    let mut signals = signals;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen > 1 {
                    eprintln!("threatbus: second signal {sig}; exiting immediately");
                    std::process::exit(1);
                }
                let _ = sig_tx.send(sig);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let failures = &bus::failures().1;
    let outcome = loop {
        crossbeam_channel::select! {
            recv(sig_rx) -> sig => {
                log::info!("received signal {}; shutting down", sig.unwrap_or(0));
                break Ok(());
            }
            recv(failures) -> _ => {
                if bus.all_backbones_failed() {
                    break Err("every backbone has failed, so no message can be routed; stopping (exit status 1, so that a service manager restarts the bus)".to_string());
                }
            }
        }
    };
    if let Err(e) = &outcome {
        log::error!("{e}");
    }
    bus.stop();
    handle.close();
    log::logger().flush();
    outcome
}
