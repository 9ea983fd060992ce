//! Console and file logging as configured in the `logging` section, with
//! `RUST_LOG` taking precedence for fine-grained (per-plugin) filters.

use std::io::Write;

use crate::config::Logging;

struct Tee {
    sinks: Vec<env_logger::Logger>,
}

impl log::Log for Tee {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.sinks.iter().any(|s| s.enabled(m))
    }
    fn log(&self, r: &log::Record<'_>) {
        // Each sink applies its own filter.
        for s in &self.sinks {
            s.log(r);
        }
    }
    fn flush(&self) {
        for s in &self.sinks {
            s.flush();
        }
    }
}

fn builder(level: log::LevelFilter) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.format(|buf, r| {
        let target = r.target();
        let name = if target.starts_with("threatbus::") || target == "threatbus" {
            target.to_string()
        } else {
            format!("threatbus::{target}")
        };
        writeln!(buf, "{} {:<8} [{}] {}", buf.timestamp_millis(), level_name(r.level()), name, r.args())
    });
    b
}

fn level_name(l: log::Level) -> &'static str {
    match l {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}

/// Installs the host logger. Returns an error if the log file cannot be opened.
pub fn init(cfg: &Logging) -> Result<(), String> {
    let mut sinks = Vec::new();
    if cfg.console {
        let mut b = builder(cfg.console_verbosity.level_filter());
        b.target(env_logger::Target::Stderr);
        sinks.push(b.build());
    }
    if cfg.file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.filename)
            .map_err(|e| format!("cannot open log file {}: {e}", cfg.filename.display()))?;
        let mut b = builder(cfg.file_verbosity.level_filter());
        b.target(env_logger::Target::Pipe(Box::new(f)));
        b.write_style(env_logger::WriteStyle::Never);
        sinks.push(b.build());
    }
    let max = sinks.iter().map(|s| s.filter()).max().unwrap_or(log::LevelFilter::Off);
    log::set_boxed_logger(Box::new(Tee { sinks })).map_err(|e| e.to_string())?;
    log::set_max_level(max);
    Ok(())
}

/// Logger for subcommands: warnings and errors to stderr.
pub fn init_quiet() {
    let _ = builder(log::LevelFilter::Warn).try_init();
}
