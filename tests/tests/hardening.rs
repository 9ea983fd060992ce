//! The bus under the restrictions of its systemd unit that can be applied
//! without systemd: `MemoryDenyWriteExecute=yes` is the kernel's MDWE
//! (`prctl(PR_SET_MDWE)`, Linux 6.3 and later), which a small wrapper sets
//! before it executes the real binary.

mod zmq_support;

use std::ffi::OsStr;

use serde_json::json;
use threatbus_integration_tests::*;
use zmq_support::*;

/// Sets MDWE (refuse memory that turns executable after being writable),
/// says so, and executes the command in argv[1:].
const MDWE_WRAPPER: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_GET_MDWE, REFUSE_EXEC_GAIN = 65, 66, 1
if libc.prctl(PR_SET_MDWE, REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_MDWE) failed: %s (the kernel needs to be 6.3 or later)" % os.strerror(ctypes.get_errno()))
print("MDWE on: %d" % libc.prctl(PR_GET_MDWE, 0, 0, 0, 0), flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn zmq_and_openssl_run_with_memory_deny_write_execute() {
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq", "threatbus_app_zeek"]);
    let config = config(Ports::ANY, "")
        .replace("  apps:\n", "  apps:\n    zeek:\n      host: 127.0.0.1\n      port: 0\n      tls: anonymous\n");
    let cfg = config_file(&config);
    let bin = threatbus_bin();
    let args: Vec<&OsStr> = vec![
        "-c".as_ref(),
        MDWE_WRAPPER.as_ref(),
        bin.as_os_str(),
        "-c".as_ref(),
        cfg.path().as_os_str(),
        "--plugin-dir".as_ref(),
        dir.path().as_os_str(),
    ];
    let mut bus = Bus::spawn_bin(std::path::Path::new("/usr/bin/python3"), &args, &[]);
    bus.wait_for("MDWE on: 1");
    bus.wait_for("Zeek app plugin started");
    let line = bus.log().lines().find(|l| l.contains("Zeek app plugin started")).unwrap().to_string();
    let zeek_port: u16 = line.split("127.0.0.1:").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let mut zmq = ZmqBus::from_started(bus, dir);

    // libzmq: a whole subscription round trip.
    let a = zmq.subscribe(json!("stix2/indicator"), 0);
    let app = zmq.publisher();
    app.sync(&[&a]);
    app.indicator(&indicator_json(0x00d0_e001, 1));
    assert_eq!(a.recv_real().id(), indicator_id(0x00d0_e001, 1));

    // OpenSSL: a TLS handshake with the zeek plugin.
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{zeek_port}"), "-tls1_2"])
        .args(["-cipher", "AECDH-AES256-SHA@SECLEVEL=0", "-groups", "P-384"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client (Debian package openssl) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Cipher is AECDH-AES256-SHA"), "{text}");
    assert!(zmq.bus.terminate().success(), "{}", zmq.bus.log());
}
