//! Instance-side registration: register with the registry, heartbeat, deregister.
