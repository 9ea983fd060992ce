//! The shipped `config.yaml.example` starts the inmem backbone and the zmq
//! app, as the README's run command does (ports moved through the
//! documented THREATBUS_* overrides so that parallel tests do not collide).

use threatbus_integration_tests::*;

#[test]
fn example_config_starts_inmem_and_zmq_and_stops_cleanly() {
    let text = std::fs::read_to_string(workspace_root().join("config.yaml.example")).expect("config.yaml.example");
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let (manage, publ, sub) = (free_port().to_string(), free_port().to_string(), free_port().to_string());
    let mut bus = Bus::start_with_env(
        &text,
        dir.path(),
        &[
            ("THREATBUS_PLUGINS__APPS__ZMQ__MANAGE", &manage),
            ("THREATBUS_PLUGINS__APPS__ZMQ__PUB", &publ),
            ("THREATBUS_PLUGINS__APPS__ZMQ__SUB", &sub),
        ],
    );
    bus.wait_for("Threat Bus running: backbones [inmem], apps [zmq]");
    assert!(bus.log().contains(&format!("tcp://127.0.0.1:{manage}")), "zmq must bind 127.0.0.1 by default:\n{}", bus.log());
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}
