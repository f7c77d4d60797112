//! Modbus RTU without I/O: request frames out (unit, PDU, CRC16), reply frames cut out of a byte
//! stream. RTU has no length field, so a reply's end is found from its function code and byte
//! count, as `bifrost/modbus/framing.py`'s `RtuFramer` finds it (held to the same rules: damaged
//! bytes are skipped one at a time until a frame with a good CRC starts, and only then is a frame
//! taken). Serial lines and RTU over TCP carry the same bytes.

/// The longest RTU frame: unit, a PDU of at most 253 bytes, CRC.
pub const MAX_FRAME: usize = 256;

const fn crc_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

static CRC_TABLE: [u16; 256] = crc_table();

fn crc_step(crc: u16, byte: u8) -> u16 {
    (crc >> 8) ^ CRC_TABLE[usize::from((crc ^ u16::from(byte)) & 0xFF)]
}

/// The Modbus CRC16 of `data` (sent low byte first).
#[must_use]
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |crc, &byte| crc_step(crc, byte))
}

/// Append the RTU frame of `pdu` for `unit` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, unit: u8, pdu: &[u8]) {
    let start = out.len();
    out.push(unit);
    out.extend_from_slice(pdu);
    let crc = crc16(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// One reply frame (its CRC checked and cut off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub unit: u8,
    pub pdu: Vec<u8>,
}

/// A reply's shape: its length without the count, where a count field sits and its width (0: the
/// length is fixed). Lengths count unit, PDU and CRC. The table of `framing._RESPONSE_SHAPES`.
fn shape(function: u8) -> Option<(usize, usize, usize)> {
    Some(match function {
        1..=4 | 12 | 17 | 20 | 21 | 23 => (5, 2, 1),
        5 | 6 | 8 | 11 | 15 | 16 => (8, 0, 0),
        7 => (5, 0, 0),
        22 => (10, 0, 0),
        24 => (6, 2, 2),
        _ => return None,
    })
}

const EXCEPTION_LENGTH: usize = 5;

enum Measure {
    Length(usize),
    NeedMore,
    Invalid,
    /// No shape for this function code: its end is where a CRC matches.
    Unknown,
}

/// Cuts a byte stream of replies into RTU frames.
#[derive(Debug, Default)]
pub struct Splitter {
    buffer: Vec<u8>,
    /// After damage: only a frame of a known shape with a good CRC ends it.
    resyncing: bool,
    discarded: usize,
    frames: std::collections::VecDeque<Frame>,
}

impl Splitter {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the stream.
    pub fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        self.parse();
    }

    /// The next whole frame, if one is in.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Whether part of a frame (or damage) is waiting for more bytes.
    #[must_use]
    pub fn unfinished(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Bytes skipped as damage so far (bad CRC, no frame can start there).
    #[must_use]
    pub fn discarded(&self) -> usize {
        self.discarded
    }

    /// Forget everything buffered (a new request: what came before answers nothing).
    pub fn clear(&mut self) {
        self.buffer.clear();
        self.frames.clear();
        self.resyncing = false;
    }

    fn damage(&mut self, dropped: usize) {
        self.discarded += dropped;
        self.resyncing = true;
    }

    fn parse(&mut self) {
        let mut start = 0;
        while self.buffer.len() - start >= 2 {
            let available = self.buffer.len() - start;
            let mut measure = measure(&self.buffer, start);
            let unknown = matches!(measure, Measure::Unknown);
            if unknown {
                // While resyncing only known shapes count, or noise would hold us for 256 bytes.
                measure = if self.resyncing {
                    Measure::Invalid
                } else {
                    match crc_scan(&self.buffer, start) {
                        Some(length) => Measure::Length(length),
                        None if available >= MAX_FRAME => Measure::Invalid,
                        None => Measure::NeedMore,
                    }
                };
            }
            let length = match measure {
                Measure::Invalid => {
                    self.damage(1);
                    start += 1;
                    continue;
                }
                Measure::Length(length) if length <= available => length,
                _ => {
                    // A doubtful start may be noise in front of a frame that is already whole.
                    if self.resyncing || unknown {
                        if let Some(found) = lookahead(&self.buffer, start) {
                            self.damage(found - start);
                            start = found;
                            continue;
                        }
                    }
                    break;
                }
            };
            let candidate = &self.buffer[start..start + length];
            let (body, crc) = candidate.split_at(length - 2);
            if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
                self.damage(1);
                start += 1;
                continue;
            }
            self.frames.push_back(Frame {
                unit: body[0],
                pdu: body[1..].to_vec(),
            });
            self.resyncing = false;
            start += length;
        }
        self.buffer.drain(..start);
    }
}

/// The whole length of the reply frame at `start` (needs its unit and function code).
fn measure(buffer: &[u8], start: usize) -> Measure {
    let available = buffer.len() - start;
    let function = buffer[start + 1];
    if function & 0x80 != 0 {
        return if function == 0x80 {
            Measure::Invalid
        } else {
            Measure::Length(EXCEPTION_LENGTH)
        };
    }
    if function == 0 {
        return Measure::Invalid;
    }
    if function == 43 {
        return measure_mei(buffer, start);
    }
    let Some((base, offset, width)) = shape(function) else {
        return Measure::Unknown;
    };
    if width == 0 {
        return Measure::Length(base);
    }
    if available < offset + width {
        return Measure::NeedMore;
    }
    let count = buffer[start + offset..start + offset + width]
        .iter()
        .fold(0usize, |n, &b| n << 8 | usize::from(b));
    if base + count <= MAX_FRAME {
        Measure::Length(base + count)
    } else {
        Measure::Invalid
    }
}

/// A device identification reply has no byte count: walk its objects' length bytes.
fn measure_mei(buffer: &[u8], start: usize) -> Measure {
    let available = buffer.len() - start;
    if available < 3 {
        return Measure::NeedMore;
    }
    if buffer[start + 2] != 0x0E {
        return Measure::Unknown; // other MEI types: found by CRC
    }
    if available < 8 {
        return Measure::NeedMore;
    }
    let mut position = start + 8;
    for _ in 0..buffer[start + 7] {
        if position + 2 > buffer.len() {
            return Measure::NeedMore;
        }
        position += 2 + usize::from(buffer[position + 1]);
        if position - start + 2 > MAX_FRAME {
            return Measure::Invalid;
        }
    }
    Measure::Length(position - start + 2)
}

/// The length of the shortest frame from `start` whose CRC matches.
fn crc_scan(buffer: &[u8], start: usize) -> Option<usize> {
    let end = buffer.len().min(start + MAX_FRAME).saturating_sub(2);
    let mut crc = 0xFFFF;
    for index in start..end {
        crc = crc_step(crc, buffer[index]);
        let [low, high] = crc.to_le_bytes();
        if index > start && buffer[index + 1] == low && buffer[index + 2] == high {
            return Some(index + 3 - start);
        }
    }
    None
}

/// Where the first whole frame of a known shape with a good CRC after `start` begins.
fn lookahead(buffer: &[u8], start: usize) -> Option<usize> {
    (start + 1..buffer.len().saturating_sub(3)).find(|&offset| match measure(buffer, offset) {
        Measure::Length(length) if offset + length <= buffer.len() => {
            let (body, crc) = buffer[offset..offset + length].split_at(length - 2);
            crc16(body) == u16::from_le_bytes([crc[0], crc[1]])
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, unit, pdu);
        out
    }

    #[test]
    fn the_spec_example_crc() {
        // Read holding registers 0..2 of unit 1: 01 03 00 00 00 02 C4 0B.
        assert_eq!(frame(1, &[3, 0, 0, 0, 2])[6..], [0xC4, 0x0B]);
    }

    #[test]
    fn each_reply_shape_is_cut_where_it_ends() {
        let replies: [&[u8]; 7] = [
            &[3, 4, 0, 1, 0, 2],
            &[0x83, 2],
            &[22, 0, 4, 0xF2, 0xF0, 0x25, 0],
            &[23, 2, 0, 9],
            &[17, 5, b'p', b'l', b'c', b'1', 0xFF],
            &[43, 14, 1, 1, 0, 0, 2, 0, 3, b'a', b'b', b'c', 1, 0],
            &[16, 0, 4, 0, 2],
        ];
        let mut splitter = Splitter::new();
        for reply in replies {
            splitter.feed(&frame(1, reply));
            assert_eq!(splitter.next_frame().map(|f| f.pdu), Some(reply.to_vec()));
            assert!(!splitter.unfinished());
        }
    }

    #[test]
    fn a_bad_crc_is_skipped_and_the_next_good_frame_taken() {
        let mut bad = frame(1, &[3, 2, 0, 7]);
        bad[4] ^= 1;
        let good = frame(1, &[3, 2, 0, 9]);
        let mut splitter = Splitter::new();
        splitter.feed(&bad);
        assert_eq!(splitter.next_frame(), None);
        splitter.feed(&good);
        assert_eq!(splitter.next_frame().map(|f| f.pdu), Some(vec![3, 2, 0, 9]));
        assert!(splitter.discarded() >= bad.len());
    }

    proptest! {
        #[test]
        fn a_reply_cut_anywhere_comes_out_whole(
            unit in 1u8..=247,
            data in proptest::collection::vec(any::<u8>(), 0..=250),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut pdu = vec![3, data.len() as u8];
            pdu.extend_from_slice(&data);
            let bytes = frame(unit, &pdu);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            points.dedup();
            let mut splitter = Splitter::new();
            for pair in points.windows(2) {
                prop_assert_eq!(splitter.next_frame(), None);
                splitter.feed(&bytes[pair[0]..pair[1]]);
            }
            prop_assert_eq!(splitter.next_frame(), Some(Frame { unit, pdu }));
            prop_assert!(!splitter.unfinished());
        }

        #[test]
        fn garbage_never_panics(noise in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut splitter = Splitter::new();
            for chunk in noise.chunks(7) {
                splitter.feed(chunk);
            }
            while let Some(frame) = splitter.next_frame() {
                prop_assert!(frame.pdu.len() <= MAX_FRAME - 3);
            }
        }
    }
}
