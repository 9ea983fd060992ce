//! Fuzzing of the Broker decoders (see `threatbus-fuzz`).

use threatbus_fuzz::run_target;

#[test]
fn fuzz_broker_values() {
    run_target("broker-value", |data| {
        let _ = threatbus_app_zeek::value::decode(data);
    });
}

#[test]
fn fuzz_broker_handshakes() {
    run_target("broker-handshake", |data| {
        let _ = threatbus_app_zeek::wire::Handshake::decode(data);
    });
}

#[test]
fn fuzz_broker_envelopes() {
    run_target("broker-envelope", |data| {
        let _ = threatbus_app_zeek::wire::Envelope::decode(data);
    });
}
