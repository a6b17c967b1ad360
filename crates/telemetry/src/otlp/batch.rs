//! Finished spans wait in one queue; a thread of their own sends them to
//! the collector in batches. A request only ever pushes onto the queue:
//! it never waits for an export, and when the collector is slow or down
//! the queue fills and later spans are dropped (and counted).

use super::encode::{self, Origin};
use super::record::SpanRecord;
use super::settings::Settings;
use axum::body::Bytes;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

/// The queue of finished spans.
#[derive(Debug)]
pub struct Batcher {
    queue: Mutex<Queue>,
    /// Signalled when a full batch is waiting or the exporter should stop.
    ready: Condvar,
    max_queue: usize,
    max_batch: usize,
    form: Form,
}

/// How spans wait in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As records (for `http/json`, and tests that read them).
    Records,
    /// Encoded (for `http/protobuf`), after `head_room` bytes left for the
    /// export request's head ([`encode::request_head_room`]): the request
    /// is then sent from the buffer the spans were encoded into.
    Encoded { head_room: usize },
}

/// Spans queued for one export request.
#[derive(Debug)]
pub enum Batch {
    Records(Vec<SpanRecord>),
    /// The head room, then spans as [`encode::span_entry`] writes them;
    /// and how many.
    Encoded(Vec<u8>, usize),
}

impl Batch {
    /// An empty batch of records, or of encoded spans in `bytes` (empty).
    fn empty(form: Form, max_batch: usize, mut bytes: Vec<u8>) -> Self {
        match form {
            Form::Encoded { head_room } => {
                bytes.resize(head_room, 0);
                Self::Encoded(bytes, 0)
            }
            Form::Records => Self::Records(Vec::with_capacity(max_batch)),
        }
    }

    /// How many spans it holds.
    pub fn spans(&self) -> usize {
        match self {
            Self::Records(spans) => spans.len(),
            Self::Encoded(_, count) => *count,
        }
    }
}

#[derive(Debug)]
struct Queue {
    /// Full batches, oldest first.
    full: Vec<Batch>,
    /// The batch being filled.
    filling: Batch,
    /// Spans in all batches.
    queued: usize,
    /// The size of the last full encoded batch: a new one is given as
    /// much room, so that it is not regrown (and copied) span by span.
    batch_bytes: usize,
    /// Buffers of exported batches, to encode the next ones into: memory
    /// the requests' threads have written before, rather than new pages.
    spare: Vec<Vec<u8>>,
    dropped: u64,
    closing: bool,
}

thread_local! {
    /// Where a request's thread encodes a span before queueing it, so that
    /// the queue's lock is held only for the copy.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Batcher {
    pub fn new(max_queue: usize, max_batch: usize, form: Form) -> Self {
        Self {
            queue: Mutex::new(Queue {
                full: Vec::new(),
                filling: Batch::empty(form, max_batch, Vec::new()),
                queued: 0,
                batch_bytes: 0,
                spare: Vec::new(),
                dropped: 0,
                closing: false,
            }),
            ready: Condvar::new(),
            max_queue,
            max_batch,
            form,
        }
    }

    /// The bytes an encoded batch leaves free before its spans.
    fn head_room(&self) -> usize {
        match self.form {
            Form::Encoded { head_room } => head_room,
            Form::Records => 0,
        }
    }

    /// Takes the batch being filled out of `queue`, putting an empty one
    /// in its place.
    fn take_filling(&self, queue: &mut Queue) -> Batch {
        let bytes = match queue.spare.pop() {
            Some(spare) => spare,
            None if self.form != Form::Records => Vec::with_capacity(queue.batch_bytes),
            None => Vec::new(),
        };
        std::mem::replace(
            &mut queue.filling,
            Batch::empty(self.form, self.max_batch, bytes),
        )
    }

    /// Takes back the buffer of an exported batch, to fill again.
    pub fn recycle(&self, mut bytes: Vec<u8>) {
        /// One for the batch being filled, one for a full one waiting.
        const KEPT: usize = 2;
        bytes.clear();
        let mut queue = self.lock();
        if queue.spare.len() < KEPT {
            queue.spare.push(bytes);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends `span` now and queues it.
    pub fn end(&self, mut span: SpanRecord) {
        span.end = super::record::now();
        self.push(span);
    }

    /// Queues a finished span, or drops it when the queue is full.
    pub fn push(&self, span: SpanRecord) {
        if self.form == Form::Records {
            self.queue_one(|batch| {
                if let Batch::Records(spans) = batch {
                    spans.push(span);
                }
            });
            return;
        }
        // The fields first, so that their length is known without working
        // it out beforehand; the entry's head goes in front of them.
        let queue_encoded = |fields: &mut Vec<u8>| {
            fields.clear();
            encode::span_fields(fields, &span);
            self.queue_one(|batch| {
                if let Batch::Encoded(bytes, count) = batch {
                    encode::span_entry_head(bytes, fields.len());
                    bytes.extend_from_slice(fields);
                    *count += 1;
                }
            });
        };
        let queued = SCRATCH.try_with(|scratch| queue_encoded(&mut scratch.borrow_mut()));
        if queued.is_err() {
            // A thread being torn down has no scratch left.
            queue_encoded(&mut Vec::new());
        }
    }

    /// Adds one span to the batch being filled with `add`, unless the queue
    /// is full; a batch that fills up is handed to the exporter.
    fn queue_one(&self, add: impl FnOnce(&mut Batch)) {
        let mut queue = self.lock();
        if queue.queued >= self.max_queue {
            queue.dropped += 1;
            return;
        }
        add(&mut queue.filling);
        queue.queued += 1;
        if queue.filling.spans() == self.max_batch {
            if let Batch::Encoded(bytes, _) = &queue.filling {
                queue.batch_bytes = bytes.len();
            }
            let full = self.take_filling(&mut queue);
            queue.full.push(full);
            self.ready.notify_one();
        }
    }

    /// Everything queued as records, taken out (tests read spans this way).
    #[cfg(test)]
    pub fn take(&self) -> Vec<SpanRecord> {
        let (batches, _, _) = self.next(Duration::ZERO);
        batches
            .into_iter()
            .flat_map(|batch| match batch {
                Batch::Records(spans) => spans,
                Batch::Encoded(..) => panic!("spans are queued encoded"),
            })
            .collect()
    }

    /// The protobuf bodies of export requests for everything queued, made
    /// as the export thread makes them (tests decode them).
    #[cfg(test)]
    pub fn take_protobuf_requests(self: &Arc<Self>, origin: &Origin) -> Vec<Bytes> {
        let mut requests = Vec::new();
        loop {
            // Full batches first; the part batch once none is left.
            let (batches, _, _) = self.next(Duration::ZERO);
            if batches.is_empty() {
                return requests;
            }
            for batch in batches {
                let (body, content_type) = export_body(self, origin, false, batch);
                assert_eq!(content_type, "application/x-protobuf");
                requests.push(body);
            }
        }
    }

    /// Waits until a batch is full, `delay` has passed or the exporter is
    /// told to stop; returns the full batches (or, after the delay or at
    /// stop, everything queued), how many spans were dropped since the last
    /// call, and whether to stop.
    fn next(&self, delay: Duration) -> (Vec<Batch>, u64, bool) {
        let deadline = Instant::now() + delay;
        let mut queue = self.lock();
        while queue.full.is_empty() && !queue.closing {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            queue = self
                .ready
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let mut batches = std::mem::take(&mut queue.full);
        // A part batch waits for its delay, unless the exporter stops.
        if (batches.is_empty() || queue.closing) && queue.filling.spans() > 0 {
            let part = self.take_filling(&mut queue);
            batches.push(part);
        }
        queue.queued -= batches.iter().map(Batch::spans).sum::<usize>();
        (batches, std::mem::take(&mut queue.dropped), queue.closing)
    }

    fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_one();
    }
}

/// The export thread; [`stop`](Self::stop) flushes what is queued.
#[derive(Debug)]
pub struct Worker {
    batcher: Arc<Batcher>,
    stopped: mpsc::Receiver<()>,
    export_timeout: Duration,
}

impl Worker {
    /// Starts exporting what `batcher` queues, as `settings` say.
    pub fn start(
        batcher: Arc<Batcher>,
        settings: Settings,
        origin: Origin,
    ) -> std::io::Result<Self> {
        let (done, stopped) = mpsc::channel();
        let export_timeout = settings.export_timeout;
        let queue = batcher.clone();
        std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || {
                export_loop(&queue, &settings, &origin);
                let _ = done.send(());
            })?;
        Ok(Self {
            batcher,
            stopped,
            export_timeout,
        })
    }

    /// Exports what is still queued, waiting at most the export timeout.
    pub fn stop(self) -> Result<(), String> {
        self.batcher.close();
        self.stopped.recv_timeout(self.export_timeout).map_err(|_| {
            format!(
                "the last spans were not exported within {:?}",
                self.export_timeout
            )
        })
    }
}

/// The export request of an encoded batch, `bytes`: its head is written
/// into the room left before the spans, so the spans go out from where
/// they were encoded rather than being copied behind a head; the buffer
/// goes back to `batcher` once the request is sent. Without room it is
/// copied.
fn request_of_encoded(batcher: &Arc<Batcher>, origin: &Origin, mut bytes: Vec<u8>) -> Bytes {
    let room = batcher.head_room();
    let head = encode::request_head(origin, bytes.len() - room);
    let Some(start) = room.checked_sub(head.len()) else {
        let request = encode::protobuf_of_entries(origin, &bytes[room..]);
        batcher.recycle(bytes);
        return Bytes::from(request);
    };
    bytes[start..room].copy_from_slice(&head);
    Bytes::from_owner(Sending {
        bytes,
        start,
        batcher: batcher.clone(),
    })
}

/// The body of the export request for `batch`, and its content type.
fn export_body(
    batcher: &Arc<Batcher>,
    origin: &Origin,
    json: bool,
    batch: Batch,
) -> (Bytes, &'static str) {
    match batch {
        Batch::Records(records) if json => (
            Bytes::from(encode::json(origin, &records)),
            "application/json",
        ),
        Batch::Records(records) => (
            Bytes::from(encode::protobuf(origin, &records)),
            "application/x-protobuf",
        ),
        Batch::Encoded(bytes, _) => (
            request_of_encoded(batcher, origin, bytes),
            "application/x-protobuf",
        ),
    }
}

/// An export request being sent from its batch's buffer.
struct Sending {
    bytes: Vec<u8>,
    /// Where the request starts: the head room is larger than its head.
    start: usize,
    batcher: Arc<Batcher>,
}

impl AsRef<[u8]> for Sending {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.batcher.recycle(std::mem::take(&mut self.bytes));
    }
}

fn export_loop(batcher: &Arc<Batcher>, settings: &Settings, origin: &Origin) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trace export is off: cannot start its runtime: {err}");
            return;
        }
    };
    let client = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("trace export is off: cannot make its HTTP client: {err}");
            return;
        }
    };
    let mut failing = false;
    loop {
        let (batches, dropped, closing) = batcher.next(settings.schedule_delay);
        if dropped > 0 {
            tracing::warn!(dropped, "trace export queue was full: spans dropped");
        }
        for batch in batches {
            let spans = batch.spans();
            let (body, content_type) = export_body(batcher, origin, settings.json, batch);
            let mut request = client
                .post(&settings.endpoint)
                .header("content-type", content_type)
                .body(body);
            for (name, value) in &settings.headers {
                request = request.header(name, value);
            }
            let outcome = runtime.block_on(async {
                let response = request.send().await.map_err(without_url)?;
                let status = response.status();
                // Read the answer so that the connection can be reused.
                let _ = response.bytes().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the collector answered {status}"))
                }
            });
            // One warning when exporting starts failing, one when it recovers.
            match outcome {
                Err(reason) if !failing => {
                    failing = true;
                    tracing::warn!(%reason, spans, "trace export failed: spans dropped");
                }
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("trace export works again");
                }
                _ => {}
            }
        }
        if closing {
            return;
        }
    }
}

/// An HTTP client error without the URL, which may carry credentials.
fn without_url(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", err.without_url())
}

#[cfg(test)]
mod tests {
    use super::super::context::SpanContext;
    use super::super::record::{SpanKind, Status};
    use super::*;

    fn span(n: u64) -> SpanRecord {
        SpanRecord {
            context: SpanContext {
                trace_id: 1,
                span_id: n,
                sampled: true,
                remote: false,
            },
            parent_span_id: 0,
            parent_is_remote: false,
            name: "work".into(),
            kind: SpanKind::Internal,
            start: 1,
            end: 2,
            shared: None,
            attributes: Vec::new(),
            events: Vec::new(),
            status: Status::Unset,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        for form in [Form::Records, Form::Encoded { head_room: 16 }] {
            let batcher = Batcher::new(3, 2, form);
            for n in 1..=5 {
                batcher.push(span(n));
            }
            // A full batch first; the part batch left over after its delay.
            let (batches, dropped, closing) = batcher.next(Duration::ZERO);
            let lens: Vec<usize> = batches.iter().map(Batch::spans).collect();
            assert_eq!(lens, [2]);
            assert_eq!((dropped, closing), (2, false));
            let (batches, dropped, _) = batcher.next(Duration::ZERO);
            let lens: Vec<usize> = batches.iter().map(Batch::spans).collect();
            assert_eq!((lens, dropped), (vec![1], 0));
            // Room again.
            batcher.push(span(6));
            let (batches, _, _) = batcher.next(Duration::ZERO);
            assert_eq!(batches.iter().map(Batch::spans).sum::<usize>(), 1);
        }
    }

    #[test]
    fn a_reused_buffer_holds_only_the_spans_queued_after_it() {
        const ROOM: usize = 5;
        let batcher = Batcher::new(10, 2, Form::Encoded { head_room: ROOM });
        batcher.push(span(1));
        batcher.push(span(2));
        let (mut batches, _, _) = batcher.next(Duration::ZERO);
        let Some(Batch::Encoded(first, 2)) = batches.pop() else {
            panic!("one full encoded batch");
        };
        batcher.recycle(first);
        // The batch being filled was made before the buffer came back; the
        // one after it is made from the buffer.
        for n in 3..=6 {
            batcher.push(span(n));
        }
        let (batches, _, _) = batcher.next(Duration::ZERO);
        let mut expected = Vec::new();
        for n in 3..=6 {
            encode::span_entry(&mut expected, &span(n));
        }
        let queued: Vec<u8> = batches
            .into_iter()
            .flat_map(|batch| match batch {
                Batch::Encoded(bytes, _) => bytes[ROOM..].to_vec(),
                Batch::Records(_) => panic!("spans are queued encoded"),
            })
            .collect();
        assert_eq!(queued, expected);
    }

    #[test]
    fn a_batch_is_sent_from_its_buffer_which_then_comes_back() {
        let head_room = encode::request_head_room(&origin());
        let batcher = Arc::new(Batcher::new(10, 2, Form::Encoded { head_room }));
        batcher.push(span(1));
        batcher.push(span(2));
        let (mut batches, _, _) = batcher.next(Duration::ZERO);
        let Some(Batch::Encoded(bytes, 2)) = batches.pop() else {
            panic!("one full encoded batch");
        };
        let buffer = bytes.as_ptr();
        let request = request_of_encoded(&batcher, &origin(), bytes);
        assert_eq!(
            request[..],
            encode::protobuf(&origin(), &[span(1), span(2)])[..]
        );
        assert!(batcher.lock().spare.is_empty(), "in use while it is sent");
        drop(request);
        let spare = batcher.lock().spare.pop().expect("the buffer came back");
        assert_eq!(spare.as_ptr(), buffer);
        assert!(spare.is_empty());
        // Without room the spans are copied behind the head.
        let tight = Arc::new(Batcher::new(10, 1, Form::Encoded { head_room: 0 }));
        tight.push(span(3));
        let (mut batches, _, _) = tight.next(Duration::ZERO);
        let Some(Batch::Encoded(bytes, 1)) = batches.pop() else {
            panic!("one full encoded batch");
        };
        let request = request_of_encoded(&tight, &origin(), bytes);
        assert_eq!(request[..], encode::protobuf(&origin(), &[span(3)])[..]);
    }

    fn settings(endpoint: &str, extra: &[(&str, &str)]) -> Settings {
        let mut vars = vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            endpoint.to_owned(),
        )];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .unwrap()
    }

    fn origin() -> Origin {
        Origin {
            resource: vec![(
                "service.name".into(),
                super::super::record::Value::Str("test".into()),
            )],
            scope: "dure",
            scope_version: "0",
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_batches_are_posted_at_once_and_the_rest_at_stop() {
        type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>>;
        let received = Received::default();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(
                    |axum::extract::State(received): axum::extract::State<Received>,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        received.lock().unwrap().push((headers, body));
                        ""
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        // Without a full batch nothing would go out for a minute.
        let settings = settings(
            &endpoint,
            &[
                ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-team=core"),
            ],
        );
        let head_room = encode::request_head_room(&origin());
        let batcher = Arc::new(Batcher::new(
            settings.max_queue,
            settings.max_batch,
            Form::Encoded { head_room },
        ));
        let worker = Worker::start(batcher.clone(), settings, origin()).unwrap();
        let spans: Vec<SpanRecord> = (1..=3).map(span).collect();
        for span in &spans {
            batcher.push(span.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let received = received.lock().unwrap();
            assert_eq!(received.len(), 1, "the full batch, and only it");
            let (headers, body) = &received[0];
            assert_eq!(headers["content-type"], "application/x-protobuf");
            assert_eq!(headers["x-team"], "core");
            assert_eq!(body[..], encode::protobuf(&origin(), &spans[..2])[..]);
        }
        tokio::task::spawn_blocking(move || worker.stop())
            .await
            .unwrap()
            .expect("stopped within the export timeout");
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 2, "the last span is flushed at stop");
        assert_eq!(
            received[1].1[..],
            encode::protobuf(&origin(), &spans[2..])[..]
        );
    }

    #[test]
    fn a_collector_that_is_down_costs_only_the_spans() {
        // Nothing listens on port 1: every export fails at once.
        let settings = settings("http://127.0.0.1:1", &[("OTEL_BSP_SCHEDULE_DELAY", "10")]);
        let batcher = Arc::new(Batcher::new(4, 2, Form::Encoded { head_room: 0 }));
        let worker = Worker::start(batcher.clone(), settings, origin()).unwrap();
        for n in 1..=10 {
            batcher.push(span(n));
        }
        let started = Instant::now();
        worker
            .stop()
            .expect("stopping does not wait on the collector");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_full_batch_wakes_the_exporter_before_the_delay() {
        let batcher = Arc::new(Batcher::new(10, 2, Form::Records));
        let pusher = batcher.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            pusher.push(span(1));
            pusher.push(span(2));
        });
        let (batches, _, _) = batcher.next(Duration::from_secs(30));
        assert_eq!(batches.iter().map(Batch::spans).collect::<Vec<_>>(), [2]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
