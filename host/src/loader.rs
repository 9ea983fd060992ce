//! Finding, checking and opening plugin libraries.
//!
//! Order of checks for every `*.so` file: ownership and permissions of file
//! and directory, `dlopen` (RTLD_NOW | RTLD_LOCAL), the declaration symbol,
//! magic and size, ABI major/minor, panic strategy, kind and name, then the
//! `abi_stable` layout check. Only then may the entry function be called.
//! Libraries are never unloaded.

use std::ffi::c_void;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use threatbus_plugin_api::abi::{
    AbiRoot, EntryFn, PluginDeclaration, PluginKind, ABI_MAJOR, ABI_MINOR, API_VERSION, DECLARATION_SYMBOL,
    PLUGIN_MAGIC,
};
use threatbus_plugin_api::abi_stable::{
    abi_stability::abi_checking::check_layout_compatibility, type_layout::TypeLayout, StableAbi,
};

/// What the declaration of a plugin file says.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub name: String,
    pub kind: PluginKind,
    pub plugin_version: String,
    pub api_version: String,
    pub abi_major: u32,
    pub abi_minor: u32,
}

/// A plugin library that passed every check.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub decl: Declaration,
    pub entry: EntryFn,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.decl.name, self.path.display())
    }
}

/// Why a file is not used. `decl` is set when the declaration was readable.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub path: PathBuf,
    pub decl: Option<Box<Declaration>>,
    pub reason: String,
}

/// Result of scanning one file.
pub type Checked = Result<LoadedPlugin, Rejection>;

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

/// Runs every check on one file and opens it. Does not call plugin code
/// other than the library's own constructors.
pub fn check_file(path: &Path) -> Checked {
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(dir) = path.parent() {
        check_permissions(dir, "plugin directory").map_err(|r| reject(path, None, r))?;
    }
    check_permissions(path, "file").map_err(|r| reject(path, None, r))?;

    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading a library runs its constructors; the directory is
    // trusted configuration and was checked above.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        reject(
            path,
            None,
            format!("cannot load plugin {}: {e}; check that it was built for this system and that its libraries are installed (ldd {})", path.display(), path.display()),
        )
    })?;
    // SAFETY: the symbol is only read as bytes until magic and size match.
    let sym = unsafe { lib.get::<*const c_void>(DECLARATION_SYMBOL) };
    let addr = match sym {
        Ok(s) => *s as *const u8,
        Err(_) => {
            std::mem::forget(lib);
            return Err(reject(
                path,
                None,
                format!(
                    "{} is not a threatbus plugin (symbol THREATBUS_PLUGIN not found); plugins must use threatbus_plugin_api::export_plugin!",
                    path.display()
                ),
            ));
        }
    };
    // Never unload: dlclose of Rust libraries is unsound (TLS destructors).
    std::mem::forget(lib);

    // SAFETY: the symbol points at least at the 16 magic bytes and the size
    // field of a declaration, or at unrelated readable data of the library.
    let magic: [u8; 16] = unsafe { std::ptr::read_unaligned(addr as *const [u8; 16]) };
    let size: u32 = unsafe { std::ptr::read_unaligned(addr.add(16) as *const u32) };
    if magic != PLUGIN_MAGIC || (size as usize) < std::mem::size_of::<PluginDeclaration>() {
        return Err(reject(
            path,
            None,
            format!(
                "{}: plugin declaration is corrupt or from an unsupported plugin-api (bad magic or size); rebuild the plugin against threatbus-plugin-api {API_VERSION}",
                path.display()
            ),
        ));
    }
    // SAFETY: magic and size say this is a declaration of at least our size.
    let raw: &PluginDeclaration = unsafe { &*(addr as *const PluginDeclaration) };
    let decl = Declaration {
        name: unsafe { PluginDeclaration::c_str(raw.name) }.unwrap_or("").to_string(),
        kind: PluginKind(raw.kind),
        plugin_version: unsafe { PluginDeclaration::c_str(raw.plugin_version) }.unwrap_or("?").to_string(),
        api_version: unsafe { PluginDeclaration::c_str(raw.api_version) }.unwrap_or("?").to_string(),
        abi_major: raw.abi_major,
        abi_minor: raw.abi_minor,
    };
    let name = decl.name.clone();
    let fail = |reason: String| reject(path, Some(decl.clone()), reason);
    if decl.abi_major != ABI_MAJOR {
        return Err(fail(format!(
            "plugin '{name}' {} ({}) was built for plugin-api {}.x, but this threatbus {} supports {ABI_MAJOR}.x; rebuild it against plugin-api {ABI_MAJOR}.x or install a matching threatbus",
            decl.plugin_version,
            path.display(),
            decl.abi_major,
            env!("CARGO_PKG_VERSION"),
        )));
    }
    if decl.abi_minor > ABI_MINOR {
        return Err(fail(format!(
            "plugin '{name}' ({}) needs plugin-api >= {}.{} but threatbus {} provides {ABI_MAJOR}.{ABI_MINOR}; upgrade threatbus",
            path.display(),
            decl.abi_major,
            decl.abi_minor,
            env!("CARGO_PKG_VERSION"),
        )));
    }
    if raw.panic_unwind != 1 {
        return Err(fail(format!(
            "plugin '{name}' ({}) was built with panic=abort; a panic in it would kill threatbus; rebuild with panic = \"unwind\"",
            path.display()
        )));
    }
    if decl.kind.as_str().is_none() {
        return Err(fail(format!("plugin '{name}' ({}) declares unknown kind {}", path.display(), decl.kind.0)));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(fail(format!("plugin in {} has an invalid name '{name}' (expected [a-z0-9_-]+)", path.display())));
    }
    if raw.abi_layout.is_null() {
        return Err(fail(format!("plugin '{name}' ({}) has no type layout", path.display())));
    }
    // SAFETY: set by PluginDeclaration::new to a &'static TypeLayout of the
    // same pinned abi_stable version (guaranteed by equal ABI major).
    let theirs: &'static TypeLayout = unsafe { &*(raw.abi_layout as *const TypeLayout) };
    if let Err(e) = check_layout_compatibility(<AbiRoot as StableAbi>::LAYOUT, theirs) {
        let full = e.to_string();
        log::debug!("layout check of {} failed:\n{full}", path.display());
        let first = full.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
        return Err(fail(format!(
            "plugin '{name}' ({}): type layout differs from plugin-api {API_VERSION} (first difference: {first}); run with RUST_LOG=debug for details",
            path.display()
        )));
    }
    Ok(LoadedPlugin { path: path.to_path_buf(), decl, entry: raw.entry })
}

/// Checks every file of a directory; later files with an already-seen
/// plugin name are rejected as duplicates.
pub fn check_dir(dir: &Path) -> Result<Vec<Checked>, String> {
    check_permissions(dir, "plugin directory")?;
    let mut out: Vec<Checked> = Vec::new();
    for path in scan(dir)? {
        let checked = check_file(&path);
        let checked = match checked {
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
