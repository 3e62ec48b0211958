//! Process operations of the command line: the pidfile, and dropping root's privileges
//! once the listeners are bound.
//!
//! Both run on the main thread or the runtime's control thread, never on a worker's
//! loop: their file and user-database calls block, briefly, at start and at exit.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

/// What went wrong with the pidfile or the privileges.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The pidfile names a process that is running.
    #[error("the pidfile `{}` names process {pid}, which is running: another instance? (remove the file if it is not one)", path.display())]
    PidfileInUse {
        /// The pidfile.
        path: PathBuf,
        /// The process it names.
        pid: i32,
    },
    /// The pidfile cannot be read or written.
    #[error("cannot write the pidfile `{}`: {source}", path.display())]
    Pidfile {
        /// The pidfile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `--user` or `--group` names no user or group of this system.
    #[error("no {kind} `{name}` on this system (--{kind})")]
    Unknown {
        /// `user` or `group`.
        kind: &'static str,
        /// The name given.
        name: String,
    },
    /// The privileges could not be dropped: the service refuses to go on as it was.
    #[error("cannot run as {to}: {reason}; the service stops rather than go on as root")]
    Drop {
        /// The user and group asked for.
        to: String,
        /// The system's answer.
        reason: String,
    },
}

/// The pidfile being held, removed at exit (see [`Pidfile::claim`]).
#[derive(Debug)]
pub(crate) struct Pidfile {
    path: PathBuf,
}

/// The pidfile held now, for the forced exit (which runs no destructors).
static HELD: Mutex<Option<PathBuf>> = Mutex::new(None);

impl Pidfile {
    /// Writes this process's id to `path`: a file left by a process that is gone is
    /// replaced; one naming a running process (not this one) is refused.
    pub(crate) fn claim(path: &Path) -> Result<Self, OpsError> {
        let failed = |source| OpsError::Pidfile {
            path: path.to_owned(),
            source,
        };
        let ours = std::process::id();
        if let Some(pid) = read_pid(path).map_err(failed)? {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if alive && pid != ours as i32 {
                return Err(OpsError::PidfileInUse {
                    path: path.to_owned(),
                    pid,
                });
            }
            if !alive {
                tracing::info!(target: "nucleon", pidfile = %path.display(), "replacing a stale pidfile (process {pid} is gone)");
            }
        }
        // Written whole under another name, then renamed: a reader never sees half.
        let partial = path.with_extension("pid.partial");
        write(&partial, format!("{ours}\n").as_bytes()).map_err(failed)?;
        rename(&partial, path).map_err(failed)?;
        *HELD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(path.to_owned());
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        release(&self.path);
    }
}

/// Removes the pidfile held, if any (for the forced exit).
pub(crate) fn release_held() {
    let held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(path) = held {
        release(&path);
    }
}

/// Removes `path` if it still names this process (a successor may have replaced it).
fn release(path: &Path) {
    if read_pid(path).ok().flatten() == Some(std::process::id() as i32) {
        remove(path);
    }
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
}

#[allow(
    clippy::disallowed_methods,
    reason = "at start or exit, off any worker loop"
)]
fn read_pid(path: &Path) -> Result<Option<i32>, std::io::Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[allow(clippy::disallowed_methods, reason = "at start, off any worker loop")]
fn write(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    std::fs::write(path, bytes)
}

#[allow(clippy::disallowed_methods, reason = "at start, off any worker loop")]
fn rename(from: &Path, to: &Path) -> Result<(), std::io::Error> {
    std::fs::rename(from, to)
}

#[allow(clippy::disallowed_methods, reason = "at exit, off any worker loop")]
fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The user and group to run as once the listeners are bound (`--user`, `--group`).
#[derive(Debug, Clone)]
pub(crate) struct Privileges {
    uid: Uid,
    gid: Gid,
    to: String,
}

impl Privileges {
    /// Looks `user` and `group` up (the user's own group when only `--user` is given);
    /// `None` when neither is.
    pub(crate) fn resolve(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<Self>, OpsError> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let unknown = |kind, name: &str| OpsError::Unknown {
            kind,
            name: name.to_owned(),
        };
        let found_user = match user {
            Some(name) => Some(
                User::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unknown("user", name))?,
            ),
            None => None,
        };
        let gid = match (group, &found_user) {
            (Some(name), _) => {
                Group::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unknown("group", name))?
                    .gid
            }
            (None, Some(user)) => user.gid,
            (None, None) => Gid::current(),
        };
        let uid = found_user.as_ref().map_or_else(Uid::current, |u| u.uid);
        let to = format!(
            "user {} (uid {uid}), group {} (gid {gid})",
            user.unwrap_or("(unchanged)"),
            group.unwrap_or("(the user's)"),
        );
        Ok(Some(Self { uid, gid, to }))
    }

    /// Becomes that user and group, for every thread of the process (the C library
    /// applies `setuid` process-wide); then checks that root's powers are gone.
    pub(crate) fn drop_now(&self) -> Result<(), OpsError> {
        let failed = |reason: String| OpsError::Drop {
            to: self.to.clone(),
            reason,
        };
        if Uid::effective().is_root() {
            nix::unistd::setgroups(&[self.gid]).map_err(|e| failed(format!("setgroups: {e}")))?;
        }
        nix::unistd::setgid(self.gid).map_err(|e| failed(format!("setgid: {e}")))?;
        nix::unistd::setuid(self.uid).map_err(|e| failed(format!("setuid: {e}")))?;
        if !self.uid.is_root()
            && (Uid::effective().is_root() || nix::unistd::setuid(Uid::from_raw(0)).is_ok())
        {
            return Err(failed(
                "root's privileges are still there after setuid".into(),
            ));
        }
        tracing::info!(target: "nucleon", "running as {}", self.to);
        Ok(())
    }
}

/// `net.ipv4.tcp_migrate_req` (Linux 5.14+): when a listener of a `SO_REUSEPORT` group
/// closes, the kernel hands the connections still waiting in its accept queue to
/// another listener of the group, rather than reset them.
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// For `--replace`: says (once, at start) whether the old process's queued connections
/// will reach this one when it closes its listener.
#[allow(clippy::disallowed_methods, reason = "at start, off any worker loop")]
pub(crate) fn check_migration() {
    match std::fs::read_to_string(MIGRATE_REQ).map(|v| v.trim().to_owned()) {
        Ok(v) if v == "1" => {
            tracing::info!(target: "nucleon", "net.ipv4.tcp_migrate_req is 1: connections queued at the old process when it closes its listener come to this one");
        }
        Ok(_) => {
            tracing::warn!(target: "nucleon", "net.ipv4.tcp_migrate_req is 0: connections still queued at the old process when it closes its listener are reset (a client sees a refused or reset connection); `sysctl -w net.ipv4.tcp_migrate_req=1` hands them to this process");
        }
        Err(_) => {
            tracing::warn!(target: "nucleon", "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+): connections still queued at the old process when it closes its listener are reset");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfile_is_written_replaced_when_stale_refused_when_live_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        // Left by a process that is gone (pid numbers this high are not handed out).
        write(&path, b"2147483000\n").unwrap();
        let held = Pidfile::claim(&path).expect("a stale pidfile is replaced");
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        drop(held);
        assert_eq!(read_pid(&path).unwrap(), None, "removed at exit");
        // PID 1 runs on every system.
        write(&path, b"1\n").unwrap();
        let refused = Pidfile::claim(&path).unwrap_err();
        assert!(
            matches!(refused, OpsError::PidfileInUse { pid: 1, .. }),
            "{refused}"
        );
        assert_eq!(read_pid(&path).unwrap(), Some(1), "left as it was");
    }

    #[test]
    fn unknown_users_and_groups_are_named() {
        assert!(Privileges::resolve(None, None).unwrap().is_none());
        let error = Privileges::resolve(Some("no-such-user-here"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no user `no-such-user-here` on this system (--user)"
        );
        let error = Privileges::resolve(None, Some("no-such-group-here")).unwrap_err();
        assert!(error.to_string().contains("--group"), "{error}");
        assert!(Privileges::resolve(Some("root"), None).unwrap().is_some());
    }
}
