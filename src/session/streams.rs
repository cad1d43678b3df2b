//! Streams of one session: which stream each server message goes to, the
//! bounded log of SSE events for `Last-Event-ID` resumption, and what waits
//! while no stream is open.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Outgoing, Pending, State};
use crate::jsonrpc::{Message, RequestId};

/// Events kept per session for `Last-Event-ID` resumption: at most this many,
/// and at most this many bytes.
pub(super) const EVENT_LOG_CAPACITY: usize = 512;
pub(super) const EVENT_LOG_BYTES: usize = 256 * 1024;
/// Server messages kept while no stream can take them.
pub(super) const UNDELIVERED_CAPACITY: usize = 256;
/// Messages queued for one connected stream. A client that falls this far
/// behind is disconnected from the stream (it can resume from the event log)
/// rather than letting the queue grow without bound.
pub(super) const STREAM_QUEUE: usize = 1024;
// A replay (or a flush of undelivered messages) must fit in a fresh queue.
const _: () = assert!(EVENT_LOG_CAPACITY < STREAM_QUEUE && UNDELIVERED_CAPACITY < STREAM_QUEUE);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotKind {
    Post,
    Get,
    Legacy,
}

pub(super) struct Slot {
    pub(super) kind: SlotKind,
    pub(super) sink: Option<mpsc::Sender<Outgoing>>,
    /// Requests on this stream still waiting for their answer.
    pub(super) open: usize,
    pub(super) seq: u64,
}

pub(super) struct Logged {
    pub(super) stream: u64,
    pub(super) seq: u64,
    pub(super) data: Bytes,
    pub(super) is_response: bool,
}

pub(super) fn new_slot(
    st: &mut State,
    kind: SlotKind,
    sink: Option<mpsc::Sender<Outgoing>>,
) -> u64 {
    st.next_stream += 1;
    let id = st.next_stream;
    st.streams.insert(
        id,
        Slot {
            kind,
            sink,
            open: 0,
            seq: 0,
        },
    );
    id
}

pub(super) fn related_stream(st: &State, related: Option<&RequestId>) -> Option<u64> {
    related.and_then(|r| st.pending.get(r)).map(|p| p.stream)
}

/// Route a server message that is not an answer.
pub(super) fn route(st: &mut State, target: Option<u64>, data: Bytes) {
    let connected = |st: &State, s: u64| st.streams.get(&s).is_some_and(|slot| slot.sink.is_some());
    let target = target
        .or_else(|| st.get_stream.filter(|g| connected(st, *g)))
        .or_else(|| {
            st.streams
                .iter()
                .filter(|(_, s)| s.kind == SlotKind::Post && s.open > 0 && s.sink.is_some())
                .map(|(id, _)| *id)
                .max()
        })
        .or(st.get_stream);
    match target {
        Some(t) => emit(st, t, data, false, false),
        None => {
            if st.undelivered.len() >= UNDELIVERED_CAPACITY {
                st.undelivered.pop_front();
                tracing::warn!("a server message was dropped: the client has no open stream");
            }
            st.undelivered.push_back(data);
        }
    }
}

/// Put one message on a stream: log it for resumption, send it if connected.
pub(super) fn emit(st: &mut State, stream: u64, data: Bytes, is_response: bool, completes: bool) {
    let Some(slot) = st.streams.get_mut(&stream) else {
        return;
    };
    slot.seq += 1;
    let seq = slot.seq;
    if completes {
        slot.open = slot.open.saturating_sub(1);
    }
    let last = slot.kind == SlotKind::Post && slot.open == 0;
    // The legacy transport has no resumption: nothing to keep.
    let keep = slot.kind != SlotKind::Legacy;
    let event_id: Arc<str> = format!("{stream}.{seq}").into();
    if let Some(sink) = &slot.sink
        && sink
            .try_send(Outgoing {
                event_id,
                data: data.clone(),
                is_response,
                last,
            })
            .is_err()
    {
        // Gone, or too far behind: either way the client resumes from the log.
        slot.sink = None;
    }
    if last {
        st.streams.remove(&stream);
    }
    if !keep {
        return;
    }
    // A compact copy: `data` may be a slice of a much larger read buffer, which
    // the log must not keep alive.
    let data = Bytes::copy_from_slice(&data);
    st.log_bytes += data.len();
    st.log.push_back(Logged {
        stream,
        seq,
        data,
        is_response,
    });
    while st.log.len() > EVENT_LOG_CAPACITY || (st.log_bytes > EVENT_LOG_BYTES && st.log.len() > 1)
    {
        match st.log.pop_front() {
            Some(old) => st.log_bytes -= old.data.len(),
            None => break,
        }
    }
}

/// The client gave up on a request: stop waiting for it.
/// Forget a request the client cancelled; returns it (for the audit record).
pub(super) fn cancel_pending(st: &mut State, msg: &Message) -> Option<Pending> {
    #[derive(serde::Deserialize)]
    struct C<'a> {
        #[serde(borrow)]
        params: Option<P<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, rename = "requestId")]
        request_id: Option<&'a serde_json::value::RawValue>,
    }
    let Ok(C {
        params: Some(P {
            request_id: Some(raw),
        }),
    }) = serde_json::from_slice::<C>(&msg.raw)
    else {
        return None;
    };
    let Ok(probe) = Message::parse(Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"method":"x"}}"#,
        raw.get()
    ))) else {
        return None;
    };
    let id = probe.request_id()?;
    let p = st.pending.remove(id)?;
    {
        if let Some(tok) = &p.progress {
            st.progress.remove(tok);
        }
        if let Some(slot) = st.streams.get_mut(&p.stream) {
            slot.open = slot.open.saturating_sub(1);
            if slot.kind == SlotKind::Post && slot.open == 0 {
                st.streams.remove(&p.stream);
            }
        }
    }
    Some(p)
}

pub(super) fn parse_event_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
