//! What discovery knows about one instance of a service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One instance of a service, as discovery reports it.
///
/// ```
/// use discovery_client::Instance;
///
/// let mut instance = Instance::new("1", "http://127.0.0.1:8001");
/// instance.metadata.insert("zone".into(), "a".into());
/// assert_eq!(instance.id, "1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Instance {
    /// The instance's id within its service (for the ratings demo, its number: `"1"`).
    pub id: String,
    /// Base URL requests are sent to, such as `http://127.0.0.1:8001`.
    pub address: String,
    /// Free-form labels the instance registered with.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Instance {
    /// An instance with no metadata.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            address: address.into(),
            metadata: BTreeMap::new(),
        }
    }
}
