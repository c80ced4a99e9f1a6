//! The agent's configuration: a TOML file parsed into raw values, then validated into one
//! [`Config`]. Relative paths are resolved against the config file's directory.
//!
//! ```toml
//! data_dir = "/var/lib/holdfast-agent"      # identity, spool; never watched
//! watch = ["~/Downloads", "~/Desktop", "~/Documents"]
//! policies = "/etc/holdfast/policies"       # optional; the built-in pack when absent
//! settle_ms = 1000                          # quiet time before a written file is read
//! home = "/home/alice"                      # optional; `~` in paths and policies
//! spool_max = "256MiB"                      # bound on events waiting to be sent
//! heartbeat_ms = 15000                      # liveness and policy check period
//! workers = 2                               # files read at once (a slow lane is one more)
//! large_file = "32MiB"                      # files this large are read in the slow lane
//! read_limit = "2GiB"                       # bytes hashed and classified per file
//! cpu_limit_ms = 30000                      # CPU time per file
//! archive_depth = 3                         # archives in archives read this deep (1..=8)
//! print_spool = "/var/spool/cups"           # print jobs read from here; "off" for none
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest config file accepted.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    watch: Vec<String>,
    policies: Option<PathBuf>,
    settle_ms: Option<u64>,
    home: Option<String>,
    spool_max: Option<toml::Value>,
    heartbeat_ms: Option<u64>,
    #[serde(default)]
    poll: Vec<String>,
    poll_ms: Option<u64>,
    reads: Option<String>,
    workers: Option<u64>,
    large_file: Option<toml::Value>,
    read_limit: Option<toml::Value>,
    cpu_limit_ms: Option<u64>,
    archive_depth: Option<u32>,
    print_spool: Option<String>,
}

/// How the agent monitors reads of the customer-data folders of the bulk-read rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMonitoring {
    /// fanotify when the agent has the privilege, else inotify's open events.
    Auto,
    /// fanotify or nothing: the agent does not start without it.
    Fanotify,
    /// inotify's open events only (no process identity; watched places only).
    Inotify,
    /// No read monitoring.
    Off,
}

/// A validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The spool, the enrolment (key and certificate), the index and the lineage.
    pub data_dir: PathBuf,
    /// Roots to watch recursively, `~` expanded and absolute.
    pub watch: Vec<PathBuf>,
    /// A policy folder to use instead of the built-in pack (`None`: the built-in pack).
    pub policies: Option<PathBuf>,
    /// Quiet time after a file's last change before it is read.
    pub settle: Duration,
    /// What `~` stands for in paths.
    pub home: String,
    /// Bound on the spool, in bytes.
    pub spool_max: u64,
    /// How often the agent tells the collector it is alive (with its spool backlog).
    pub heartbeat: Duration,
    /// Roots scanned every `poll_every` instead of watched (network shares, where the kernel
    /// sees no remote changes); roots the kernel's watch limit leaves out join them.
    pub poll: Vec<PathBuf>,
    /// How often `poll` roots are rescanned.
    pub poll_every: Duration,
    /// How opens of customer files are seen (fanotify, inotify or not at all).
    pub reads: ReadMonitoring,
    /// How files are read: workers, the slow lane, byte and CPU limits.
    pub reading: crate::workers::Reading,
    /// The print system's spool folder, whose jobs are read as they are spooled (`None`:
    /// printing is not watched).
    pub print_spool: Option<PathBuf>,
}

/// Where CUPS spools jobs unless `print_spool` says otherwise.
pub const DEFAULT_PRINT_SPOOL: &str = "/var/spool/cups";

/// Default spool bound: weeks of ordinary activity, small next to any laptop disk.
pub const DEFAULT_SPOOL_MAX: u64 = 256 * 1024 * 1024;
/// Smallest spool bound accepted.
pub const MIN_SPOOL_MAX: u64 = 16 * 1024;

/// Parses a byte size: an integer, or a string such as `"512KiB"`, `"64MiB"`, `"1GiB"`.
pub fn parse_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a size such as \"64MiB\""))?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" | "K" | "KB" => 1 << 10,
                "MiB" | "M" | "MB" => 1 << 20,
                "GiB" | "G" | "GB" => 1 << 30,
                other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
            };
            n.checked_mul(mult)
                .ok_or_else(|| format!("`{s}` is too large"))
        }
        other => Err(format!(
            "expected a size such as \"64MiB\", found {}",
            other.type_str()
        )),
    }
}

pub use holdfast_io::config_file::ConfigError;

/// The config file a package installs; used when no `--config` is given and it exists.
pub const SYSTEM_CONFIG: &str = "/etc/holdfast/agent.toml";

/// The home directory used for `~` when the config names none.
pub fn default_home() -> String {
    dirs::home_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".to_string())
}

/// The default data directory: `/var/lib/holdfast-agent` as root, the user's data dir otherwise.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/var/lib/holdfast-agent")
    } else {
        dirs::data_local_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("holdfast")
            .join("agent")
    }
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        && dirs::home_dir().is_some_and(|h| h == Path::new("/root"))
}

/// Expands a leading `~` to `home`.
pub fn expand_home(p: &str, home: &str) -> PathBuf {
    match p.strip_prefix('~') {
        Some("") => PathBuf::from(home),
        Some(rest) if rest.starts_with('/') => {
            PathBuf::from(format!("{}{}", home.trim_end_matches('/'), rest))
        }
        _ => PathBuf::from(p),
    }
}

impl Config {
    /// The configuration used when no file is given: default data dir, the user's
    /// Downloads, Desktop and Documents, the built-in policies.
    pub fn defaults() -> Config {
        let home = default_home();
        Config {
            data_dir: default_data_dir(),
            watch: ["~/Downloads", "~/Desktop", "~/Documents"]
                .iter()
                .map(|p| expand_home(p, &home))
                .collect(),
            policies: None,
            settle: Duration::from_millis(1000),
            home,
            spool_max: DEFAULT_SPOOL_MAX,
            heartbeat: Duration::from_secs(15),
            poll: Vec::new(),
            poll_every: Duration::from_secs(30),
            reads: ReadMonitoring::Auto,
            reading: crate::workers::Reading::default(),
            print_spool: Some(PathBuf::from(DEFAULT_PRINT_SPOOL)),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        holdfast_io::config_file::load(path, Config::validate)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        holdfast_io::config_file::validated(path, src, Config::validate)
    }

    /// `raw`, read from `path` in folder `base`, checked field by field.
    fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let defaults = Config::defaults();
        let home = raw.home.unwrap_or(defaults.home);
        let resolve = |p: PathBuf| {
            let p = expand_home(&p.to_string_lossy(), &home);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        };
        let invalid = |field, message: String| ConfigError::invalid(path, field, message);
        let watch: Vec<PathBuf> = if raw.watch.is_empty() {
            defaults.watch
        } else {
            raw.watch
                .iter()
                .map(|w| resolve(PathBuf::from(w)))
                .collect()
        };
        let settle_ms = raw.settle_ms.unwrap_or(1000);
        if !(50..=600_000).contains(&settle_ms) {
            return Err(invalid(
                "settle_ms",
                format!("{settle_ms} is outside 50..=600000"),
            ));
        }
        let data_dir = raw.data_dir.map(resolve).unwrap_or(defaults.data_dir);
        if watch
            .iter()
            .any(|w| data_dir.starts_with(w) && data_dir != *w)
        {
            tracing::debug!("data_dir lies under a watched root; it is skipped by the watcher");
        }
        if watch.contains(&data_dir) {
            return Err(invalid(
                "watch",
                "the agent's data_dir cannot itself be a watched root".into(),
            ));
        }
        let spool_max = match &raw.spool_max {
            None => DEFAULT_SPOOL_MAX,
            Some(v) => parse_size(v).map_err(|m| invalid("spool_max", m))?,
        };
        if spool_max < MIN_SPOOL_MAX {
            return Err(invalid(
                "spool_max",
                format!("{spool_max} bytes is below the minimum of {MIN_SPOOL_MAX}"),
            ));
        }
        let heartbeat_ms = raw.heartbeat_ms.unwrap_or(15_000);
        if !(200..=3_600_000).contains(&heartbeat_ms) {
            return Err(invalid(
                "heartbeat_ms",
                format!("{heartbeat_ms} is outside 200..=3600000"),
            ));
        }
        let poll: Vec<PathBuf> = raw.poll.iter().map(|w| resolve(PathBuf::from(w))).collect();
        if let Some(p) = poll.iter().find(|p| watch.contains(p)) {
            return Err(invalid(
                "poll",
                format!("{} is both watched and polled; list it once", p.display()),
            ));
        }
        let poll_ms = raw.poll_ms.unwrap_or(30_000);
        if !(200..=86_400_000).contains(&poll_ms) {
            return Err(invalid(
                "poll_ms",
                format!("{poll_ms} is outside 200..=86400000"),
            ));
        }
        let reads = match raw.reads.as_deref() {
            None | Some("auto") => ReadMonitoring::Auto,
            Some("fanotify") => ReadMonitoring::Fanotify,
            Some("inotify") => ReadMonitoring::Inotify,
            Some("off") => ReadMonitoring::Off,
            Some(other) => {
                return Err(invalid(
                    "reads",
                    format!("`{other}` is not one of auto, fanotify, inotify, off"),
                ))
            }
        };
        let defaults_reading = crate::workers::Reading::default();
        let workers = raw.workers.unwrap_or(defaults_reading.workers as u64);
        if !(1..=16).contains(&workers) {
            return Err(invalid("workers", format!("{workers} is outside 1..=16")));
        }
        let size_or = |field: &'static str, v: &Option<toml::Value>, default: u64| match v {
            None => Ok(default),
            Some(v) => parse_size(v).map_err(|m| invalid(field, m)),
        };
        let large_file = size_or("large_file", &raw.large_file, defaults_reading.large_file)?;
        let read_limit = size_or("read_limit", &raw.read_limit, defaults_reading.max_bytes)?;
        if read_limit < 1 << 20 {
            return Err(invalid(
                "read_limit",
                format!("{read_limit} bytes is below the minimum of 1MiB"),
            ));
        }
        let cpu_limit_ms = raw
            .cpu_limit_ms
            .unwrap_or(defaults_reading.max_cpu.as_millis() as u64);
        if !(100..=3_600_000).contains(&cpu_limit_ms) {
            return Err(invalid(
                "cpu_limit_ms",
                format!("{cpu_limit_ms} is outside 100..=3600000"),
            ));
        }
        let max_cpu = Duration::from_millis(cpu_limit_ms);
        let archive_depth = raw.archive_depth.unwrap_or(defaults_reading.archive_depth);
        if !(1..=8).contains(&archive_depth) {
            return Err(invalid(
                "archive_depth",
                format!("{archive_depth} is outside 1..=8"),
            ));
        }
        let reading = crate::workers::Reading {
            workers: workers as usize,
            large_file,
            max_bytes: read_limit,
            max_cpu,
            fast_cpu: defaults_reading.fast_cpu.min(max_cpu),
            archive_depth,
        };
        let print_spool = match raw.print_spool.as_deref() {
            Some("off") => None,
            Some(p) if Path::new(p).is_absolute() => Some(PathBuf::from(p)),
            Some(p) => {
                return Err(invalid(
                    "print_spool",
                    format!("`{p}` is not an absolute path (or \"off\")"),
                ))
            }
            None => Some(PathBuf::from(DEFAULT_PRINT_SPOOL)),
        };
        Ok(Config {
            reading,
            print_spool,
            data_dir,
            watch,
            policies: raw.policies.map(resolve),
            settle: std::time::Duration::from_millis(settle_ms),
            home,
            spool_max,
            heartbeat: Duration::from_millis(heartbeat_ms),
            poll,
            poll_every: Duration::from_millis(poll_ms),
            reads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let v = |s: &str| parse_size(&toml::Value::String(s.into()));
        assert_eq!(v("64MiB"), Ok(64 << 20));
        assert_eq!(v("512 KiB"), Ok(512 << 10));
        assert_eq!(v("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size(&toml::Value::Integer(4096)), Ok(4096));
        assert!(v("MiB").is_err());
        assert!(v("99999999999999GiB").is_err());
        assert!(parse_size(&toml::Value::Integer(-1)).is_err());
        assert!(parse_size(&toml::Value::Boolean(true)).is_err());
    }

    /// `src` as a valid config.
    fn parsed(src: &str) -> Config {
        Config::parse(Path::new("/etc/hf/agent.toml"), src).unwrap()
    }

    fn check(src: &str, want: Result<(&str, usize), &str>) {
        let got = Config::parse(Path::new("/etc/hf/agent.toml"), src);
        match (got, want) {
            (Ok(c), Ok((data, n))) => {
                assert_eq!(c.data_dir, PathBuf::from(data));
                assert_eq!(c.watch.len(), n);
            }
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg),
            (got, want) => panic!("{src:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_and_validates() {
        check(
            "data_dir = \"d\"\nwatch = [\"/w\"]\nhome = \"/h\"",
            Ok(("/etc/hf/d", 1)),
        );
        check("data_dir = \"~/d\"\nhome = \"/h\"", Ok(("/h/d", 3)));
        check(
            "data_dir = \"/d\"\nwatchh = []",
            Err("/etc/hf/agent.toml:2:1: unknown field `watchh`, expected one of `data_dir`, `watch`, `policies`, `settle_ms`, `home`, `spool_max`, `heartbeat_ms`, `poll`, `poll_ms`, `reads`, `workers`, `large_file`, `read_limit`, `cpu_limit_ms`, `archive_depth`, `print_spool`"),
        );
        check(
            "data_dir = \"/d\"\nsettle_ms = 1",
            Err("/etc/hf/agent.toml: settle_ms: 1 is outside 50..=600000"),
        );
        check(
            "data_dir = \"/d\"\nspool_max = \"12XB\"",
            Err("/etc/hf/agent.toml: spool_max: unknown size unit `XB` (use KiB, MiB or GiB)"),
        );
        check(
            "data_dir = \"/d\"\nspool_max = 100",
            Err("/etc/hf/agent.toml: spool_max: 100 bytes is below the minimum of 16384"),
        );
        check(
            "data_dir = \"/d\"\nwatch = [\"/d\"]",
            Err("/etc/hf/agent.toml: watch: the agent's data_dir cannot itself be a watched root"),
        );
        check(
            "poll = [\"/srv/share\"]\nwatch = [\"/srv/share\"]",
            Err("/etc/hf/agent.toml: poll: /srv/share is both watched and polled; list it once"),
        );
        check(
            "poll_ms = 10",
            Err("/etc/hf/agent.toml: poll_ms: 10 is outside 200..=86400000"),
        );
        // How files are read.
        let c = parsed("workers = 4\nlarge_file = \"8MiB\"\nread_limit = \"1GiB\"\ncpu_limit_ms = 5000\narchive_depth = 5");
        assert_eq!(
            c.reading,
            crate::workers::Reading {
                workers: 4,
                large_file: 8 << 20,
                max_bytes: 1 << 30,
                max_cpu: Duration::from_secs(5),
                fast_cpu: Duration::from_millis(500),
                archive_depth: 5,
            }
        );
        // Print jobs: from CUPS's spool unless told otherwise.
        assert_eq!(
            parsed("").print_spool,
            Some(PathBuf::from("/var/spool/cups"))
        );
        assert_eq!(
            parsed("print_spool = \"/srv/cups\"").print_spool,
            Some(PathBuf::from("/srv/cups"))
        );
        assert_eq!(parsed("print_spool = \"off\"").print_spool, None);
        check(
            "print_spool = \"spool\"",
            Err("/etc/hf/agent.toml: print_spool: `spool` is not an absolute path (or \"off\")"),
        );
        check(
            "archive_depth = 0",
            Err("/etc/hf/agent.toml: archive_depth: 0 is outside 1..=8"),
        );
        check(
            "workers = 0",
            Err("/etc/hf/agent.toml: workers: 0 is outside 1..=16"),
        );
        check(
            "read_limit = \"4KiB\"",
            Err("/etc/hf/agent.toml: read_limit: 4096 bytes is below the minimum of 1MiB"),
        );
        check(
            "cpu_limit_ms = 10",
            Err("/etc/hf/agent.toml: cpu_limit_ms: 10 is outside 100..=3600000"),
        );
    }
}
