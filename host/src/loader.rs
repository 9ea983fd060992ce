//! Finding, checking and opening plugin libraries.
//!
//! Two stages, so that no plugin code runs before the host decides to run
//! it:
//! 1. [`check_file`] (every `*.so` of the directory, for `plugins list`,
//!    `plugins inspect` and start-up): ownership and permissions of file and
//!    directory, then the file is *read*, not loaded: it must be a complete
//!    ELF shared object of this machine's kind whose `THREATBUS_PLUGIN_MANIFEST`
//!    (magic, size, ABI major/minor, `abi_stable` header, panic strategy,
//!    kind, name) this host accepts.
//! 2. [`open`] (only the plugins the config names): `dlopen` with
//!    RTLD_NOW | RTLD_LOCAL, the `THREATBUS_PLUGIN_ENTRY` symbol, and the
//!    `abi_stable` layout check of the plugin's ABI minor. Only then may the
//!    entry function be called. Libraries are never unloaded.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use threatbus_plugin_api::abi::{
    layout_of_minor, manifest_str, EntryFn, PluginEntryPoint, PluginKind, PluginManifest, ABI_MAJOR, ABI_MINOR,
    ENTRY_SYMBOL, MANIFEST_SYMBOL, PLUGIN_MAGIC,
};
use threatbus_plugin_api::abi_stable::abi_stability::abi_checking::check_layout_compatibility;

/// Plugin files larger than this are refused before they are read.
const MAX_PLUGIN_FILE_SIZE: u64 = 1 << 30;

/// What the manifest of a plugin file says.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub name: String,
    pub kind: PluginKind,
    pub plugin_version: String,
    pub api_version: String,
    pub abi_major: u32,
    pub abi_minor: u32,
}

/// A plugin file whose manifest passed every check; not loaded yet.
#[derive(Debug, Clone)]
pub struct CheckedPlugin {
    pub path: PathBuf,
    pub decl: Declaration,
}

/// Why a file is not used. `decl` is set when the manifest was readable.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub path: PathBuf,
    pub decl: Option<Box<Declaration>>,
    pub reason: String,
}

/// Result of checking one file.
pub type Checked = Result<CheckedPlugin, Rejection>;

fn reject(path: &Path, decl: Option<Declaration>, reason: String) -> Rejection {
    Rejection { path: path.to_path_buf(), decl: decl.map(Box::new), reason }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Refuses files and directories that others could have written.
pub fn check_permissions(path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat {what} {}: {e}", path.display()))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "refusing to load plugin {}: {what} is writable by group/others (mode {mode:04o}); run chmod go-w {}",
            path.display(),
            path.display()
        ));
    }
    let uid = meta.uid();
    if uid != 0 && uid != euid() {
        return Err(format!(
            "refusing to load plugin {}: {what} is owned by uid {uid}, not by root or the service user (uid {}); run chown root {}",
            path.display(),
            euid(),
            path.display()
        ));
    }
    Ok(())
}

/// Checks where a plugin file really is: after resolving symlinks, the file
/// and every directory on its real path up to `/` must pass
/// [`check_permissions`], so that a link cannot lead to a file that others
/// could have replaced. A directory writable by others passes only when it
/// has the sticky bit and belongs to root (as `/tmp`): there nobody can
/// replace an entry that is not theirs. Returns the real path.
pub fn check_real_path(path: &Path) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot resolve plugin {}: {e}", path.display()))?;
    if real != path {
        check_permissions(&real, "file (the target of a symlink)")
            .map_err(|e| format!("{e} (reached through {})", path.display()))?;
    }
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
        let sticky_root = meta.mode() & 0o1000 != 0 && meta.uid() == 0;
        if sticky_root {
            continue;
        }
        check_permissions(dir, "directory on the plugin's real path").map_err(|e| {
            if real == path {
                e
            } else {
                format!("{e} (the plugin {} resolves to {})", path.display(), real.display())
            }
        })?;
    }
    Ok(real)
}

/// Every `*.so` file in `dir`, sorted by name.
pub fn scan(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read plugin directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the manifest bytes of an ELF shared object without loading it.
fn read_manifest(path: &Path) -> Result<PluginManifest, String> {
    let shown = path.display();
    let size = std::fs::metadata(path).map_err(|e| format!("cannot stat {shown}: {e}"))?.len();
    if size > MAX_PLUGIN_FILE_SIZE {
        return Err(format!("{shown} is larger than {MAX_PLUGIN_FILE_SIZE} bytes; not a plugin"));
    }
    // Only the parts the checks need are read (headers, the dynamic
    // symbols, the manifest's section), not the whole file: plugins with
    // debug info are many megabytes, and a full read would leave that much
    // in the heap of a long-running process.
    let handle = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let cache = object::read::ReadCache::new(handle);
    let file = object::File::parse(&cache)
        .map_err(|e| format!("{shown} is not a shared library, or it is truncated or corrupt: {e}"))?;
    if file.format() != object::BinaryFormat::Elf || file.kind() != object::ObjectKind::Dynamic {
        return Err(format!("{shown} is not an ELF shared library"));
    }
    let ours = if cfg!(target_arch = "x86_64") {
        Some(object::Architecture::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(object::Architecture::Aarch64)
    } else {
        None
    };
    if ours.is_some_and(|a| a != file.architecture()) || file.is_little_endian() != cfg!(target_endian = "little") {
        return Err(format!("{shown} was built for {:?}, not for this machine", file.architecture()));
    }
    // A truncated file would be mapped past its end by the dynamic loader
    // (SIGBUS on first touch): every loadable segment must lie in the file.
    for segment in file.segments() {
        let (offset, len) = segment.file_range();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(format!(
                "{shown} is truncated or corrupt: a segment ends at byte {} but the file has {size} bytes",
                offset.saturating_add(len),
            ));
        }
    }
    let symbol = file.dynamic_symbols().find(|s| s.name() == Ok(MANIFEST_SYMBOL)).ok_or_else(|| {
        format!("{shown} is not a threatbus plugin (no {MANIFEST_SYMBOL} symbol); plugins must use threatbus_plugin_api::export_plugin!")
    })?;
    let want = std::mem::size_of::<PluginManifest>();
    let data = symbol
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .and_then(|section| section.data_range(symbol.address(), want as u64).ok().flatten())
        .ok_or_else(|| format!("{shown}: {MANIFEST_SYMBOL} does not point at data in the file"))?;
    if data.len() < 20 || data[..16] != PLUGIN_MAGIC {
        return Err(format!(
            "{shown}: plugin manifest is corrupt (bad magic); rebuild the plugin against threatbus-plugin-api"
        ));
    }
    let manifest_size = u32::from_ne_bytes([data[16], data[17], data[18], data[19]]) as usize;
    if manifest_size != want || data.len() < want {
        return Err(format!(
            "{shown}: plugin manifest has {manifest_size} bytes, this threatbus reads {want}; the file is corrupt or not built with threatbus-plugin-api"
        ));
    }
    // SAFETY: `data` holds at least `size_of::<PluginManifest>()` bytes, and
    // every bit pattern is a valid manifest (integers and byte arrays).
    Ok(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<PluginManifest>()) })
}

/// Runs every check that needs no plugin code on one file (see the module
/// docs).
pub fn check_file(path: &Path) -> Checked {
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(dir) = path.parent() {
        check_permissions(dir, "plugin directory").map_err(|r| reject(path, None, r))?;
    }
    check_permissions(path, "file").map_err(|r| reject(path, None, r))?;
    let real = check_real_path(path).map_err(|r| reject(path, None, r))?;
    let m = read_manifest(&real).map_err(|r| reject(path, None, r))?;
    let decl = Declaration {
        name: manifest_str(&m.name).unwrap_or("").to_string(),
        kind: PluginKind(m.kind),
        plugin_version: manifest_str(&m.plugin_version).unwrap_or("?").to_string(),
        api_version: manifest_str(&m.api_version).unwrap_or("?").to_string(),
        abi_major: m.abi_major,
        abi_minor: m.abi_minor,
    };
    let name = decl.name.clone();
    let fail = |reason: String| reject(path, Some(decl.clone()), reason);
    if decl.abi_major != ABI_MAJOR {
        return Err(fail(format!(
            "plugin '{name}' {} ({}) was built for plugin ABI {}.x, but this threatbus {} supports ABI {ABI_MAJOR}.x; rebuild it against a plugin-api of ABI {ABI_MAJOR} or install a matching threatbus",
            decl.plugin_version,
            path.display(),
            decl.abi_major,
            env!("CARGO_PKG_VERSION"),
        )));
    }
    if decl.abi_minor > ABI_MINOR {
        return Err(fail(format!(
            "plugin '{name}' ({}) needs plugin ABI >= {}.{} but threatbus {} provides {ABI_MAJOR}.{ABI_MINOR}; upgrade threatbus",
            path.display(),
            decl.abi_major,
            decl.abi_minor,
            env!("CARGO_PKG_VERSION"),
        )));
    }
    if !m.abi_stable_compatible() {
        return Err(fail(format!(
            "plugin '{name}' ({}) was built with an incompatible abi_stable (ABI {}.{}); rebuild it against threatbus-plugin-api",
            path.display(),
            m.abi_stable_major,
            m.abi_stable_minor
        )));
    }
    if m.panic_unwind != 1 {
        return Err(fail(format!(
            "plugin '{name}' ({}) was built with panic=abort; a panic in it would kill threatbus; rebuild with panic = \"unwind\"",
            path.display()
        )));
    }
    if decl.kind.as_str().is_none() {
        return Err(fail(format!("plugin '{name}' ({}) declares unknown kind {}", path.display(), decl.kind.0)));
    }
    if !threatbus_plugin_api::abi::is_valid_name(&name) {
        return Err(fail(format!("plugin in {} has an invalid name '{name}' (expected [a-z0-9_-]+)", path.display())));
    }
    Ok(CheckedPlugin { path: path.to_path_buf(), decl })
}

/// The difference of a failed layout check that lies deepest in the type
/// tree (the most specific one), as `in Root > field: Type > …: what`.
fn first_layout_difference(
    e: &threatbus_plugin_api::abi_stable::abi_stability::abi_checking::AbiInstabilityErrors,
) -> String {
    use threatbus_plugin_api::abi_stable::type_layout::TLFieldOrFunction;
    let Some(first) = e.errors.iter().max_by_key(|err| err.stack_trace.len()) else {
        return "no details".to_string();
    };
    let path: Vec<String> = first
        .stack_trace
        .iter()
        .map(|step| match &step.expected {
            TLFieldOrFunction::Field(f) => format!("{}: {}", f.name(), f.layout().full_type()),
            TLFieldOrFunction::Function(f) => format!("fn {}", f.name),
        })
        .collect();
    let what = first.errs.first().map(|k| format!("{k:?}")).unwrap_or_default();
    let what: String = what.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(240).collect();
    format!("in {} > {}: {what}", e.interface.full_type(), path.join(" > "))
}

/// The text of a libloading error and the loader's own text under it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Loads a checked plugin: `dlopen`, the entry point, the layout check.
/// Runs the library's constructors; call only for configured plugins.
pub fn open(plugin: &CheckedPlugin) -> Result<EntryFn, String> {
    let path = &plugin.path;
    let name = &plugin.decl.name;
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading a library runs its constructors; the file passed the
    // ownership, permission and manifest checks, and the config names it.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        format!(
            "cannot load plugin '{name}' ({}): {}; check that it was built for this system and that its libraries are installed (ldd {})",
            path.display(),
            error_chain(&e),
            path.display()
        )
    })?;
    // SAFETY: the symbol is the `PluginEntryPoint` static the export macro
    // emits (its manifest said so); only its address is taken here.
    let sym = unsafe { lib.get::<*const PluginEntryPoint>(ENTRY_SYMBOL.as_bytes()) };
    let addr: *const PluginEntryPoint = match sym {
        Ok(s) => *s,
        Err(e) => {
            std::mem::forget(lib);
            return Err(format!("plugin '{name}' ({}) has no {ENTRY_SYMBOL}: {}", path.display(), error_chain(&e)));
        }
    };
    // Never unload: dlclose of Rust libraries is unsound (TLS destructors).
    std::mem::forget(lib);
    // SAFETY: a plugin whose manifest this host accepted exports this frozen
    // struct under this name; it lives as long as the never-unloaded library.
    let entry_point: &'static PluginEntryPoint = unsafe { &*addr };
    if entry_point.magic != PLUGIN_MAGIC
        || entry_point.abi_major != plugin.decl.abi_major
        || entry_point.abi_minor != plugin.decl.abi_minor
    {
        return Err(format!("plugin '{name}' ({}): entry point does not match its manifest", path.display()));
    }
    let ours = layout_of_minor(entry_point.abi_minor)
        .ok_or_else(|| format!("plugin '{name}': no layout known for ABI minor {}", entry_point.abi_minor))?;
    // The abi_stable header was checked from the manifest, so the layout
    // pointer is an abi_stable `TypeLayout` of a compatible version.
    if let Err(e) = check_layout_compatibility(ours, entry_point.layout) {
        log::debug!("layout check of {} failed:\n{e}", path.display());
        return Err(format!(
            "plugin '{name}' ({}): its types differ from those of plugin ABI {ABI_MAJOR}.{} (first difference {}); rebuild it against threatbus-plugin-api; RUST_LOG=debug shows the full report",
            path.display(),
            entry_point.abi_minor,
            first_layout_difference(&e)
        ));
    }
    Ok(entry_point.entry)
}

/// Checks every file of a directory; later files with an already-seen
/// plugin name are rejected as duplicates.
pub fn check_dir(dir: &Path) -> Result<Vec<Checked>, String> {
    check_permissions(dir, "plugin directory")?;
    let mut out: Vec<Checked> = Vec::new();
    for path in scan(dir)? {
        let checked = match check_file(&path) {
            Ok(p) => {
                let dup = out.iter().find_map(|c| c.as_ref().ok().filter(|o| o.decl.name == p.decl.name));
                match dup {
                    Some(first) => Err(reject(
                        &p.path,
                        Some(p.decl.clone()),
                        format!(
                            "plugin name '{}' is provided by both {} and {}; ignoring {}",
                            p.decl.name,
                            first.path.display(),
                            p.path.display(),
                            p.path.display()
                        ),
                    )),
                    None => Ok(p),
                }
            }
            Err(r) => Err(r),
        };
        out.push(checked);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use threatbus_plugin_api::abi_stable::StableAbi;

    mod ours {
        use abi_stable::StableAbi;
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct Inner {
            pub count: u32,
        }
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct Root {
            pub name: u8,
            pub inner: Inner,
        }
    }

    mod theirs {
        use abi_stable::StableAbi;
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct Inner {
            pub count: u64,
        }
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct Root {
            pub name: u8,
            pub inner: Inner,
        }
    }

    #[test]
    fn layout_mismatch_names_the_type_and_field() {
        let e = check_layout_compatibility(<ours::Root as StableAbi>::LAYOUT, <theirs::Root as StableAbi>::LAYOUT)
            .expect_err("the layouts differ");
        let first = first_layout_difference(&e);
        assert!(first.starts_with("in Root > inner: Inner > count: u32"), "{first}");
    }
}
