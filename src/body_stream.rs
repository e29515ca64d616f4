//! A request body still on the wire, read chunk by chunk: what a protocol
//! adapter hands a function that streams its body (blob uploads), and what
//! the Blob client reads. It knows nothing of actix or of problems.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::LocalBoxStream;

/// The chunks of a body; an `Err` says why the body broke off.
pub struct BodyStream(pub LocalBoxStream<'static, Result<Bytes, String>>);

impl BodyStream {
    pub fn new(stream: impl futures::Stream<Item = Result<Bytes, String>> + 'static) -> Self {
        Self(stream.boxed_local())
    }

    /// A body that was read already (payload mode), as one chunk.
    pub fn from_bytes(body: Bytes) -> Self {
        Self::new(futures::stream::iter([Ok(body)]))
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyStream(..)")
    }
}
