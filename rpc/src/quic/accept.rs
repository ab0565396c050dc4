//! The accepting side: incoming connections, the server half of the handshake, and serving the
//! streams of every connection (dialed or accepted).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use quinn::VarInt;
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;

use super::Inner;
use super::peers::Link;
use super::wire::{self, QuicSink};
use crate::budget::ConnectionBudget;
use crate::codec;
use crate::envelope::{Header, Hello};
use crate::error::RpcError;
use crate::tls;
use crate::transport::NodeId;

/// How long a stream may take to deliver its request frame.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Incoming connections whose handshake (QUIC/TLS, then hello / welcome) may be in progress
/// at once; more are refused at once (`Incoming::refuse`), so a flood of connection attempts
/// cannot pile up tasks and handshake state. Established connections do not count.
pub(super) const HANDSHAKES_IN_PROGRESS_MAX: usize = 256;
/// The largest hello frame body accepted, whatever `frame_bytes_max` is: the hello is read
/// before the peer's identity is checked, and a real one (three short strings and two
/// integers) is far smaller.
pub(super) const HELLO_FRAME_BYTES_MAX: usize = 64 << 10;

pub(super) async fn accept_loop(inner: Arc<Inner>) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_PROGRESS_MAX));
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.core.is_draining() {
            incoming.refuse();
            continue;
        }
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            tracing::debug!(node = %inner.core.node, address = %incoming.remote_address(), "too many handshakes in progress: incoming connection refused");
            incoming.refuse();
            continue;
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let _permit = permit;
            let address = incoming.remote_address();
            let timeout = inner.config.connect_timeout;
            match tokio::time::timeout(timeout, accept_one(&inner, incoming)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(node = %inner.core.node, %address, %error, "incoming connection failed");
                }
                Err(_) => {
                    tracing::debug!(node = %inner.core.node, %address, "incoming handshake timed out");
                }
            }
        });
    }
}

async fn accept_one(inner: &Arc<Inner>, incoming: quinn::Incoming) -> Result<(), RpcError> {
    let address = incoming.remote_address();
    let anonymous = NodeId::new("unknown").expect("valid");
    // A certificate our verifier rejects shows up as a local TLS error, either while the
    // handshake completes or on the first stream: a refusal by this node either way.
    let failed = |error: quinn::ConnectionError| {
        let failure = wire::connection_error(&anonymous, &error, true).error;
        if let quinn::ConnectionError::TransportError(_) = error
            && let RpcError::Refused { reason } = &failure
        {
            inner
                .core
                .record_refusal(&format!("peer at {address}: {reason}"));
        }
        failure
    };
    let conn = match incoming.accept() {
        Ok(connecting) => connecting.await,
        Err(error) => Err(error),
    }
    .map_err(failed)?;
    let max = inner.core.limits.frame_bytes_max;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(failed)?;
    let hello_max = max.min(HELLO_FRAME_BYTES_MAX);
    let hello = match wire::read_frame(&mut recv, &anonymous, hello_max, wire::Budgeted::No).await {
        Ok(Some(frame)) => match frame.header {
            Header::Hello(hello) => Ok(hello),
            other => Err(format!(
                "handshake: expected a hello, got a {} frame",
                other.kind_name()
            )),
        },
        Ok(None) => Err("handshake: stream ended before the hello".to_owned()),
        Err(failure) => Err(format!("handshake: {}", failure.error)),
    };
    let verdict = hello.and_then(|hello| match check_hello(inner, &conn, &hello) {
        Some(reason) => Err(reason),
        None => Ok(hello),
    });
    let hello = match verdict {
        Ok(hello) => hello,
        Err(reason) => {
            inner
                .core
                .record_refusal(&format!("peer at {address}: {reason}"));
            if let Ok(frame) = codec::encode_frame(
                &Header::Refuse {
                    reason: reason.clone(),
                },
                &[],
                max,
            ) {
                let _ = send.write_chunk(frame).await;
                let _ = send.finish();
                // Let the refusal arrive before the close overtakes it.
                let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
            }
            conn.close(VarInt::from_u32(wire::close::REFUSED), reason.as_bytes());
            return Err(RpcError::Refused { reason });
        }
    };
    let peer = NodeId::new(&hello.node_id).expect("checked by check_hello");
    let welcome = codec::encode_frame(&Header::Welcome(inner.hello()), &[], max)?;
    send.write_chunk(welcome)
        .await
        .map_err(|e| wire::write_error(&peer, &e).error)?;
    let _ = send.finish();
    let link = Link {
        conn,
        incarnation: hello.incarnation,
        dialed_by_us: false,
        in_flight: Arc::default(),
        retiring: Arc::default(),
        budget: inner.core.budget.connection(),
        slots: super::peers::CallSlots::new(&inner.core.limits),
    };
    spawn_connection(inner, peer.clone(), link.clone());
    inner.register(&peer, link);
    Ok(())
}

/// Why an incoming hello is refused, if it is.
fn check_hello(inner: &Inner, conn: &quinn::Connection, hello: &Hello) -> Option<String> {
    if let Some(reason) = inner.check_peer_hello(hello) {
        return Some(reason);
    }
    if let Err(error) = NodeId::new(&hello.node_id) {
        return Some(error.to_string());
    }
    let certificates = conn
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok());
    let named = certificates
        .as_ref()
        .and_then(|chain| chain.first())
        .is_some_and(|cert| tls::certificate_names(cert, &hello.node_id));
    if !named {
        return Some(format!(
            "peer claims to be node {} but its certificate is not issued for that name",
            hello.node_id
        ));
    }
    None
}

/// Tracks a handshaken connection and serves the calls the peer opens on it until it closes.
pub(super) fn spawn_connection(inner: &Arc<Inner>, peer: NodeId, link: Link) {
    inner.track(&link.conn);
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        loop {
            match link.conn.accept_bi().await {
                Ok((send, recv)) => {
                    let inner = Arc::clone(&inner);
                    let peer = peer.clone();
                    let in_flight = link.in_flight.enter();
                    let budget = Arc::clone(&link.budget);
                    tokio::spawn(async move {
                        let _in_flight = in_flight;
                        serve_stream(&inner, peer, send, recv, &budget).await;
                    });
                }
                Err(error) => {
                    tracing::debug!(node = %inner.core.node, %peer, %error, "connection closed");
                    break;
                }
            }
        }
        inner.untrack(&peer, &link.conn);
    });
}

async fn serve_stream(
    inner: &Inner,
    peer: NodeId,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    budget: &ConnectionBudget,
) {
    let max = inner.core.limits.frame_bytes_max;
    let frame = match tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        wire::read_frame(&mut recv, &peer, max, wire::Budgeted::Request(budget)),
    )
    .await
    {
        Err(_) => Err(RpcError::malformed(format!(
            "no request frame within {} s",
            REQUEST_READ_TIMEOUT.as_secs()
        ))),
        Ok(Ok(Some(frame))) => {
            // The request's end of stream usually arrives with it: consume it, so dropping the
            // stream does not send the caller a STOP_SENDING.
            let _ = recv.read_chunk(1, true).now_or_never();
            Ok(frame)
        }
        Ok(Ok(None)) => Err(RpcError::malformed("stream ended before its request frame")),
        Ok(Err(failure)) => {
            if matches!(failure.error, RpcError::FrameTooLarge { .. }) {
                let _ = recv.stop(VarInt::from_u32(wire::STREAM_FRAME_TOO_LARGE));
            }
            Err(failure.error)
        }
    };
    if let Err(error) = &frame {
        tracing::debug!(node = %inner.core.node, %peer, %error, "bad request stream");
    }
    let mut sink = QuicSink {
        send,
        peer: peer.clone(),
    };
    inner.core.serve_request(peer, frame, &mut sink).await;
}
