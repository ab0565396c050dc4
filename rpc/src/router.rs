//! [`Router`]: the handlers a node serves, by method name, typed at registration and erased to
//! frames inside.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};

use crate::codec;
use crate::envelope::Header;
use crate::error::RpcError;
use crate::transport::{Deadline, Method, NodeId, StreamMethod};

/// What a handler knows about the call it serves.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The calling node (authenticated by its certificate on QUIC).
    pub peer: NodeId,
    /// The caller's deadline, on this node's clock. The handler is dropped when it passes; pass
    /// it on to calls the handler makes.
    pub deadline: Deadline,
}

/// An erased unary handler: request payload in, encoded response frame out.
pub(crate) type UnaryHandler = Arc<
    dyn Fn(RequestContext, Bytes, usize) -> BoxFuture<'static, Result<Bytes, RpcError>>
        + Send
        + Sync,
>;
/// An erased streaming handler: request payload in, encoded item frames out.
pub(crate) type StreamHandler = Arc<
    dyn Fn(
            RequestContext,
            Bytes,
            usize,
        ) -> Result<BoxStream<'static, Result<Bytes, RpcError>>, RpcError>
        + Send
        + Sync,
>;

/// The methods a node serves. Build it once, hand it to [`crate::Transport::serve`].
#[derive(Clone, Default)]
pub struct Router {
    unary: BTreeMap<&'static str, UnaryHandler>,
    streaming: BTreeMap<&'static str, StreamHandler>,
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    /// Serves unary method `M` with `handler`. Panics if `M::NAME` is already registered.
    pub fn unary<M, F, Fut>(mut self, handler: F) -> Self
    where
        M: Method,
        F: Fn(RequestContext, M::Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Response, RpcError>> + Send + 'static,
    {
        self.assert_free(M::NAME);
        let handler = Arc::new(handler);
        let erased: UnaryHandler = Arc::new(move |context, payload, frame_bytes_max| {
            match codec::decode_limited::<M::Request>(&payload, frame_bytes_max) {
                Ok(request) => handler(context, request)
                    .map(move |result| {
                        result.and_then(|response| {
                            codec::encode_message_frame(
                                &Header::Response,
                                &response,
                                frame_bytes_max,
                            )
                        })
                    })
                    .boxed(),
                Err(error) => futures::future::ready(Err(request_error(M::NAME, error))).boxed(),
            }
        });
        self.unary.insert(M::NAME, erased);
        self
    }

    /// Serves server-streaming method `M`: `handler` returns the item stream. Items are sent as
    /// the caller reads them (QUIC flow control is the backpressure); an `Err` item ends the call
    /// with that error. Panics if `M::NAME` is already registered.
    pub fn streaming<M, F, S>(mut self, handler: F) -> Self
    where
        M: StreamMethod,
        F: Fn(RequestContext, M::Request) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<M::Item, RpcError>> + Send + 'static,
    {
        self.assert_free(M::NAME);
        let handler = Arc::new(handler);
        let erased: StreamHandler = Arc::new(move |context, payload, frame_bytes_max| {
            let request = codec::decode_limited::<M::Request>(&payload, frame_bytes_max)
                .map_err(|e| request_error(M::NAME, e))?;
            Ok(handler(context, request)
                .map(move |item| {
                    item.and_then(|item| {
                        codec::encode_message_frame(&Header::Item, &item, frame_bytes_max)
                    })
                })
                .boxed())
        });
        self.streaming.insert(M::NAME, erased);
        self
    }

    pub(crate) fn unary_handler(&self, method: &str) -> Option<&UnaryHandler> {
        self.unary.get(method)
    }

    pub(crate) fn stream_handler(&self, method: &str) -> Option<&StreamHandler> {
        self.streaming.get(method)
    }

    /// True if `method` is served as the other kind than asked.
    pub(crate) fn serves_other_kind(&self, method: &str, streaming: bool) -> bool {
        if streaming {
            self.unary.contains_key(method)
        } else {
            self.streaming.contains_key(method)
        }
    }

    fn assert_free(&self, name: &'static str) {
        assert!(
            !self.unary.contains_key(name) && !self.streaming.contains_key(name),
            "method {name} registered twice"
        );
    }
}

fn request_error(method: &str, error: RpcError) -> RpcError {
    match error {
        RpcError::Malformed { reason } => {
            RpcError::malformed(format!("request for {method}: {reason}"))
        }
        other => other,
    }
}
