//! The seed's demo sequence: one of every kind of notification, in order, then the summary.

use crate::actions::Actions;
use crate::failure::Failure;
use std::time::Duration;

/// The demo's knobs (its defaults take about three seconds).
#[derive(Debug, Clone, clap::Args)]
pub struct Plan {
    /// Steps of the long-running operation.
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// Milliseconds per step.
    #[arg(long, default_value_t = 150)]
    pub step_ms: u64,
    /// Notifications the background task sends.
    #[arg(long, default_value_t = 5)]
    pub ticks: u32,
    /// Milliseconds between them (10 at least).
    #[arg(long, default_value_t = 200)]
    pub tick_ms: u64,
}

/// How long a notification that travels on the standalone stream may take on top of its
/// schedule before the demo reports it missing.
const GRACE: Duration = Duration::from_secs(10);

/// The background task's name (its logger is `task/demo`).
const TASK: &str = "demo";

/// Runs the sequence. A missing notification is a failure, not a shorter summary.
pub async fn run(actions: &Actions, plan: &Plan) -> Result<(), Failure> {
    let feed = actions.feed();

    // 1. A notification on the call's own stream, before its result.
    actions
        .notify(
            "Hello from mcp-notify: a notification on this call's stream",
            Some("info"),
        )
        .await?;

    // 2. A broadcast: it comes back on our standalone stream, like every session's.
    let before = feed.summary().messages_from("broadcast");
    actions
        .broadcast("Hello, every session: a broadcast from mcp-notify", None)
        .await?;
    if feed
        .wait_until(GRACE, |s| s.messages_from("broadcast") > before)
        .await
        .is_err()
    {
        return Err(missing(
            actions,
            format!(
                "the broadcast did not come back on the standalone stream within {} s",
                GRACE.as_secs()
            ),
        ));
    }

    // 3. A long operation with live progress.
    actions
        .operation(Some(plan.steps), Some(plan.step_ms))
        .await?;

    // 4. A background task: its ticks arrive on the standalone stream after the call
    //    returned; wait for all of them, bounded by their schedule plus a grace period.
    let logger = format!("task/{TASK}");
    let before = feed.summary().messages_from(&logger);
    actions
        .task(TASK, Some(plan.ticks), Some(plan.tick_ms))
        .await?;
    let expected = before + u64::from(plan.ticks);
    let timeout = Duration::from_millis(plan.tick_ms.saturating_mul(u64::from(plan.ticks))) + GRACE;
    if let Err(s) = feed
        .wait_until(timeout, |s| s.messages_from(&logger) >= expected)
        .await
    {
        return Err(missing(
            actions,
            format!(
                "only {} of {} background-task notifications arrived within {:.1} s",
                s.messages_from(&logger).saturating_sub(before),
                plan.ticks,
                timeout.as_secs_f64()
            ),
        ));
    }

    // 5. The server's status.
    actions.status().await?;
    Ok(())
}

/// Reports notifications that did not arrive, like a failed command.
fn missing(actions: &Actions, sentence: String) -> Failure {
    actions.rejected("wait", &sentence);
    Failure::Command(sentence)
}
