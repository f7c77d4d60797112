//! Modbus TCP without I/O: request frames out, reply frames in, replies checked against their
//! requests. For drivers that own the socket themselves (the asyncio-driven session of the Python
//! bindings): nothing here blocks, spawns or allocates beyond the frames.

use super::plan::{Area, ReadRequest, Words};
use super::write::WriteRequest;

/// The longest MBAP length field (unit + a PDU of at most 253 bytes).
const MAX_LENGTH: usize = 254;

/// Append the MBAP frame of `pdu` for `unit` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, transaction: u16, unit: u8, pdu: &[u8]) {
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
}

/// The PDU of a read.
#[must_use]
pub fn read_pdu(request: &ReadRequest) -> [u8; 5] {
    let [a, b] = request.start.to_be_bytes();
    let [c, d] = request.count.to_be_bytes();
    [request.area.read_function(), a, b, c, d]
}

/// The PDU of a write.
#[must_use]
pub fn write_pdu(request: &WriteRequest) -> Vec<u8> {
    match request {
        WriteRequest::Coil { address, value, .. } => {
            let mut pdu = vec![5];
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(if *value { &[0xFF, 0] } else { &[0, 0] });
            pdu
        }
        WriteRequest::Register { address, value, .. } => {
            let mut pdu = vec![6];
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&value.to_be_bytes());
            pdu
        }
        WriteRequest::Coils {
            address, values, ..
        } => {
            let mut pdu = vec![15];
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&(values.len() as u16).to_be_bytes());
            let bytes = values.len().div_ceil(8);
            pdu.push(bytes as u8);
            let mut packed = vec![0u8; bytes];
            for (i, bit) in values.iter().enumerate() {
                if *bit {
                    packed[i / 8] |= 1 << (i % 8);
                }
            }
            pdu.extend_from_slice(&packed);
            pdu
        }
        WriteRequest::Registers {
            address, values, ..
        } => {
            let mut pdu = vec![16];
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&(values.len() as u16).to_be_bytes());
            pdu.push((values.len() * 2) as u8);
            for value in values {
                pdu.extend_from_slice(&value.to_be_bytes());
            }
            pdu
        }
    }
}

/// Why a reply is not the answer its request wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The device refused: exception `code` to `function`.
    Exception { function: u8, code: u8 },
    /// The reply cannot answer the request (wrong function, wrong length, a wrong echo).
    Malformed(String),
}

/// The exception a reply carries, if it is one to `function`.
fn exception(function: u8, pdu: &[u8]) -> Result<(), ReplyError> {
    match pdu {
        [f, code] if *f == function | 0x80 => Err(ReplyError::Exception {
            function,
            code: *code,
        }),
        [f, ..] if *f != function => Err(ReplyError::Malformed(format!(
            "the reply of function {f} does not answer function {function}"
        ))),
        [] => Err(ReplyError::Malformed("an empty reply".to_owned())),
        _ => Ok(()),
    }
}

/// The registers or bits a read's reply carries, exactly as many as asked.
///
/// # Errors
/// An exception, or a reply that cannot answer the read.
pub fn parse_read(request: &ReadRequest, pdu: &[u8]) -> Result<Words, ReplyError> {
    exception(request.area.read_function(), pdu)?;
    let count = usize::from(request.count);
    let expected = if request.area.is_bits() {
        count.div_ceil(8)
    } else {
        count * 2
    };
    let short = |got: usize| {
        ReplyError::Malformed(format!(
            "unit {} answered {got} byte(s) to a read of {} at {}:{} ({expected} expected)",
            request.unit, request.count, request.area, request.start
        ))
    };
    let Some(&declared) = pdu.get(1) else {
        return Err(short(0));
    };
    let data = &pdu[2..];
    if usize::from(declared) != expected || data.len() != expected {
        return Err(short(data.len().min(usize::from(declared))));
    }
    Ok(match request.area {
        Area::Coils | Area::DiscreteInputs => Words::Bits(
            (0..count)
                .map(|i| data[i / 8] & (1 << (i % 8)) != 0)
                .collect(),
        ),
        Area::InputRegisters | Area::HoldingRegisters => Words::Registers(
            data.chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect(),
        ),
    })
}

/// Check a write's reply: the echo of what was written.
///
/// # Errors
/// An exception, or a reply that does not echo the write.
pub fn parse_write(request: &WriteRequest, pdu: &[u8]) -> Result<(), ReplyError> {
    let expected = write_pdu(request);
    exception(expected[0], pdu)?;
    let echo = match request {
        WriteRequest::Coil { .. } | WriteRequest::Register { .. } => &expected[..],
        WriteRequest::Coils { .. } | WriteRequest::Registers { .. } => &expected[..5],
    };
    if pdu == echo {
        Ok(())
    } else {
        Err(ReplyError::Malformed(format!(
            "the reply {pdu:02X?} does not echo the write {request:?}"
        )))
    }
}

/// One reply frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub transaction: u16,
    pub unit: u8,
    pub pdu: Vec<u8>,
}

/// Cuts a byte stream into MBAP frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the stream.
    pub fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Whether part of a frame is waiting for the rest.
    #[must_use]
    pub fn unfinished(&self) -> bool {
        !self.buffer.is_empty()
    }

    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// The next whole frame, if one is in.
    ///
    /// # Errors
    /// A header no Modbus TCP device sends (protocol id not 0, a length out of range): the
    /// stream cannot be cut into frames any more.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        if self.buffer.len() < 7 {
            return Ok(None);
        }
        let protocol = u16::from_be_bytes([self.buffer[2], self.buffer[3]]);
        let length = usize::from(u16::from_be_bytes([self.buffer[4], self.buffer[5]]));
        if protocol != 0 {
            return Err(format!("a reply header with protocol id {protocol}, not 0"));
        }
        if !(2..=MAX_LENGTH).contains(&length) {
            return Err(format!(
                "a reply header with length {length}, outside 2..={MAX_LENGTH}"
            ));
        }
        let end = 6 + length;
        if self.buffer.len() < end {
            return Ok(None);
        }
        let frame = Frame {
            transaction: u16::from_be_bytes([self.buffer[0], self.buffer[1]]),
            unit: self.buffer[6],
            pdu: self.buffer[7..end].to_vec(),
        };
        self.buffer.drain(..end);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_round_trips() {
        let request = ReadRequest::new(1, Area::HoldingRegisters, 10, 2);
        let mut out = Vec::new();
        encode_frame(&mut out, 7, 1, &read_pdu(&request));
        assert_eq!(out, [0, 7, 0, 0, 0, 6, 1, 3, 0, 10, 0, 2]);
        let mut decoder = Decoder::new();
        decoder.feed(&[0, 7, 0, 0, 0, 7, 1, 3, 4, 0, 1]);
        assert_eq!(decoder.next_frame(), Ok(None));
        decoder.feed(&[0, 2]);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.transaction, 7);
        assert_eq!(
            parse_read(&request, &frame.pdu),
            Ok(Words::Registers(vec![1, 2]))
        );
        assert!(!decoder.unfinished());
    }

    #[test]
    fn exceptions_and_bad_replies_are_told_apart() {
        let request = ReadRequest::new(1, Area::Coils, 0, 9);
        assert_eq!(
            parse_read(&request, &[0x81, 2]),
            Err(ReplyError::Exception {
                function: 1,
                code: 2
            })
        );
        assert!(matches!(
            parse_read(&request, &[1, 1, 0]),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            parse_read(&request, &[1, 2, 0xFF, 1]),
            Ok(Words::Bits(vec![true; 9]))
        );
        let write = WriteRequest::Registers {
            unit: 1,
            address: 4,
            values: vec![1, 2],
        };
        assert_eq!(parse_write(&write, &[16, 0, 4, 0, 2]), Ok(()));
        assert!(parse_write(&write, &[16, 0, 4, 0, 3]).is_err());
    }

    #[test]
    fn a_broken_header_is_an_error() {
        let mut decoder = Decoder::new();
        decoder.feed(&[0, 1, 0, 9, 0, 3, 1, 3, 0]);
        assert!(decoder.next_frame().is_err());
    }
}
