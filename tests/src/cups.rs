//! A private CUPS for print scenarios: its own `cupsd` (Debian's `cups` package) on a Unix
//! socket and a spool under a temporary folder, with one cups-pdf queue
//! (`printer-driver-cups-pdf`), stopped when dropped. No TCP port is opened.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running private cupsd.
pub struct Cups {
    pub root: PathBuf,
    /// The socket clients are pointed at (`lp -h SOCKET`).
    pub socket: PathBuf,
    /// Where it spools jobs (the agent's `print_spool`).
    pub spool: PathBuf,
    child: Child,
}

/// The cups-pdf driver's PPD, as Debian installs it.
const PDF_PPD: &str = "/usr/share/ppd/cups-pdf/CUPS-PDF_opt.ppd";

impl Cups {
    /// Whether this machine has CUPS and cups-pdf (CI installs them).
    pub fn available() -> bool {
        Path::new("/usr/sbin/cupsd").exists()
            && Path::new(PDF_PPD).exists()
            && Path::new("/usr/lib/cups/backend/cups-pdf").exists()
    }

    /// Starts cupsd under `root` (as root: it runs its filters as `lp`) with one queue,
    /// `queue`, printing to PDF, and waits until the queue accepts jobs.
    pub fn start(root: &Path, queue: &str) -> Cups {
        let dir = |n: &str| {
            let d = root.join(n);
            std::fs::create_dir_all(&d).expect("cups dir");
            d
        };
        let (conf, spool, tmp, cache, state, log) = (
            dir("conf"),
            dir("spool"),
            dir("tmp"),
            dir("cache"),
            dir("state"),
            dir("log"),
        );
        // Filters (run as `lp`) write their temporary files here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).expect("tmp");
        let socket = root.join("cups.sock");
        std::fs::write(
            conf.join("cupsd.conf"),
            format!(
                "Listen {}\nLogLevel debug\nWebInterface No\nBrowsing No\n\
                 <Location />\n  Order allow,deny\n  Allow all\n</Location>\n\
                 <Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n",
                socket.display()
            ),
        )
        .expect("cupsd.conf");
        std::fs::write(
            conf.join("cups-files.conf"),
            format!(
                "ServerRoot {}\nRequestRoot {}\nTempDir {}\nCacheDir {}\nStateDir {}\n\
                 ErrorLog {}\nAccessLog {}\nPageLog {}\n",
                conf.display(),
                spool.display(),
                tmp.display(),
                cache.display(),
                state.display(),
                log.join("error_log").display(),
                log.join("access_log").display(),
                log.join("page_log").display(),
            ),
        )
        .expect("cups-files.conf");
        let child = Command::new("/usr/sbin/cupsd")
            .arg("-f")
            .arg("-c")
            .arg(conf.join("cupsd.conf"))
            .arg("-s")
            .arg(conf.join("cups-files.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cupsd");
        let cups = Cups {
            root: root.to_path_buf(),
            socket,
            spool,
            child,
        };
        crate::wait_for("cupsd's socket", Duration::from_secs(30), || {
            cups.socket.exists().then_some(())
        });
        let out = cups
            .client("lpadmin")
            .args(["-p", queue, "-v", "cups-pdf:/", "-P", PDF_PPD, "-E"])
            .output()
            .expect("lpadmin");
        assert!(
            out.status.success(),
            "lpadmin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        crate::wait_for("the queue to accept jobs", Duration::from_secs(30), || {
            let out = cups.client("lpstat").args(["-a", queue]).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("accepting requests")
                .then_some(())
        });
        cups
    }

    /// A CUPS client command (`lp`, `lpstat`, …) pointed at this cupsd.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.arg("-h").arg(&self.socket);
        c
    }

    /// What cupsd logged (for a failing test's message).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("log/error_log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The completed jobs, as `lpstat -W completed -o` lists them.
    pub fn completed(&self) -> String {
        self.client("lpstat")
            .args(["-W", "completed", "-o"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Cups {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
