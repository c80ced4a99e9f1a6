//! Process plumbing shared by both binaries: log setup, the async runtime, and waiting for
//! SIGINT/SIGTERM/SIGHUP with the sender's identity.

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal, and never with NO_COLOR).
    Text,
    /// One JSON object per line, with span fields.
    Json,
}

/// A binary's command line: the log flags every binary takes, then its own subcommand.
#[derive(clap::Parser)]
struct Cli<C: clap::Subcommand> {
    #[command(flatten)]
    logs: LogArgs,
    #[command(subcommand)]
    command: C,
}

/// Who a binary is, for its `--help` and `--version`.
pub struct Program {
    pub name: &'static str,
    /// The one paragraph `--help` opens with.
    pub about: &'static str,
    pub version: &'static str,
}

impl Program {
    /// A binary's whole `main`: parses the command line (a usage error exits 2 with clap's
    /// message), installs the logs and runs the command (see [`LogArgs::run`]).
    pub fn main<C: clap::Subcommand, E: AsRef<dyn std::error::Error + 'static>>(
        &self,
        exec: impl FnOnce(C) -> Result<std::process::ExitCode, E>,
    ) -> std::process::ExitCode {
        use clap::{CommandFactory, FromArgMatches};
        quiet_on_closed_pipe();
        let matches = Cli::<C>::command()
            .name(self.name)
            .bin_name(self.name)
            .about(self.about)
            .version(self.version)
            .get_matches();
        match Cli::<C>::from_arg_matches(&matches) {
            Ok(cli) => cli.logs.run(|| exec(cli.command)),
            Err(e) => e.exit(),
        }
    }
}

/// Output into a pipe whose reader has gone (`… | head`) ends the process quietly with exit
/// code 141, what a shell reports for a program SIGPIPE stopped (`cat`, `grep`), instead of a
/// panic and a backtrace: the standard library ignores SIGPIPE and `println!` panics on the
/// EPIPE that follows. Not 0: a service whose output pipe went away has not succeeded, and
/// its supervisor must restart it. Every other panic goes to the default hook.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_closed_pipe(message) {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Whether a panic's message is the standard library's for a write to a closed pipe.
fn is_closed_pipe(message: &str) -> bool {
    (message.starts_with("failed printing to stdout")
        || message.starts_with("failed printing to stderr"))
        && message.contains("os error 32")
}

/// The flags every binary takes for its logs (flattened into its command line).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// The rest of a binary's `main` once its flags are parsed: installs the logs, runs the
    /// command, and turns an error into one line on stderr (`error: ...`, with its causes)
    /// and exit code 2.
    pub fn run<E: AsRef<dyn std::error::Error + 'static>>(
        self,
        command: impl FnOnce() -> Result<std::process::ExitCode, E>,
    ) -> std::process::ExitCode {
        init_logs(self.log_format);
        command().unwrap_or_else(|e| {
            eprintln!("error: {}", one_line(e.as_ref()));
            std::process::ExitCode::from(2)
        })
    }
}

/// An error and its causes on one line, `outer: cause: root`, each cause written once: a
/// cause whose text the line already holds (an error that prints its source, `"--token:
/// {0}"`, and also names it as its source) is not repeated.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides the default filter.
pub fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A multi-threaded runtime with two workers: enough for an agent or a small collector.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| std::io::Error::new(e.kind(), format!("starting the async runtime: {e}")))
}

/// What stopped this process, once a stop signal arrived: the signal and, where the kernel
/// says, the sender (e.g. `SIGTERM from pid 812 (uid 1000, /usr/bin/kill)`).
static STOPPED_BY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What stopped this process, if a stop signal did.
pub fn stopped_by() -> Option<&'static str> {
    STOPPED_BY.get().map(String::as_str)
}

/// Names a signal and its sender for the logs and the stop notice.
fn describe_origin(origin: &signal_hook::iterator::exfiltrator::origin::Origin) -> String {
    let name = signal_hook::low_level::signal_name(origin.signal)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {}", origin.signal));
    match &origin.process {
        Some(p) => {
            let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid))
                .map(|e| format!(", {}", e.display()))
                .unwrap_or_default();
            format!("{name} from pid {} (uid {}{exe})", p.pid, p.uid)
        }
        None => format!("{name} (sender not given by the kernel)"),
    }
}

/// A shutdown flag that turns true on SIGINT, SIGTERM or SIGHUP; [`stopped_by`] then says
/// which signal and who sent it. Call inside the runtime.
pub fn shutdown_on_signal() -> tokio::sync::watch::Receiver<bool> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::{exfiltrator::origin::WithOrigin, SignalsInfo};
    let (tx, rx) = tokio::sync::watch::channel(false);
    match SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(mut signals) => {
            let spawned = std::thread::Builder::new()
                .name("holdfast-signals".into())
                .spawn(move || {
                    if let Some(origin) = signals.forever().next() {
                        let by = describe_origin(&origin);
                        tracing::info!(stopped_by = %by, "stop signal");
                        let _ = STOPPED_BY.set(by);
                        let _ = tx.send(true);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot wait for stop signals");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for stop signals"),
    }
    rx
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("--token: {0}")]
        Repeats(#[from] Inner),
        #[error("reading {0}")]
        Names(String, #[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("token must look like hf1.<32 hex>.<64 hex>")]
    struct Inner;

    #[test]
    fn each_cause_is_written_once() {
        let once = super::one_line(&Outer::Repeats(Inner));
        assert_eq!(once, "--token: token must look like hf1.<32 hex>.<64 hex>");
        let chained = super::one_line(&Outer::Names("collector.toml".into(), Inner));
        assert_eq!(
            chained,
            "reading collector.toml: token must look like hf1.<32 hex>.<64 hex>"
        );
        let context = anyhow::Error::new(Outer::Repeats(Inner)).context("enrolling");
        assert_eq!(
            super::one_line(context.as_ref()),
            "enrolling: --token: token must look like hf1.<32 hex>.<64 hex>"
        );
    }

    fn check(message: &str, closed_pipe: bool) {
        assert_eq!(super::is_closed_pipe(message), closed_pipe, "{message}");
    }

    #[test]
    fn only_a_write_to_a_closed_pipe_is_quiet() {
        check("failed printing to stdout: Broken pipe (os error 32)", true);
        check("failed printing to stderr: Broken pipe (os error 32)", true);
        check(
            "failed printing to stdout: No space left on device (os error 28)",
            false,
        );
        check(
            "index out of bounds: the len is 0 but the index is 0",
            false,
        );
        check("Broken pipe (os error 32)", false);
    }
}
