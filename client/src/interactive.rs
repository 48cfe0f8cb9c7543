//! Interactive mode: commands from a line-editing prompt on a terminal, or line by line
//! from a pipe; notifications print as they arrive.
//!
//! On a terminal the prompt runs on its own thread (`rustyline` blocks) and all output goes
//! through its external printer, which clears the prompt, prints, and redraws it with what
//! was typed so far. The prompt comes back only when the command before it has finished,
//! so a progress bar never fights with it. From a pipe, lines are read plainly and output
//! goes straight to stdout.

use crate::actions::Actions;
use crate::command::{self, Command};
use crate::events::Event;
use crate::failure::Failure;
use crate::feed::Feed;
use crate::output::Sink;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

const PROMPT: &str = "mcp-notify> ";

/// The background task's defaults, as `demo-tools.md` gives them; sent explicitly so that
/// `wait` knows how many messages to expect.
const TASK_COUNT: u32 = 5;
const TASK_INTERVAL_MS: u64 = 1000;

/// How long a background task's messages may lag their schedule before `wait` gives up.
const GRACE: Duration = Duration::from_secs(10);

/// How the session ended.
pub struct Ended {
    /// Commands that failed.
    pub failed: u64,
    /// Whether commands came from a pipe (a script), where a failure sets the exit code.
    pub scripted: bool,
}

/// Where command lines come from.
enum Input {
    /// A prompt on its own thread: a line, or `None` at Ctrl-D; it shows the prompt again
    /// when told the command is done.
    Terminal {
        lines: mpsc::UnboundedReceiver<Option<String>>,
        done: std::sync::mpsc::Sender<()>,
    },
    /// Plain lines from a pipe or a file.
    Pipe(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
}

impl Input {
    async fn open(feed: &Feed) -> Self {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            Self::terminal(feed).await
        } else {
            Self::Pipe(BufReader::new(tokio::io::stdin()).lines())
        }
    }

    async fn terminal(feed: &Feed) -> Self {
        let (line_tx, lines) = mpsc::unbounded_channel();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let (sink_tx, sink_rx) = oneshot::channel::<Option<Box<dyn Sink>>>();
        // Before the prompt thread starts, or the prompt would be drawn first.
        feed.flush().await;
        eprintln!("Type help for the commands, quit to leave.");
        let spawned = std::thread::Builder::new()
            .name("prompt".into())
            .spawn(move || prompt_loop(line_tx, done_rx, sink_tx));
        if spawned.is_ok() {
            // Without an external printer (a terminal rustyline cannot drive), output
            // still works; it may just share the line with the prompt.
            if let Ok(Some(sink)) = sink_rx.await {
                feed.set_sink(sink);
            }
            Self::Terminal { lines, done }
        } else {
            Self::Pipe(BufReader::new(tokio::io::stdin()).lines())
        }
    }

    /// The next line; `None` at the end of input.
    async fn next(&mut self) -> Option<String> {
        match self {
            Self::Terminal { lines, .. } => lines.recv().await.flatten(),
            // A read error on stdin ends the input like its end does.
            Self::Pipe(lines) => lines.next_line().await.ok().flatten(),
        }
    }

    /// The command is done: the prompt may come back.
    fn done(&self) {
        if let Self::Terminal { done, .. } = self {
            let _ = done.send(());
        }
    }

    fn scripted(&self) -> bool {
        matches!(self, Self::Pipe(_))
    }
}

/// The prompt thread.
fn prompt_loop(
    lines: mpsc::UnboundedSender<Option<String>>,
    done: std::sync::mpsc::Receiver<()>,
    sink: oneshot::Sender<Option<Box<dyn Sink>>>,
) {
    use rustyline::error::ReadlineError;
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("mcp-notify: the line editor does not work here ({e}); reading plain lines");
            let _ = sink.send(None);
            plain_lines(&lines, &done);
            return;
        }
    };
    let printer = editor
        .create_external_printer()
        .ok()
        .map(|p| Box::new(Printer(p)) as Box<dyn Sink>);
    let _ = sink.send(printer);
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                if lines.send(Some(line)).is_err() || done.recv().is_err() {
                    return;
                }
            }
            // Ctrl-C clears the line, as in a shell.
            Err(ReadlineError::Interrupted) => {}
            Err(_) => {
                let _ = lines.send(None);
                return;
            }
        }
    }
}

/// Fallback when no line editor can be made: blocking plain reads on the prompt thread.
fn plain_lines(
    lines: &mpsc::UnboundedSender<Option<String>>,
    done: &std::sync::mpsc::Receiver<()>,
) {
    let mut buf = String::new();
    loop {
        buf.clear();
        match std::io::stdin().read_line(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = lines.send(None);
                return;
            }
            Ok(_) => {
                if lines.send(Some(buf.trim_end().to_owned())).is_err() || done.recv().is_err() {
                    return;
                }
            }
        }
    }
}

/// The line editor's printer as an output sink.
struct Printer<P>(P);

impl<P: rustyline::ExternalPrinter + Send> Sink for Printer<P> {
    fn line(&mut self, line: &str) {
        let _ = self.0.print(format!("{line}\n"));
    }
}

/// Background tasks started in this session, for `wait`.
#[derive(Default)]
struct Tasks {
    /// By logger: how many messages are expected in all, and by when.
    expected: BTreeMap<String, (u64, Instant)>,
}

/// Runs commands until `quit` or the end of input. A lost session ends it with the error.
pub async fn run(actions: &Actions) -> Result<Ended, Failure> {
    let feed = actions.feed().clone();
    let mut input = Input::open(&feed).await;
    let mut tasks = Tasks::default();
    let mut failed = 0;
    while let Some(line) = input.next().await {
        let command = match command::parse(&line) {
            Ok(Some(command)) => command,
            Ok(None) => {
                input.done();
                continue;
            }
            Err(sentence) => {
                let word = line.split_whitespace().next().unwrap_or("");
                actions.rejected(word, &sentence);
                failed += 1;
                input.done();
                continue;
            }
        };
        if command == Command::Quit {
            break;
        }
        match execute(actions, &feed, &mut tasks, command).await {
            Ok(()) => {}
            Err(Failure::Connection(sentence)) => return Err(Failure::Connection(sentence)),
            Err(_) => failed += 1,
        }
        input.done();
    }
    Ok(Ended {
        failed,
        scripted: input.scripted(),
    })
}

async fn execute(
    actions: &Actions,
    feed: &Feed,
    tasks: &mut Tasks,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Notify { text, level } => actions.notify(&text, level.as_deref()).await.map(drop),
        Command::Broadcast { text } => actions.broadcast(&text, None).await.map(drop),
        Command::Operation { steps, step_ms } => actions.operation(steps, step_ms).await.map(drop),
        Command::Task {
            name,
            count,
            interval_ms,
        } => {
            let count = count.unwrap_or(TASK_COUNT);
            let interval_ms = interval_ms.unwrap_or(TASK_INTERVAL_MS);
            let logger = format!("task/{name}");
            let already = feed.summary().messages_from(&logger);
            actions.task(&name, Some(count), Some(interval_ms)).await?;
            let by = Instant::now()
                + Duration::from_millis(interval_ms.saturating_mul(u64::from(count)))
                + GRACE;
            let entry = tasks.expected.entry(logger).or_insert((0, by));
            entry.0 = entry.0.max(already) + u64::from(count);
            entry.1 = entry.1.max(by);
            Ok(())
        }
        Command::Status => actions.status().await.map(drop),
        Command::Tools => actions.tools().await.map(drop),
        Command::Summary => {
            feed.print_summary();
            Ok(())
        }
        Command::Help => {
            feed.record(Event::Help);
            Ok(())
        }
        Command::Wait => wait(actions, feed, tasks).await,
        Command::Quit => Ok(()),
    }
}

/// Waits until every task started here delivered all its messages, each bounded by its
/// schedule plus a grace period.
async fn wait(actions: &Actions, feed: &Feed, tasks: &Tasks) -> Result<(), Failure> {
    for (logger, (expected, by)) in &tasks.expected {
        let timeout = by.saturating_duration_since(Instant::now());
        if let Err(s) = feed
            .wait_until(timeout, |s| s.messages_from(logger) >= *expected)
            .await
        {
            let sentence = format!(
                "wait: {} of {expected} messages from {logger} arrived in time",
                s.messages_from(logger)
            );
            actions.rejected("wait", &sentence);
            return Err(Failure::Command(sentence));
        }
    }
    Ok(())
}
