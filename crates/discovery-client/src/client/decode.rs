//! [`Decode`]: how an attempt's 2xx body becomes the caller's value, as part of judging it.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

/// Turns a 2xx body into the caller's value while the attempt is judged: a body it refuses
/// is the instance's failure ([`Error::Decode`](crate::Error::Decode)), retried elsewhere
/// like a 5xx, and the value it gives travels with the attempt's outcome, so each answer
/// is decoded once.
pub(crate) trait Decode: Copy {
    /// What a 2xx body becomes.
    type Output;

    /// Decodes a 2xx body; the message says why it could not.
    fn decode(self, body: &[u8]) -> Result<Self::Output, String>;

    /// The same judgement without the value, as a plain function: for an attempt judged
    /// after its call has its answer (a hedged-over attempt, in a task of its own).
    fn check(self) -> fn(&[u8]) -> Result<(), String>;
}

/// Decodes the body as JSON into a `T`.
pub(crate) struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    pub(crate) fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Json<T> {}

impl<T: DeserializeOwned> Decode for Json<T> {
    type Output = T;

    fn decode(self, body: &[u8]) -> Result<T, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    fn check(self) -> fn(&[u8]) -> Result<(), String> {
        check_json::<T>
    }
}

fn check_json<T: DeserializeOwned>(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<T>(body)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Takes any body as it is: the caller reads the [`Response`](crate::Response) itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsIs;

impl Decode for AsIs {
    type Output = ();

    fn decode(self, _body: &[u8]) -> Result<(), String> {
        Ok(())
    }

    fn check(self) -> fn(&[u8]) -> Result<(), String> {
        |_| Ok(())
    }
}

/// A check kept as a function, for an attempt judged on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check(pub(crate) fn(&[u8]) -> Result<(), String>);

impl Decode for Check {
    type Output = ();

    fn decode(self, body: &[u8]) -> Result<(), String> {
        (self.0)(body)
    }

    fn check(self) -> fn(&[u8]) -> Result<(), String> {
        self.0
    }
}
