//! Bounds on the bytes of received frames a node holds: per connection and per node, with the
//! control lane apart. Shared by both transports.
//!
//! A frame's bytes are reserved as soon as its length is known, before its body is read (QUIC)
//! or delivered (in memory), and released when the last piece of it is dropped: the frame's
//! payload is a `Bytes` that owns its reservation ([`hold`]), and handlers and callers decode
//! it at once, so a reservation lasts from arrival to decoding. What a peer can make a node
//! hold is then, per connection, `Limits::connection_buffer_bytes_max` for the ordinary lane
//! plus [`CONTROL_BUFFER_BYTES`] for the control lane, and per node
//! `Limits::node_buffer_bytes_max` for the ordinary lanes of all its connections. A frame
//! that finds its budget spent is not read: QUIC's flow control (or, in memory, the sender's
//! wait) holds the peer back. The ordinary reservation takes the connection's budget first,
//! then the node's, always in that order, so reservations cannot wait on each other in a
//! cycle.
//!
//! The control lane (Raft heartbeats and votes) has its own budget per connection: a control
//! frame is at most [`crate::CONTROL_FRAME_BYTES_MAX`] and never waits behind ordinary
//! frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RpcError;
use crate::transport::{CONTROL_CALLS_MAX, CONTROL_FRAME_BYTES_MAX, Lane, Limits};

/// Control-lane bytes one connection may hold: a full frame for each control call.
pub const CONTROL_BUFFER_BYTES: usize = CONTROL_CALLS_MAX as usize * CONTROL_FRAME_BYTES_MAX;

/// Bytes held now and the most ever held, by one node.
#[derive(Default)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn add(&self, bytes: usize) {
        let now = self.now.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn sub(&self, bytes: usize) {
        self.now.fetch_sub(bytes, Ordering::SeqCst);
    }

    pub(crate) fn get(&self) -> (usize, usize) {
        (
            self.now.load(Ordering::SeqCst),
            self.max.load(Ordering::SeqCst),
        )
    }
}

/// One node's budget, shared by its connections.
pub(crate) struct NodeBudget {
    ordinary: Arc<Semaphore>,
    pub(crate) gauge: Arc<Gauge>,
    connection_bytes: usize,
}

impl NodeBudget {
    pub(crate) fn new(limits: &Limits) -> Arc<NodeBudget> {
        Arc::new(NodeBudget {
            ordinary: Arc::new(Semaphore::new(limits.node_buffer_bytes_max)),
            gauge: Arc::default(),
            connection_bytes: limits.connection_buffer_bytes_max,
        })
    }

    /// A budget for one more connection.
    pub(crate) fn connection(self: &Arc<Self>) -> Arc<ConnectionBudget> {
        Arc::new(ConnectionBudget {
            ordinary: Arc::new(Semaphore::new(self.connection_bytes)),
            control: Arc::new(Semaphore::new(CONTROL_BUFFER_BYTES)),
            node: Arc::clone(self),
        })
    }
}

/// One connection's budget (QUIC: a connection; in memory: a peer).
pub(crate) struct ConnectionBudget {
    ordinary: Arc<Semaphore>,
    control: Arc<Semaphore>,
    node: Arc<NodeBudget>,
}

impl ConnectionBudget {
    /// Reserves `bytes` of received frame in `lane`, waiting while the budget is spent. A
    /// control frame over [`CONTROL_FRAME_BYTES_MAX`] is refused.
    pub(crate) async fn reserve(&self, lane: Lane, bytes: usize) -> Result<Reserved, RpcError> {
        let permits = u32::try_from(bytes).map_err(|_| RpcError::FrameTooLarge {
            bytes: bytes as u64,
            max: u64::from(u32::MAX),
        })?;
        let held = match lane {
            Lane::Control => {
                if bytes > CONTROL_FRAME_BYTES_MAX {
                    return Err(RpcError::FrameTooLarge {
                        bytes: bytes as u64,
                        max: CONTROL_FRAME_BYTES_MAX as u64,
                    });
                }
                let control = Arc::clone(&self.control).acquire_many_owned(permits).await;
                [Some(control.expect("budgets are never closed")), None]
            }
            Lane::Ordinary => {
                let connection = Arc::clone(&self.ordinary).acquire_many_owned(permits).await;
                let node = Arc::clone(&self.node.ordinary)
                    .acquire_many_owned(permits)
                    .await;
                [
                    Some(connection.expect("budgets are never closed")),
                    Some(node.expect("budgets are never closed")),
                ]
            }
        };
        self.node.gauge.add(bytes);
        Ok(Reserved {
            _permits: held,
            bytes,
            gauge: Arc::clone(&self.node.gauge),
        })
    }
}

impl ConnectionBudget {
    /// [`ConnectionBudget::reserve`] if the bytes are free now, without waiting.
    pub(crate) fn try_reserve(&self, lane: Lane, bytes: usize) -> Option<Reserved> {
        let permits = u32::try_from(bytes).ok()?;
        let held = match lane {
            Lane::Control => {
                if bytes > CONTROL_FRAME_BYTES_MAX {
                    return None;
                }
                let control = Arc::clone(&self.control)
                    .try_acquire_many_owned(permits)
                    .ok()?;
                [Some(control), None]
            }
            Lane::Ordinary => {
                let connection = Arc::clone(&self.ordinary)
                    .try_acquire_many_owned(permits)
                    .ok()?;
                let node = Arc::clone(&self.node.ordinary)
                    .try_acquire_many_owned(permits)
                    .ok()?;
                [Some(connection), Some(node)]
            }
        };
        self.node.gauge.add(bytes);
        Some(Reserved {
            _permits: held,
            bytes,
            gauge: Arc::clone(&self.node.gauge),
        })
    }
}

/// A reservation; released on drop.
pub(crate) struct Reserved {
    _permits: [Option<OwnedSemaphorePermit>; 2],
    bytes: usize,
    gauge: Arc<Gauge>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

/// Frame bytes that keep their reservation alive.
struct Held {
    bytes: Bytes,
    _reserved: Reserved,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// `bytes`, holding `reserved` until the last slice of it is dropped.
pub(crate) fn hold(bytes: Bytes, reserved: Reserved) -> Bytes {
    Bytes::from_owner(Held {
        bytes,
        _reserved: reserved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connection: usize, node: usize) -> Limits {
        Limits {
            frame_bytes_max: 1024,
            connection_buffer_bytes_max: connection,
            node_buffer_bytes_max: node,
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_wait_for_the_connection_and_the_node_and_end_with_their_bytes() {
        let node = NodeBudget::new(&limits(3000, 4000));
        let (a, b) = (node.connection(), node.connection());
        let first = a.reserve(Lane::Ordinary, 1024).await.unwrap();
        let held = hold(Bytes::from(vec![1u8; 1024]), first);
        let payload = held.slice(10..20);
        drop(held);
        let _second = a.reserve(Lane::Ordinary, 1024).await.unwrap();
        // 2,048 of the connection's 3,000 are held (a slice keeps the first alive).
        let blocked = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            a.reserve(Lane::Ordinary, 1024),
        )
        .await;
        assert!(blocked.is_err(), "the connection's budget is spent");
        assert_eq!(node.gauge.get(), (2048, 2048));
        // Another connection is held back by the node's budget: 4,000 - 2,048 left.
        let _third = b.reserve(Lane::Ordinary, 1024).await.unwrap();
        let blocked = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            b.reserve(Lane::Ordinary, 1024),
        )
        .await;
        assert!(blocked.is_err(), "the node's budget is spent");
        // The control lane is apart.
        let control = a.reserve(Lane::Control, 512).await.unwrap();
        assert!(
            a.reserve(Lane::Control, CONTROL_FRAME_BYTES_MAX + 1)
                .await
                .is_err()
        );
        drop(control);
        drop(payload);
        let _fourth = a.reserve(Lane::Ordinary, 1024).await.unwrap();
        assert_eq!(node.gauge.get().1, 3584);
    }
}
