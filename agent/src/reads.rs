//! Read monitoring on the agent: chooses fanotify or the inotify fallback at start, says
//! which in the agent's status, and turns the opens either reports into events through the
//! shared bulk-read judgement ([`holdfast_shared::reads::BulkReads`]).

use crate::config::ReadMonitoring;
use crate::watch::{Opens, WatchEvent};
use holdfast_shared::event::{EventBody, Process};
use holdfast_shared::policy::PolicySet;
use holdfast_shared::reads::{BulkReads, Open};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// In the fallback, an open of a file the agent itself read (to classify it) this recently
/// is the agent's own.
const OWN_READ: Duration = Duration::from_secs(5);
/// Most of the agent's own reads remembered for that.
const MAX_OWN_READS: usize = 10_000;

/// The running read monitoring.
pub struct Reads {
    /// What the agent's status says about it.
    pub status: String,
    fallback: bool,
    user: String,
    judge: BulkReads,
    own_reads: HashMap<PathBuf, Instant>,
    #[cfg(target_os = "linux")]
    _monitor: Option<crate::fanotify::ReadMonitor>,
}

/// What [`Reads::start`] needs the watcher to do.
pub struct Started {
    pub reads: Reads,
    pub opens: Opens,
}

impl Reads {
    /// Starts read monitoring for the bulk-read rules of `set`, as `mode` asks: fanotify when
    /// it can (or must), else the watcher's open events. Fails only when fanotify is
    /// required and denied.
    pub fn start(
        mode: ReadMonitoring,
        set: &PolicySet,
        user: &str,
        tx: SyncSender<WatchEvent>,
    ) -> anyhow::Result<Started> {
        // Rules share folders (one per process, one per user): each is marked once.
        let mut folders: Vec<PathBuf> = Vec::new();
        for f in set.bulk_reads.iter().flat_map(|r| r.expanded.iter()) {
            let f = PathBuf::from(f);
            if !folders.contains(&f) {
                folders.push(f);
            }
        }
        let mut reads = Reads {
            status: String::new(),
            fallback: false,
            user: user.to_string(),
            judge: BulkReads::default(),
            own_reads: HashMap::new(),
            #[cfg(target_os = "linux")]
            _monitor: None,
        };
        if folders.is_empty() || mode == ReadMonitoring::Off {
            reads.status = if mode == ReadMonitoring::Off {
                "off (reads = \"off\" in the agent's configuration)".into()
            } else {
                "off (no bulk_read rule in the policy)".into()
            };
            return Ok(Started {
                reads,
                opens: Opens::Ignore,
            });
        }
        let listed = folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let why_not = match mode {
            ReadMonitoring::Inotify => {
                "reads = \"inotify\" in the agent's configuration".to_string()
            }
            _ => match fanotify(folders, tx) {
                Ok(m) => {
                    #[cfg(target_os = "linux")]
                    let new_folders = if m.new_folders_at_once {
                        "new folders marked as they appear"
                    } else {
                        "new folders marked within 30 s (no fanotify directory events)"
                    };
                    #[cfg(target_os = "linux")]
                    {
                        reads._monitor = Some(m);
                    }
                    #[cfg(not(target_os = "linux"))]
                    let (_, new_folders) = (m, "");
                    reads.status = format!(
                        "fanotify: reads under {listed}, with pid, uid, user and executable; {new_folders}"
                    );
                    return Ok(Started {
                        reads,
                        opens: Opens::Ignore,
                    });
                }
                Err(e) if mode == ReadMonitoring::Fanotify => {
                    return Err(anyhow::anyhow!("read monitoring: {e}"))
                }
                Err(e) => e.to_string(),
            },
        };
        reads.fallback = true;
        reads.status = format!(
            "inotify fallback: opens under {listed} only where they are also watched, without the process, uid or executable ({why_not})"
        );
        tracing::warn!(status = %reads.status, "read monitoring without process identity");
        Ok(Started {
            reads,
            opens: Opens::Report,
        })
    }

    /// Notes that the agent itself read `path` (to classify it).
    pub fn agent_read(&mut self, path: &Path) {
        if !self.fallback {
            return;
        }
        if self.own_reads.len() >= MAX_OWN_READS {
            self.own_reads.retain(|_, t| t.elapsed() < OWN_READ);
            if self.own_reads.len() >= MAX_OWN_READS {
                self.own_reads.clear();
            }
        }
        self.own_reads.insert(path.to_path_buf(), Instant::now());
    }

    /// The events an open gives. `busy(path)`: the file is being written (its open was the
    /// writer's, not a read).
    pub fn observe(
        &mut self,
        ev: WatchEvent,
        set: &PolicySet,
        busy: impl Fn(&Path) -> bool,
    ) -> Vec<EventBody> {
        let open = match ev {
            WatchEvent::Read(open) if !self.fallback => open,
            WatchEvent::Opened(path) if self.fallback => {
                let own = self
                    .own_reads
                    .get(&path)
                    .is_some_and(|t| t.elapsed() < OWN_READ);
                if own || busy(&path) {
                    return Vec::new();
                }
                Open {
                    path: path.display().to_string(),
                    process: Process {
                        pid: 0,
                        uid: None,
                        user: Some(self.user.clone()),
                        exe: None,
                    },
                    time_ms: crate::clock::now_ms(),
                }
            }
            _ => return Vec::new(),
        };
        self.judge.observe(set, &open)
    }
}

#[cfg(target_os = "linux")]
fn fanotify(
    folders: Vec<PathBuf>,
    tx: SyncSender<WatchEvent>,
) -> Result<crate::fanotify::ReadMonitor, crate::fanotify::ReadsError> {
    crate::fanotify::start(folders, tx)
}

/// Elsewhere there is no fanotify (Windows and macOS get their own monitors).
#[cfg(not(target_os = "linux"))]
fn fanotify(_folders: Vec<PathBuf>, _tx: SyncSender<WatchEvent>) -> Result<(), String> {
    Err("fanotify exists only on Linux".into())
}
