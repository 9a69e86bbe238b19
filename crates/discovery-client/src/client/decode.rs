//! [`Decode`]: how an attempt's 2xx body becomes the caller's value, as part of judging it.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::Error;

/// Turns a 2xx body into the caller's value while the attempt is judged. A body it refuses
/// is [`Error::Decode`]: the instance's failure, retried elsewhere like a 5xx, when the body
/// is malformed or cut short; the caller's own error, which no breaker counts, when the body
/// is well-formed but not of the caller's type (every instance would answer the same). The
/// value it gives travels with the attempt's outcome, so each answer is decoded once.
pub(crate) trait Decode: Copy {
    /// What a 2xx body becomes.
    type Output;

    /// Decodes a 2xx body, or says why it could not.
    fn decode(self, body: &[u8]) -> Result<Self::Output, Refused>;

    /// The same judgement without the value, as a plain function: for an attempt judged
    /// after its call has its answer (a hedged-over attempt, in a task of its own).
    fn check(self) -> fn(&[u8]) -> Result<(), Refused>;
}

/// Why a decoder refused a body, and whose fault that is.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    /// What the decoder said.
    message: String,
    /// The body is well-formed but not of the caller's type: the caller's mistake.
    wrong_type: bool,
}

impl Refused {
    /// A JSON decoder's refusal: a body that is valid JSON but does not fit the type
    /// (serde_json's [`Category::Data`]) is the caller's; one that is not JSON (`Syntax`)
    /// or is cut short (`Eof`) is the instance's.
    fn json(error: serde_json::Error) -> Self {
        Self {
            wrong_type: error.classify() == Category::Data,
            message: error.to_string(),
        }
    }

    /// The body is not what it claims to be (such as text that is not UTF-8): the
    /// instance's failure.
    pub(crate) fn malformed(message: String) -> Self {
        Self {
            message,
            wrong_type: false,
        }
    }

    /// The refusal as [`Error::Decode`] for the answer from `address`.
    pub(crate) fn into_error(self, address: &str) -> Error {
        Error::Decode {
            address: address.to_string(),
            message: self.message,
            wrong_type: self.wrong_type,
        }
    }
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

    fn decode(self, body: &[u8]) -> Result<T, Refused> {
        serde_json::from_slice(body).map_err(Refused::json)
    }

    fn check(self) -> fn(&[u8]) -> Result<(), Refused> {
        check_json::<T>
    }
}

fn check_json<T: DeserializeOwned>(body: &[u8]) -> Result<(), Refused> {
    serde_json::from_slice::<T>(body)
        .map(drop)
        .map_err(Refused::json)
}

/// Takes any body as it is: the caller reads the [`Response`](crate::Response) itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsIs;

impl Decode for AsIs {
    type Output = ();

    fn decode(self, _body: &[u8]) -> Result<(), Refused> {
        Ok(())
    }

    fn check(self) -> fn(&[u8]) -> Result<(), Refused> {
        |_| Ok(())
    }
}

/// A check kept as a function, for an attempt judged on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check(pub(crate) fn(&[u8]) -> Result<(), Refused>);

impl Decode for Check {
    type Output = ();

    fn decode(self, body: &[u8]) -> Result<(), Refused> {
        (self.0)(body)
    }

    fn check(self) -> fn(&[u8]) -> Result<(), Refused> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Rating {
        #[allow(dead_code)]
        rating: u8,
    }

    fn wrong_type(body: &str) -> bool {
        Json::<Rating>::new()
            .decode(body.as_bytes())
            .expect_err("refused")
            .wrong_type
    }

    #[test]
    fn valid_json_of_another_type_is_the_callers_and_anything_else_the_instances() {
        assert!(wrong_type(r#"{"item_id": "widget"}"#), "a missing field");
        assert!(wrong_type(r#"{"rating": "four"}"#), "a string for a number");
        assert!(wrong_type(r#""widget""#), "a string for a struct");
        assert!(!wrong_type("<html>not json"), "not JSON");
        assert!(!wrong_type(r#"{"rating": 4"#), "cut short");
        assert!(!wrong_type(""), "empty");
        assert!(!wrong_type(r#"{"rating": 4} trailing"#), "trailing bytes");
        assert!(Json::<Rating>::new().decode(br#"{"rating": 4}"#).is_ok());
    }
}
