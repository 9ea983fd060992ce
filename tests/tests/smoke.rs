use threatbus_integration_tests::*;

#[test]
fn inmem_loads_and_sigterm_exits_zero() {
    let dir = PluginDir::with(&["threatbus_backbone_inmem"]);
    let mut bus = Bus::start("plugins:\n  backbones:\n    inmem: {}\n  apps: {}\n", dir.path());
    bus.wait_for("In-memory backbone started.");
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}
