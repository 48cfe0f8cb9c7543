//! The official TypeScript MCP SDK client (`@modelcontextprotocol/sdk`, pinned in
//! `tests/clients/typescript/package.json`): installing it, and running the scripts of
//! `tests/clients/typescript/` that drive gateways through it. Needs Node.js >= 18 and npm.

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory of the TypeScript client scripts and their locked dependencies.
pub fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/typescript")
}

/// Runs `program args` and returns its trimmed stdout, or a clear error if it cannot run.
async fn tool_version(program: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!(
                "`{program}` was not found: this test needs Node.js >= 18 and npm on PATH \
                 (install Node.js >= 18, which ships npm, e.g. from https://nodejs.org/)"
            )
        })?;
    ensure!(
        out.status.success(),
        "`{program} --version` failed ({}): this test needs Node.js >= 18 and npm on PATH",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Node.js >= 18 and npm are present.
pub async fn check_node() -> anyhow::Result<()> {
    let node = tool_version("node").await?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot parse `node --version` output {node:?}"))?;
    ensure!(
        major >= 18,
        "Node.js {node} is too old: this test needs Node.js >= 18 (and npm)"
    );
    tool_version("npm").await?;
    Ok(())
}

/// The SDK version the package manifest pins.
fn pinned_sdk_version(dir: &Path) -> anyhow::Result<String> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json"))?)?;
    manifest["dependencies"]["@modelcontextprotocol/sdk"]
        .as_str()
        .map(str::to_owned)
        .context("package.json does not depend on @modelcontextprotocol/sdk")
}

/// The SDK version installed under node_modules, if any.
fn installed_sdk_version(dir: &Path) -> Option<String> {
    let text =
        std::fs::read_to_string(dir.join("node_modules/@modelcontextprotocol/sdk/package.json"))
            .ok()?;
    let manifest: Value = serde_json::from_str(&text).ok()?;
    manifest["version"].as_str().map(str::to_owned)
}

/// Installs the locked dependencies unless the pinned SDK is installed already.
pub async fn ensure_sdk_installed(dir: &Path) -> anyhow::Result<()> {
    let pinned = pinned_sdk_version(dir)?;
    if installed_sdk_version(dir).as_deref() == Some(pinned.as_str()) {
        return Ok(());
    }
    crate::tools::npm_ci(dir).await?;
    let installed = installed_sdk_version(dir);
    ensure!(
        installed.as_deref() == Some(pinned.as_str()),
        "after npm ci the SDK version is {installed:?}, expected {pinned}"
    );
    Ok(())
}

/// Runs `node SCRIPT ARGS...` in `dir`; returns the JSON of the last line it prints.
pub async fn run_script(dir: &Path, script: &str, args: &[&str]) -> anyhow::Result<Value> {
    let child = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn node {script}"))?;
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.with_context(|| format!("wait for node {script}"))?,
        Err(_) => bail!("node {script} did not finish within {SCRIPT_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        eprintln!("{script} stderr:\n{stderr}");
    }
    ensure!(
        out.status.success(),
        "node {script} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{script} printed nothing on stdout; stderr: {stderr}"))?;
    serde_json::from_str(line).with_context(|| format!("{script} printed a non-JSON line: {line}"))
}
