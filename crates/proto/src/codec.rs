//! The codec of every generated client and server: prost, with a small first encode buffer.
//!
//! Tonic gives each call's response (or request) stream an encode buffer of 8 KiB up front. A
//! replica holding ten thousand idle `WatchJob` streams would spend most of their memory on those
//! buffers, while an event is a few hundred bytes. This codec starts each buffer at
//! [`ENCODE_BUFFER`] bytes; a larger message grows it as it would grow the default one, so nothing
//! but the first allocation changes.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The first size of a stream's encode buffer, in bytes.
pub const ENCODE_BUFFER: usize = 1024;
/// Bytes encoded into a buffer before the stream yields to let them be sent (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with a [`ENCODE_BUFFER`]-byte first encode buffer.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(ENCODE_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::Encoder;

    #[test]
    fn encoders_start_small() {
        let mut codec = SmallBufferCodec::<crate::v1::JobEvent, crate::v1::JobEvent>::default();
        // The settings' fields are private; their Debug form names them.
        let settings = format!("{:?}", codec.encoder().buffer_settings());
        assert!(
            settings.contains(&format!("buffer_size: {ENCODE_BUFFER},")),
            "{settings}"
        );
    }
}
