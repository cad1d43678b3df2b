//! Process hygiene: process groups, and reaping what the children leave behind.
//!
//! Each stdio backend runs in its own process group so that `npx ...` or a shell
//! wrapper and all their descendants can be stopped together. The gateway also
//! makes itself a *child subreaper*: descendants orphaned when their parent dies
//! are re-parented to the gateway instead of PID 1 (which, in many containers,
//! never reaps them), and [`reap_orphans`] collects them. Tokio reaps the direct
//! children it spawned, so those are tracked here and left alone.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

static TRACKED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Held (shared) while a child is being spawned and until it is tracked; the
/// reaper takes it exclusively, or skips its round. Otherwise it could reap a
/// child whose exec failed before `Command::spawn` waits for it (std then
/// panics), or one that exited before it was tracked (tokio would lose it).
static SPAWNING: RwLock<()> = RwLock::new(());

/// Hold this while spawning a child, until [`track`] has been called.
pub(crate) fn spawning() -> RwLockReadGuard<'static, ()> {
    SPAWNING.read().unwrap_or_else(|p| p.into_inner())
}

/// Become the reaper of our descendants' orphans (Linux only; harmless elsewhere).
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(
            "could not become child subreaper ({e}); orphaned grandchildren may linger as zombies"
        );
    }
}

pub(crate) fn track(pid: i32) {
    if let Ok(mut t) = TRACKED.lock() {
        t.get_or_insert_with(HashSet::new).insert(pid);
    }
}

pub(crate) fn untrack(pid: i32) {
    if let Ok(mut t) = TRACKED.lock()
        && let Some(set) = t.as_mut()
    {
        set.remove(&pid);
    }
}

/// Reap zombie children that tokio does not own (re-parented orphans).
pub fn reap_orphans() -> usize {
    // A spawn in progress: the next round (SIGCHLD or the 250 ms tick) reaps.
    let Ok(_no_spawns) = SPAWNING.try_write() else {
        return 0;
    };
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let tracked: HashSet<i32> = TRACKED
        .lock()
        .ok()
        .and_then(|t| t.clone())
        .unwrap_or_default();
    let mut reaped = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if tracked.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Format: pid (comm) state ppid ... ; comm may contain spaces and parens.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z")
            && ppid == Some(me)
            && waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            reaped += 1;
        }
    }
    reaped
}

/// Whether any process of the group is still there (zombies included).
pub fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

pub fn signal_group(pgid: i32, signal: Signal) {
    // ESRCH (group already gone) is the normal case here.
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// SIGTERM the group, wait up to `grace` for it to empty, then SIGKILL.
pub async fn stop_group(pgid: i32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_orphans();
        if !group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal_group(pgid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && group_alive(pgid) {
        reap_orphans();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
