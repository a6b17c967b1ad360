//! The request being handled. Its server span is recorded directly (see
//! [`super::trace::ServerSpan`]) and is current on the thread while the
//! request is polled: `tracing` spans made with no exported parent become
//! its children, warnings and errors logged outside any exported span
//! become its events, and log lines carry its ids. The `tracing` span a
//! request also has exists for log lines only.

use super::otlp::batch::Batcher;
use super::otlp::context::SpanContext;
use super::otlp::record::SpanRecord;
use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

/// A request's server span: its identity, and its record while it is open
/// if it is sampled. It ends, and is queued for export, when the last
/// reference to it goes.
pub(super) struct RequestSpan {
    pub context: SpanContext,
    recording: Option<(Mutex<SpanRecord>, Arc<Batcher>)>,
}

impl RequestSpan {
    pub(super) fn new(context: SpanContext, recording: Option<(SpanRecord, Arc<Batcher>)>) -> Self {
        Self {
            context,
            recording: recording.map(|(record, batcher)| (Mutex::new(record), batcher)),
        }
    }

    /// Changes the open record, if the span is sampled.
    pub(super) fn update(&self, change: impl FnOnce(&mut SpanRecord)) {
        if let Some((record, _)) = &self.recording {
            change(&mut record.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if let Some((record, batcher)) = self.recording.take() {
            let record = record.into_inner().unwrap_or_else(PoisonError::into_inner);
            batcher.end(record);
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<RequestSpan>>> = const { RefCell::new(None) };
}

/// Puts the request it holds back to what was current before, also when
/// the work unwinds.
struct Restore(Option<Arc<RequestSpan>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let ours = CURRENT.with(|current| current.replace(self.0.take()));
        drop(ours);
    }
}

/// Runs `work` with `request` as this thread's current request.
pub(super) fn in_request<T>(request: &Arc<RequestSpan>, work: impl FnOnce() -> T) -> T {
    let outer = CURRENT.with(|current| current.replace(Some(request.clone())));
    let _restore = Restore(outer);
    work()
}

/// Runs `future`, with `request` current while it is polled.
pub(super) async fn scope<F: Future>(request: Option<Arc<RequestSpan>>, future: F) -> F::Output {
    let Some(request) = request else {
        return future.await;
    };
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| in_request(&request, || future.as_mut().poll(cx))).await
}

/// The context of the request being handled on this thread, if any.
pub(super) fn current_context() -> Option<SpanContext> {
    CURRENT
        .try_with(|current| current.borrow().as_ref().map(|request| request.context))
        .ok()
        .flatten()
}

/// Changes the record of the request being handled, if there is one and it
/// is sampled.
pub(super) fn with_current_record(change: impl FnOnce(&mut SpanRecord)) {
    let _ = CURRENT.try_with(|current| {
        if let Some(request) = current.borrow().as_ref() {
            request.update(change);
        }
    });
}
