//! Removable media and network shares: the mount table, followed. The only module that
//! reads `/proc/self/mountinfo` and `/dev/disk`. New media are watched as soon as they are
//! mounted, new shares are polled (the kernel reports no remote changes), and every file
//! event under one carries its [`Destination`]: volume label, UUID and device.

use holdfast_shared::event::Destination;
use std::path::{Path, PathBuf};

/// File systems that are network shares.
const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "sshfs",
    "afpfs",
    "webdav",
    "davfs",
];
/// File systems that mean removable media when they are not the system's own.
const REMOVABLE_FS: &[&str] = &[
    "vfat", "exfat", "ntfs", "ntfs3", "fuseblk", "iso9660", "udf", "hfsplus", "msdos",
];
/// FUSE file systems that are a phone: MTP (Android) and PTP cameras, iPhones (ifuse).
const PHONE_FS: &[&str] = &[
    "jmtpfs",
    "simple-mtpfs",
    "go-mtpfs",
    "aft-mtp-mount",
    "android-file-transfer",
    "mtpfs",
    "ifuse",
];
/// How gvfs names a phone's mount: `mtp:host=SAMSUNG_Android_R58M12345`.
pub const PHONE_PREFIXES: &[&str] = &["mtp:host=", "gphoto2:host=", "afc:host="];
/// gvfs's one FUSE mount per user (`/run/user/UID/gvfs`): its phones are the folders in it
/// named with a [`PHONE_PREFIXES`] prefix.
const GVFS: &str = "fuse.gvfsd-fuse";

/// The phone a folder in gvfs's mount is, by its name.
pub fn gvfs_phone(folder: &str) -> Option<&str> {
    PHONE_PREFIXES.iter().find_map(|p| folder.strip_prefix(p))
}
/// Where desktops mount removable media.
const MEDIA_DIRS: &[&str] = &["/media/", "/run/media/", "/mnt/usb", "/Volumes/"];

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device.
    pub device: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The mount source (`/dev/sdb1`, `//nas/sales`, `tmpfs`).
    pub source: String,
    /// For a FUSE mount: the user and group it belongs to (`user_id=`, `group_id=`).
    pub owner: Option<(u32, u32)>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &s[i + 1..(i + 4).min(s.len())];
            if oct.len() == 3 && oct.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` text (malformed lines are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 2 {
                return None;
            }
            let option = |name: &str| {
                r.get(2)?
                    .split(',')
                    .find_map(|o| o.strip_prefix(name)?.parse::<u32>().ok())
            };
            let owner = match (option("user_id="), option("group_id=")) {
                (Some(u), Some(g)) if r[0] == "fuse" || r[0].starts_with("fuse.") => Some((u, g)),
                _ => None,
            };
            Some(Mount {
                device: l[2].to_string(),
                mount_point: PathBuf::from(unescape(l[4])),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
                owner,
            })
        })
        .collect()
}

/// What kind of place a mount is: `removable`, `network`, `phone`, or neither.
/// `sys_removable` is the kernel's removable flag for the device, when known.
pub fn kind_of(m: &Mount, sys_removable: Option<bool>) -> Option<&'static str> {
    if NETWORK.contains(&m.fstype.as_str()) {
        return Some("network");
    }
    if phone_name(m).is_some() || m.fstype == GVFS {
        return Some("phone");
    }
    let mp = m.mount_point.to_string_lossy();
    let in_media = MEDIA_DIRS.iter().any(|d| mp.starts_with(d));
    let removable_fs = REMOVABLE_FS.contains(&m.fstype.as_str()) && !mp.starts_with("/boot");
    if sys_removable == Some(true) || in_media || removable_fs {
        return Some("removable");
    }
    None
}

/// The phone a FUSE mount is, by name: a mount named as gvfs names phones
/// (`mtp:host=Google_Pixel_7_1A2B3C` → `Google_Pixel_7_1A2B3C`), or one made by a phone's
/// FUSE program (`fuse.jmtpfs`, or `fuse` with the program as the source), named for its
/// folder.
pub fn phone_name(m: &Mount) -> Option<String> {
    let fuse = m.fstype == "fuse" || m.fstype.starts_with("fuse.");
    if !fuse {
        return None;
    }
    let folder = m.mount_point.file_name()?.to_string_lossy().into_owned();
    if let Some(name) = gvfs_phone(&folder) {
        return Some(name.to_string());
    }
    let program = m.fstype.strip_prefix("fuse.").unwrap_or(&m.source);
    let program = program.rsplit('/').next().unwrap_or(program);
    PHONE_FS.contains(&program).then_some(folder)
}

/// The kernel's removable flag for a `major:minor` device (a partition asks its disk).
fn sys_removable(device: &str) -> Option<bool> {
    let base = Path::new("/sys/dev/block").join(device);
    for p in [base.join("removable"), base.join("../removable")] {
        if let Ok(v) = std::fs::read_to_string(&p) {
            return Some(v.trim() == "1");
        }
    }
    None
}

/// The name under `/dev/disk/<by>/` whose link resolves to `source`, if any.
fn disk_name(by: &str, source: &str) -> Option<String> {
    let target = std::fs::canonicalize(source).ok()?;
    let entries = std::fs::read_dir(Path::new("/dev/disk").join(by)).ok()?;
    entries.flatten().find_map(|e| {
        (std::fs::canonicalize(e.path()).ok()? == target)
            .then(|| unescape(&e.file_name().to_string_lossy().replace("\\x20", " ")))
    })
}

fn serial(device: &str) -> Option<String> {
    let base = Path::new("/sys/dev/block").join(device);
    [base.join("device/serial"), base.join("../device/serial")]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The destination a special mount stands for.
fn destination(m: &Mount, kind: &str) -> Destination {
    let label = disk_name("by-label", &m.source);
    let name = match kind {
        "network" => m.source.clone(),
        // gvfs's own mount: named for each phone in it (see `destination_of`).
        "phone" => phone_name(m).unwrap_or_default(),
        _ => label.clone().unwrap_or_else(|| {
            m.mount_point
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| m.mount_point.display().to_string())
        }),
    };
    let device = match serial(&m.device) {
        Some(s) => format!("{} serial {s}", m.device),
        None => m.device.clone(),
    };
    Destination {
        kind: kind.to_string(),
        name,
        mount: Some(m.mount_point.display().to_string()),
        uuid: disk_name("by-uuid", &m.source),
        device: Some(device),
        ..Destination::default()
    }
}

/// The special mounts known now.
#[derive(Debug, Default)]
pub struct MountTable {
    known: Vec<(PathBuf, Destination)>,
    /// FUSE mounts' owners, by mount point.
    owners: std::collections::HashMap<PathBuf, (u32, u32)>,
}

/// What changed in the mount table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<(PathBuf, Destination)>,
    pub removed: Vec<PathBuf>,
}

impl MountTable {
    /// Reads the mount table; what is mounted now is known, not news.
    pub fn start() -> MountTable {
        let mut t = MountTable::default();
        t.refresh();
        t
    }

    /// Reads the mount table again and says what appeared and went.
    pub fn refresh(&mut self) -> Changes {
        let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Changes::default();
        };
        let all = parse_mountinfo(&text);
        self.owners = all
            .iter()
            .filter_map(|m| Some((m.mount_point.clone(), m.owner?)))
            .collect();
        let now: Vec<(PathBuf, Destination)> = all
            .into_iter()
            .filter_map(|m| {
                let kind = kind_of(&m, sys_removable(&m.device))?;
                if self.known.iter().any(|(p, _)| *p == m.mount_point) {
                    let d = self
                        .known
                        .iter()
                        .find(|(p, _)| *p == m.mount_point)?
                        .1
                        .clone();
                    return Some((m.mount_point, d));
                }
                Some((m.mount_point.clone(), destination(&m, kind)))
            })
            .collect();
        let added: Vec<(PathBuf, Destination)> = now
            .iter()
            .filter(|(p, _)| !self.known.iter().any(|(k, _)| k == p))
            .cloned()
            .collect();
        let removed: Vec<PathBuf> = self
            .known
            .iter()
            .filter(|(k, _)| !now.iter().any(|(p, _)| p == k))
            .map(|(k, _)| k.clone())
            .collect();
        self.known = now;
        Changes { added, removed }
    }

    /// The mounts known now.
    pub fn known(&self) -> &[(PathBuf, Destination)] {
        &self.known
    }

    /// The user and group a FUSE mount belongs to (a phone's, say).
    pub fn owner(&self, mount_point: &Path) -> Option<(u32, u32)> {
        self.owners.get(mount_point).copied()
    }

    /// The destination of `path`: the innermost special mount holding it. In gvfs's mount,
    /// the phone whose folder holds it (and nothing outside a phone's folder).
    pub fn destination_of(&self, path: &Path) -> Option<Destination> {
        let (mp, d) = self
            .known
            .iter()
            .filter(|(mp, _)| path.starts_with(mp))
            .max_by_key(|(mp, _)| mp.as_os_str().len())?;
        if d.kind == "phone" && d.name.is_empty() {
            let folder = path.strip_prefix(mp).ok()?.components().next()?;
            let folder = folder.as_os_str().to_str()?;
            return Some(Destination {
                name: gvfs_phone(folder)?.to_string(),
                mount: Some(mp.join(folder).display().to_string()),
                ..d.clone()
            });
        }
        Some(d.clone())
    }

    /// Whether the phone mount at `mount_point` is gvfs's (phones are folders in it).
    pub fn is_gvfs(&self, mount_point: &Path) -> bool {
        self.known
            .iter()
            .any(|(mp, d)| mp == mount_point && d.kind == "phone" && d.name.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
25 22 0:23 / /proc rw shared:12 - proc proc rw
90 22 8:17 / /media/ana/KINGSTON\\040USB rw,nosuid shared:50 - vfat /dev/sdb1 rw,uid=1000
91 22 0:55 / /mnt/sales rw shared:51 - cifs //nas/sales rw,vers=3.0
92 22 0:56 / /home/ana/remote rw shared:52 - fuse.sshfs ana@box:/srv rw
93 22 8:1 / /boot/efi rw shared:53 - vfat /dev/sda1 rw
94 22 0:57 / /tmp/x rw shared:54 - tmpfs tmpfs rw
95 22 0:58 / /run/user/1000/gvfs/mtp:host=Google_Pixel_7_1A2B3C rw - fuse /home/ana/src rw,user_id=1000,group_id=1000
96 22 0:59 / /home/ana/phone rw - fuse.jmtpfs jmtpfs rw,nosuid,user_id=1000,group_id=1001
97 22 0:60 / /mnt/iphone rw - fuse ifuse rw,user_id=501,group_id=20
98 22 0:61 / /home/ana/bind rw - fuse.bindfs /srv rw,user_id=1000,group_id=1000
99 22 0:62 / /tmp/mtp:host=X rw - tmpfs tmpfs rw
100 22 0:63 / /run/user/1000/gvfs rw - fuse.gvfsd-fuse gvfsd-fuse rw,user_id=1000,group_id=1000
garbage line
";

    fn check(mp: &str, sys: Option<bool>, want: Option<&str>) {
        let m = parse_mountinfo(INFO)
            .into_iter()
            .find(|m| m.mount_point == Path::new(mp))
            .unwrap_or_else(|| panic!("{mp} not parsed"));
        assert_eq!(kind_of(&m, sys), want, "{mp}");
    }

    #[test]
    fn mounts_are_parsed_and_classified() {
        let all = parse_mountinfo(INFO);
        assert_eq!(all.len(), 13, "the garbage line is skipped");
        assert_eq!(all[2].mount_point, Path::new("/media/ana/KINGSTON USB"));
        assert_eq!(
            (all[2].device.as_str(), all[2].source.as_str()),
            ("8:17", "/dev/sdb1")
        );
        check("/", Some(false), None);
        check("/proc", None, None);
        check("/media/ana/KINGSTON USB", None, Some("removable"));
        check("/mnt/sales", None, Some("network"));
        check("/home/ana/remote", None, Some("network"));
        check("/boot/efi", Some(false), None);
        check("/tmp/x", None, None);
        check("/tmp/x", Some(true), Some("removable"));
        // Phones: named as gvfs names them, or mounted by a phone's FUSE program; another
        // FUSE mount, or a non-FUSE folder with a phone's name, is none.
        let phone = "/run/user/1000/gvfs/mtp:host=Google_Pixel_7_1A2B3C";
        check(phone, None, Some("phone"));
        check("/home/ana/phone", None, Some("phone"));
        check("/mnt/iphone", None, Some("phone"));
        check("/home/ana/bind", None, None);
        check("/tmp/mtp:host=X", None, None);
        check("/run/user/1000/gvfs", None, Some("phone"));
        let named = |mp: &str| {
            let m = all.iter().find(|m| m.mount_point == Path::new(mp)).unwrap();
            (phone_name(m), m.owner)
        };
        assert_eq!(
            named(phone),
            (Some("Google_Pixel_7_1A2B3C".into()), Some((1000, 1000)))
        );
        assert_eq!(
            named("/home/ana/phone"),
            (Some("phone".into()), Some((1000, 1001)))
        );
        assert_eq!(
            named("/mnt/iphone"),
            (Some("iphone".into()), Some((501, 20)))
        );
        assert_eq!(
            named("/tmp/x"),
            (None, None),
            "only FUSE mounts have an owner"
        );
    }

    #[test]
    fn the_innermost_mount_names_the_destination() {
        let d = |name: &str| Destination {
            kind: "removable".into(),
            name: name.into(),
            ..Destination::default()
        };
        let t = MountTable {
            known: vec![
                (PathBuf::from("/media/a"), d("outer")),
                (PathBuf::from("/media/a/b"), d("inner")),
            ],
            owners: Default::default(),
        };
        assert_eq!(
            t.destination_of(Path::new("/media/a/b/x.csv"))
                .unwrap()
                .name,
            "inner"
        );
        assert_eq!(
            t.destination_of(Path::new("/media/a/x.csv")).unwrap().name,
            "outer"
        );
        assert!(t.destination_of(Path::new("/media/ab/x.csv")).is_none());
        // gvfs's mount: each phone is a folder in it.
        let gvfs = PathBuf::from("/run/user/1000/gvfs");
        let t = MountTable {
            known: vec![(
                gvfs.clone(),
                Destination {
                    kind: "phone".into(),
                    ..Destination::default()
                },
            )],
            owners: Default::default(),
        };
        assert!(t.is_gvfs(&gvfs));
        let d = t
            .destination_of(&gvfs.join("mtp:host=SAMSUNG_R58M/Internal storage/x.csv"))
            .unwrap();
        assert_eq!(
            (d.kind.as_str(), d.name.as_str()),
            ("phone", "SAMSUNG_R58M")
        );
        assert_eq!(
            d.mount.as_deref(),
            Some("/run/user/1000/gvfs/mtp:host=SAMSUNG_R58M")
        );
        assert!(t
            .destination_of(&gvfs.join("smb-share:server=nas/x.csv"))
            .is_none());
    }
}
