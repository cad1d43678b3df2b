//! stdio backend: one child process per session, newline-delimited JSON-RPC.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::{BackendError, InboxRef, process};
use crate::jsonrpc::Message;
use crate::service::Service;

pub struct StdioBackend {
    to_child: mpsc::UnboundedSender<Bytes>,
    pgid: i32,
    exited: watch::Receiver<bool>,
    grace: std::time::Duration,
}

/// Environment variables a child inherits from the gateway; everything else must
/// be configured, so that the gateway's own secrets never leak into backends.
const INHERITED_ENV: [&str; 2] = ["PATH", "HOME"];

/// Longest message accepted from a server's stdout.
const MAX_LINE: usize = 64 * 1024 * 1024;

impl StdioBackend {
    pub fn spawn(
        service: &Arc<Service>,
        command: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
        cwd: Option<&str>,
        inbox: InboxRef,
    ) -> Result<StdioBackend, BackendError> {
        let mut cmd = Command::new(command);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        // If the gateway itself is killed (SIGKILL, OOM), its children must not
        // run on as orphans: the kernel sends them SIGKILL when it dies. (The
        // signal follows the spawning thread, a runtime worker that lives as
        // long as the gateway.) A clean shutdown still ends them gracefully.
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls are made:
        // prctl(2) and getppid(2), no allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The gateway may have died before the line above took effect.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    return Err(std::io::Error::other("the gateway is gone"));
                }
                Ok(())
            });
        }
        for var in INHERITED_ENV {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.envs(env);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let spawning = process::spawning();
        let mut child = cmd.spawn().map_err(|source| BackendError::Spawn {
            command: command.to_string(),
            source,
        })?;
        let pid = child.id().map(|p| p as i32).ok_or(BackendError::Closed)?;
        process::track(pid);
        drop(spawning);
        service.stats.processes.fetch_add(1, Ordering::Relaxed);
        let name = service.name.clone();
        tracing::debug!(service = %name, pid, "started backend process");

        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(BackendError::Closed);
        };

        // Writer: batch whatever is queued into one flush.
        let (to_child, mut queue) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(64 * 1024, stdin);
            while let Some(first) = queue.recv().await {
                let mut next = Some(first);
                while let Some(bytes) = next {
                    if w.write_all(&bytes).await.is_err() || w.write_all(b"\n").await.is_err() {
                        return;
                    }
                    next = queue.try_recv().ok();
                }
                if w.flush().await.is_err() {
                    return;
                }
            }
        });

        // Reader: every line is one JSON-RPC message.
        let reader_inbox = inbox.clone();
        let reader_name = name.clone();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, stdout);
            let mut line = Vec::with_capacity(4096);
            loop {
                line.clear();
                // Bounded, so a server that never ends its line cannot exhaust memory.
                match (&mut r)
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
                    tracing::warn!(service = %reader_name, "dropped a message over {MAX_LINE} bytes from the server's stdout");
                    // Skip the rest of that line.
                    loop {
                        line.clear();
                        match (&mut r).take(64 * 1024).read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line.last() == Some(&b'\n') => break,
                            Ok(_) => {}
                        }
                    }
                    continue;
                }
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                match Message::parse(Bytes::copy_from_slice(text)) {
                    Ok(msg) => match reader_inbox.upgrade() {
                        Some(inbox) => inbox.deliver(msg, None),
                        None => break,
                    },
                    Err(e) => tracing::warn!(
                        service = %reader_name,
                        bytes = text.len(),
                        "ignored a line on the server's stdout that is not JSON-RPC ({}); servers must log to stderr",
                        e.message()
                    ),
                }
            }
        });

        // stderr goes to our log, line by line, attributed to the service.
        let err_name = name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let l: String = l.chars().take(2000).collect();
                tracing::info!(target: "mcpgate::backend::stderr", service = %err_name, "{l}");
            }
        });

        // Exit watcher: reap the child, clean up its group, tell the session.
        let (exited_tx, exited) = watch::channel(false);
        let svc = service.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            process::untrack(pid);
            svc.stats.processes.fetch_sub(1, Ordering::Relaxed);
            let reason = match status {
                Ok(s) => format!("the server process exited ({s})"),
                Err(e) => format!("the server process could not be waited for: {e}"),
            };
            tracing::debug!(service = %svc.name, pid, "{reason}");
            // Descendants may outlive the group leader; end them too.
            process::stop_group(pid, svc.shutdown_grace).await;
            let _ = exited_tx.send(true);
            if let Some(inbox) = inbox.upgrade() {
                inbox.backend_closed(reason);
            }
        });

        Ok(StdioBackend {
            to_child,
            pgid: pid,
            exited,
            grace: service.shutdown_grace,
        })
    }

    pub fn send(&self, msg: Message) -> Result<(), BackendError> {
        self.to_child
            .send(msg.raw)
            .map_err(|_| BackendError::Closed)
    }

    pub async fn close(&self) {
        process::stop_group(self.pgid, self.grace).await;
        let mut exited = self.exited.clone();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(3), exited.wait_for(|e| *e)).await;
    }
}
