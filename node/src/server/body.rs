//! Request bodies, bounded one by one ([`super::NodeConfig::request_bytes_max`], a 413 past it)
//! and together ([`super::NodeConfig::request_bytes_in_flight_max`]): the bytes of every body
//! being read, parsed or run are counted against one budget, reserved as they arrive (all at
//! once when `Content-Length` announces them) and given back when the request's work is done
//! with them. A body that does not fit in what is left is refused with a 429 before it is read
//! further, so many large bodies at once cannot take the process's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, web};
use futures::StreamExt;

use super::ApiError;
use grove_query::error::thousands;

/// Bytes of request bodies held now, out of a maximum.
pub struct BodyBudget {
    held: AtomicU64,
    max: u64,
}

/// A share of the [`BodyBudget`], given back on drop.
pub struct BodyBytes {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl BodyBudget {
    pub fn new(max: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            held: AtomicU64::new(0),
            max,
        })
    }

    /// An empty share, to grow as bytes arrive.
    pub fn share(self: &Arc<Self>) -> BodyBytes {
        BodyBytes {
            budget: self.clone(),
            bytes: 0,
        }
    }

    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

impl BodyBytes {
    /// Grows the share by `bytes`, or refuses (holding what it held) when the budget cannot
    /// take them.
    fn grow(&mut self, bytes: u64) -> Result<(), ApiError> {
        let budget = &self.budget;
        budget
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_add(bytes).filter(|&total| total <= budget.max)
            })
            .map_err(|held| {
                ApiError::capacity(format!(
                    "request bodies being read and run hold {} bytes; {} more would pass the \
                     server's limit of {} bytes (--request-bytes-in-flight-max); retry later",
                    thousands(held),
                    thousands(bytes),
                    thousands(budget.max)
                ))
            })?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// A request body as text and its share of the budget, held as long as the text or what is
/// parsed from it lives.
pub struct Body {
    pub text: String,
    pub held: BodyBytes,
}

/// Reads the request body within the per-request limit `bytes_max` and the shared `budget`.
pub async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    bytes_max: usize,
    budget: &Arc<BodyBudget>,
) -> Result<Body, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than {} bytes (the limit, --request-bytes-max)",
            thousands(bytes_max as u64)
        ))
    };
    let mut held = budget.share();
    let announced = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = announced {
        if length > bytes_max as u64 {
            return Err(too_large());
        }
        held.grow(length)?;
    }
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::malformed(format!("reading the request body: {e}")))?;
        if bytes.len() + chunk.len() > bytes_max {
            return Err(too_large());
        }
        let beyond = (bytes.len() + chunk.len()) as u64;
        if beyond > held.bytes {
            held.grow(beyond - held.bytes)?;
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiError::malformed("the request body is not UTF-8 text"))?;
    Ok(Body { text, held })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// [`BodyBytes::grow`], for the server's tests.
    pub(crate) fn grow(share: &mut BodyBytes, bytes: u64) -> Result<(), ApiError> {
        share.grow(bytes)
    }

    #[test]
    fn shares_are_refused_past_the_budget_and_given_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = budget.share();
        a.grow(60).unwrap();
        let mut b = budget.share();
        let err = b.grow(41).unwrap_err();
        assert_eq!(err.status.as_u16(), 429);
        assert!(
            err.message
                .contains("hold 60 bytes; 41 more would pass the server's limit of 100"),
            "{err}"
        );
        b.grow(40).unwrap();
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
