//! stub: being written
pub mod registration;
