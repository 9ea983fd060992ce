//! Fuzzing of the zmq app's decoders (see `threatbus-fuzz`).

use threatbus_fuzz::run_target;

/// A frame on the sub port, then the host's validation of its JSON, as
/// the receiver does it.
fn zmq_frame(data: &[u8]) {
    if let Ok((_, _, json)) = threatbus_app_zmq::split_frame(data) {
        if let Ok(obj) = threatbus_stix::parse_stix2(json) {
            let _ = obj.to_json();
        }
    }
}

#[test]
fn fuzz_sub_port_frames() {
    run_target("zmq-frame", zmq_frame);
}

#[test]
fn fuzz_management_requests() {
    run_target("zmq-management", |data| {
        let _ = threatbus_app_zmq::parse_request(data);
    });
}
