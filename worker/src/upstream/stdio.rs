//! Stdio upstreams: a child process per upstream session, that dies with its worker.

use rmcp::transport::TokioChildProcess;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncBufReadExt;
use tokio::process::{ChildStderr, Command};

/// Starts `command`. The child is killed when its transport is dropped (the session
/// ended, `initialize` timed out) and, through `PR_SET_PDEATHSIG`, when the worker dies,
/// even by SIGKILL, where no destructor runs.
pub(crate) fn spawn(
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
) -> std::io::Result<(TokioChildProcess, Option<ChildStderr>)> {
    let mut cmd = Command::new(command);
    cmd.args(args).envs(env).kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; prctl and
    // getppid are system calls that allocate nothing.
    unsafe {
        let parent = std::process::id();
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The worker may have died between fork and prctl: then no signal comes.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
}

/// Copies the child's stderr to the worker's log, a line at a time, tagged with the
/// upstream's name and the child's pid.
pub(crate) fn log_stderr(upstream: String, pid: Option<u32>, stderr: ChildStderr) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(upstream = %upstream, pid = pid.unwrap_or(0), "stderr: {line}");
        }
    });
}
