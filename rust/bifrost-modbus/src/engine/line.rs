//! One open connection as the actor uses it: a byte stream (TCP socket or serial port) and our own
//! framing on it (MBAP for Modbus TCP, RTU for serial and RTU over TCP). One request is out at a
//! time: `call` writes its frame and reads until a whole reply frame is in.
//!
//! The framing is ours rather than tokio-modbus's so that every function code (17, 22, 23, 43 as
//! well as reads and writes) is framed, and every reply handed back, byte for byte: tokio-modbus
//! parses the replies it knows into its own types, and its FC17 answer keeps one byte of the server
//! id and rewrites the run indicator.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::{sleep_until, Instant};

use super::{mbap, rtu};

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a call got no reply frame. The connection cannot be trusted after any of these.
#[derive(Debug)]
pub(crate) enum LineError {
    Io(io::Error),
    /// The device closed the stream.
    Closed,
    /// A frame that cannot be the answer (a wrong transaction id or unit, a broken MBAP header).
    Protocol(String),
}

enum Framing {
    Mbap {
        transaction: u16,
        decoder: mbap::Decoder,
    },
    Rtu {
        splitter: rtu::Splitter,
        /// Serial only: the silence (3.5 characters) a frame must be apart from the last one.
        gap: Option<Duration>,
        /// When the line last carried a byte of ours or the device's.
        last_byte: Instant,
    },
}

pub(crate) struct Line {
    stream: Box<dyn Stream>,
    framing: Framing,
    buffer: Box<[u8]>,
}

impl Line {
    pub(crate) fn mbap(stream: Box<dyn Stream>) -> Self {
        Self::new(
            stream,
            Framing::Mbap {
                transaction: 0,
                decoder: mbap::Decoder::new(),
            },
        )
    }

    /// RTU framing; `gap` is the inter-frame silence of a serial line (None over TCP).
    pub(crate) fn rtu(stream: Box<dyn Stream>, gap: Option<Duration>) -> Self {
        Self::new(
            stream,
            Framing::Rtu {
                splitter: rtu::Splitter::new(),
                gap,
                last_byte: Instant::now(),
            },
        )
    }

    fn new(stream: Box<dyn Stream>, framing: Framing) -> Self {
        Self {
            stream,
            framing,
            buffer: vec![0; 1024].into_boxed_slice(),
        }
    }

    /// Send `pdu` to `unit` and return the PDU of the reply frame (an exception reply included).
    pub(crate) async fn call(&mut self, unit: u8, pdu: &[u8]) -> Result<Vec<u8>, LineError> {
        let mut frame = Vec::with_capacity(pdu.len() + 7);
        match &mut self.framing {
            Framing::Mbap {
                transaction,
                decoder,
            } => {
                decoder.clear();
                *transaction = transaction.wrapping_add(1);
                mbap::encode_frame(&mut frame, *transaction, unit, pdu);
            }
            Framing::Rtu {
                splitter,
                gap,
                last_byte,
            } => {
                // Nothing buffered answers the new request: an earlier request's reply is whole.
                splitter.clear();
                if let Some(gap) = gap {
                    sleep_until(*last_byte + *gap).await;
                }
                rtu::encode_frame(&mut frame, unit, pdu);
            }
        }
        self.stream.write_all(&frame).await.map_err(LineError::Io)?;
        self.stream.flush().await.map_err(LineError::Io)?;
        self.touched();
        loop {
            if let Some((from, reply)) = self.next_frame()? {
                if from != unit {
                    return Err(LineError::Protocol(format!(
                        "asked unit {unit}, answered by unit {from}"
                    )));
                }
                return Ok(reply);
            }
            let read = self
                .stream
                .read(&mut self.buffer)
                .await
                .map_err(LineError::Io)?;
            if read == 0 {
                return Err(LineError::Closed);
            }
            self.touched();
            let data = &self.buffer[..read];
            match &mut self.framing {
                Framing::Mbap { decoder, .. } => decoder.feed(data),
                Framing::Rtu { splitter, .. } => splitter.feed(data),
            }
        }
    }

    fn touched(&mut self) {
        if let Framing::Rtu { last_byte, .. } = &mut self.framing {
            *last_byte = Instant::now();
        }
    }

    /// The next whole frame as (unit, PDU). Damaged RTU bytes are skipped by the splitter: the
    /// answer may still follow them, and if it does not, the timeout says so.
    fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, LineError> {
        match &mut self.framing {
            Framing::Mbap {
                transaction,
                decoder,
            } => match decoder.next_frame() {
                Ok(Some(frame)) if frame.transaction == *transaction => {
                    Ok(Some((frame.unit, frame.pdu)))
                }
                // One request is out at a time and a timeout drops the connection, so a reply
                // with another id answers nothing: the device's fault, told at once.
                Ok(Some(frame)) => Err(LineError::Protocol(format!(
                    "a reply with transaction id {} answers no request ({transaction} expected)",
                    frame.transaction
                ))),
                Ok(None) => Ok(None),
                Err(why) => Err(LineError::Protocol(format!(
                    "the reply stream is broken: {why}"
                ))),
            },
            Framing::Rtu { splitter, .. } => {
                Ok(splitter.next_frame().map(|frame| (frame.unit, frame.pdu)))
            }
        }
    }

    pub(crate) async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// The silence between RTU frames on a serial line: 3.5 characters of 11 bits, and a fixed
/// 1.75 ms above 19200 baud (the spec's rule, so fast lines do not wait on timer resolution).
#[must_use]
pub(crate) fn serial_gap(baud_rate: u32) -> Duration {
    if baud_rate > 19_200 || baud_rate == 0 {
        Duration::from_micros(1750)
    } else {
        Duration::from_micros(38_500_000 / u64::from(baud_rate))
    }
}
