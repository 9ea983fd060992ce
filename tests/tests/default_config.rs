//! The shipped `config.yaml.example` starts the inmem backbone and the zmq
//! app, as the README's run command does (ports moved through the
//! documented THREATBUS_* overrides so that parallel tests do not collide).

use threatbus_integration_tests::*;

#[test]
fn example_config_starts_inmem_and_zmq_and_stops_cleanly() {
    // The file itself, by its shipped name, as in the README's run command.
    let example = workspace_root().join("config.yaml.example");
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let (manage, publ, sub) = (free_port().to_string(), free_port().to_string(), free_port().to_string());
    let mut bus = Bus::spawn_args(
        &["-c".as_ref(), example.as_os_str(), "--plugin-dir".as_ref(), dir.path().as_os_str()],
        &[
            ("THREATBUS_PLUGINS__APPS__ZMQ__MANAGE", &manage),
            ("THREATBUS_PLUGINS__APPS__ZMQ__PUB", &publ),
            ("THREATBUS_PLUGINS__APPS__ZMQ__SUB", &sub),
        ],
    );
    bus.wait_for("Threat Bus running: backbones [inmem], apps [zmq]");
    assert!(
        bus.log().contains(&format!("tcp://127.0.0.1:{manage}")),
        "zmq must bind 127.0.0.1 by default:\n{}",
        bus.log()
    );
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}
