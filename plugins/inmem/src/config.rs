//! The `plugins.backbones.inmem` config section.

/// The inmem section takes no keys (`inmem: {}`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}
