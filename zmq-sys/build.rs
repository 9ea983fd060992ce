//! Chooses the libzmq to link and generates its constants from its zmq.h.
//!
//! `THREATBUS_LIBZMQ`: `auto` (default) links the system's libzmq (>= 4.3,
//! found with pkg-config: Debian's libzmq5, which has CURVE through
//! libsodium) and falls back to building the copy of libzmq 4.3.4 that the
//! zeromq-src crate carries (without CURVE); `system` or `bundled` force
//! one of them.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=THREATBUS_LIBZMQ");
    println!("cargo:rerun-if-changed=build.rs");
    let mode = env::var("THREATBUS_LIBZMQ").unwrap_or_else(|_| "auto".into());
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let system = match mode.as_str() {
        "bundled" => None,
        "auto" | "system" => match pkg_config::Config::new().atleast_version("4.3").probe("libzmq") {
            Ok(lib) => Some(lib),
            Err(e) if mode == "system" => panic!("THREATBUS_LIBZMQ=system, but pkg-config finds no libzmq >= 4.3: {e}"),
            Err(_) => None,
        },
        other => panic!("THREATBUS_LIBZMQ must be auto, system or bundled, not {other:?}"),
    };
    let header = match system {
        Some(lib) => {
            println!("cargo:rustc-cfg=threatbus_libzmq_system");
            lib.include_paths
                .iter()
                .map(|p| p.join("zmq.h"))
                .chain([PathBuf::from("/usr/include/zmq.h")])
                .find(|p| p.exists())
                .expect("zmq.h of the system's libzmq")
        }
        None => {
            // libzmq's own warnings are not ours to fix; keep the build quiet.
            let flags = env::var("CXXFLAGS").unwrap_or_default();
            env::set_var("CXXFLAGS", format!("{flags} -w"));
            zeromq_src::Build::new().build();
            out.join("source/include/zmq.h")
        }
    };
    println!("cargo:rustc-check-cfg=cfg(threatbus_libzmq_system)");
    println!("cargo:rerun-if-changed={}", header.display());
    let consts = constants(&header);
    std::fs::write(out.join("constants.rs"), consts).expect("write constants.rs");
}

/// `pub const ZMQ_X: u32 = N;` for every `#define ZMQ_X <integer>` of the
/// header (the first definition of a name wins; negative ones are `i32`).
fn constants(header: &Path) -> String {
    let text = std::fs::read_to_string(header).unwrap_or_else(|e| panic!("{}: {e}", header.display()));
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else { continue };
        if !name.starts_with("ZMQ_") || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        let parsed = if let Some(hex) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
            i64::from_str_radix(hex, 16).ok()
        } else {
            value.parse::<i64>().ok()
        };
        if let Some(v) = parsed {
            found.entry(name.to_string()).or_insert(v);
        }
    }
    assert!(found.contains_key("ZMQ_XPUB_MANUAL"), "{} does not look like zmq.h of libzmq 4.3", header.display());
    let mut out = String::new();
    for (name, v) in found {
        if v < 0 {
            writeln!(out, "pub const {name}: i32 = {v};").unwrap();
        } else {
            writeln!(out, "pub const {name}: u32 = {v};").unwrap();
        }
    }
    out
}
