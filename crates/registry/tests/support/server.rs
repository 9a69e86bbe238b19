//! A registry served by `registry::run` (or `run_with_store`) on a port-0 listener.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use registry::Config;
use registry::store::Store;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A registry on a real socket; [`Server::stop`] shuts it down.
pub struct Server {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Sending on it is the shutdown signal `run` waits for.
    stop: Option<oneshot::Sender<()>>,
    /// `run` itself, to wait for it to return.
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    /// `registry::run` with `config`, on the store `config` names.
    pub async fn start(config: Config) -> Self {
        Self::serve(|listener, stopped| {
            tokio::spawn(registry::run(listener, config, async {
                let _ = stopped.await;
            }))
        })
        .await
    }

    /// `registry::run_with_store` with `config`, on `store`.
    pub async fn start_with_store(config: Config, store: Arc<dyn Store>) -> Self {
        Self::serve(|listener, stopped| {
            tokio::spawn(registry::run_with_store(listener, config, store, async {
                let _ = stopped.await;
            }))
        })
        .await
    }

    async fn serve(
        run: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> JoinHandle<io::Result<()>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        Self {
            url,
            stop: Some(stop),
            task: run(listener, stopped),
        }
    }

    /// Stops the server and waits (at most 5 s) for `run` to return; what it returned.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns promptly after shutdown")
            .expect("run did not panic")
    }

    /// The URL of one instance.
    pub fn instance(&self, service: &str, id: &str) -> String {
        format!("{}/v1/services/{service}/instances/{id}", self.url)
    }

    /// Registers with `body`, expecting 200; returns the lease.
    pub async fn register(
        &self,
        http: &reqwest::Client,
        service: &str,
        id: &str,
        body: &Value,
    ) -> String {
        let answer = http
            .put(self.instance(service, id))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json::<Value>().await.unwrap()["lease"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /v1/services/{service}`, read as JSON.
    pub async fn service(&self, http: &reqwest::Client, service: &str) -> Value {
        super::get_json(http, &format!("{}/v1/services/{service}", self.url)).await
    }
}
