//! A fixed list of instances.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Discovery, DiscoverySink};
use crate::Instance;

/// A fixed list of instances, for tests, for services behind a stable set of addresses, or as
/// a fallback. Instances given as bare addresses are numbered `"1"`, `"2"`, ... in order.
///
/// ```
/// use discovery_client::{ServiceClient, StaticDiscovery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]))
///     .build()?;
/// # let _ = ratings;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    instances: Vec<Instance>,
}

impl StaticDiscovery {
    /// Instances at these base URLs, numbered from 1.
    pub fn new<I, S>(addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let instances = addresses
            .into_iter()
            .enumerate()
            .map(|(i, address)| Instance::new((i + 1).to_string(), address))
            .collect();
        Self { instances }
    }

    /// These exact instances.
    pub fn from_instances(instances: Vec<Instance>) -> Self {
        Self { instances }
    }
}

impl Discovery for StaticDiscovery {
    fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let instances = self.instances.clone();
        async move {
            sink.publish(instances);
            // Keep the sink alive so readers never see the source as gone.
            futures::future::pending::<()>().await;
        }
        .boxed()
    }
}
