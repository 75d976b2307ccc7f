//! A local HTTP receiver for webhook tests: records every request it gets (headers and body) and
//! answers what the test sets — a status, a `Retry-After`, or nothing for a while (a stall).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

#[derive(Default)]
struct Behaviour {
    status: AtomicU16,
    stall_ms: AtomicU64,
    retry_after: Mutex<Option<String>>,
    received: Mutex<Vec<Received>>,
}

/// The receiver, serving on a random loopback port until dropped.
pub struct Receiver {
    behaviour: Arc<Behaviour>,
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers 204 until told otherwise; requests go to `{url}` (path `/hook`).
    pub async fn start() -> Receiver {
        let behaviour = Arc::new(Behaviour::default());
        behaviour.status.store(204, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(behaviour.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the receiver");
        });
        Receiver {
            behaviour,
            url,
            server,
        }
    }

    /// Answers `status` from now on, with `retry_after` as the `Retry-After` header if given.
    pub fn answer(&self, status: u16, retry_after: Option<&str>) {
        self.behaviour.status.store(status, Ordering::SeqCst);
        *self.behaviour.retry_after.lock().unwrap() = retry_after.map(str::to_owned);
    }

    /// Waits this long before answering (0: at once).
    pub fn stall(&self, duration: Duration) {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.behaviour.stall_ms.store(ms, Ordering::SeqCst);
    }

    /// How many requests came so far.
    pub fn count(&self) -> usize {
        self.behaviour.received.lock().unwrap().len()
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.behaviour.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(behaviour): State<Arc<Behaviour>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    behaviour.received.lock().unwrap().push(Received {
        headers,
        body,
        at: std::time::Instant::now(),
    });
    let stall_ms = behaviour.stall_ms.load(Ordering::SeqCst);
    if stall_ms > 0 {
        tokio::time::sleep(Duration::from_millis(stall_ms)).await;
    }
    let status = StatusCode::from_u16(behaviour.status.load(Ordering::SeqCst))
        .expect("a status the test set");
    let mut answer = HeaderMap::new();
    if let Some(after) = behaviour.retry_after.lock().unwrap().clone() {
        answer.insert("retry-after", after.parse().expect("a header value"));
    }
    (status, answer)
}
