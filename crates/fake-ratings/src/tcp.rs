//! The socket server behind [`FakeRatings::start`](crate::FakeRatings::start): one task
//! accepting on the listener, one task per connection, each connection one request. The
//! accept loop is shared with [`hyper_server`](crate::hyper_server).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::behaviour::{self, Outcome};
use crate::http1;
use crate::state::InstanceState;

/// How long [`Server::stop`] waits for the accept task to end before panicking.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// A running server; dropping it aborts the accept task, which drops the listener and every
/// open connection.
#[derive(Debug)]
pub(crate) struct Server {
    /// Tells the accept task to stop (dropping it does too).
    stop: Option<oneshot::Sender<()>>,
    /// The accept task, which owns the listener and the connection tasks.
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `state` on `listener` until stopped or dropped: one request per connection.
    pub(crate) fn spawn(listener: TcpListener, state: Arc<InstanceState>) -> Self {
        Self::spawn_with(listener, move |stream| serve(stream, Arc::clone(&state)))
    }

    /// Accepts on `listener` until stopped or dropped, each connection served by a task
    /// running `connection(stream)`.
    pub(crate) fn spawn_with<F, Fut>(listener: TcpListener, connection: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, connection, stopped));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops accepting, closes every open connection, and waits for that, at most
    /// [`STOP_LIMIT`].
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(STOP_LIMIT, &mut self.task)
            .await
            .is_err()
        {
            panic!("fake ratings did not stop within {STOP_LIMIT:?}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until `stopped` fires (or its sender is dropped); then drops the
/// listener, so new connections are refused, and aborts the connections still open.
async fn accept<F, Fut>(listener: TcpListener, connection: F, mut stopped: oneshot::Receiver<()>)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            // Reap finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream));
                }
                // Such as running out of file descriptors: try again shortly (the loop still
                // ends when stopped).
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Reads one request from `stream`, answers it as the instance's behaviour says, and closes.
async fn serve(mut stream: TcpStream, state: Arc<InstanceState>) {
    let Some(request) = http1::read_request(&mut stream).await else {
        return;
    };
    let (behaviour, _held) = state.receive(request.traceparent.as_deref());
    match behaviour::outcome(behaviour, state.instance(), &request.target).await {
        Outcome::Answer(answer) => {
            let bytes = http1::answer(answer.status, answer.content_type, &answer.body);
            let _ = stream.write_all(&bytes).await;
        }
        Outcome::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
        }
        Outcome::Hang => {
            // Held until the client closes its side (or the server stops).
            let mut sink = [0_u8; 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}
