//! Typed values <-> 16-bit words. The rules are those of `bifrost/values.py`, and a differential
//! test in the Python suite holds the two to identical results:
//! numbers are packed big-endian (ABCD); BADC swaps the bytes of each word, CDAB reverses the
//! words, DCBA does both. Strings are latin-1, NUL-padded, and only byte-swapped.
//! Engineering value = raw * scale + offset; writing rounds half to even for integer types.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
    String,
}

impl DataType {
    /// Width on the wire in bits (0 for strings, whose width is their length).
    #[must_use]
    pub fn bits(self) -> u32 {
        match self {
            Self::Bool | Self::Int16 | Self::Uint16 => 16,
            Self::Int32 | Self::Uint32 | Self::Float32 => 32,
            Self::Int64 | Self::Uint64 | Self::Float64 => 64,
            Self::String => 0,
        }
    }

    /// The inclusive range of an integer type.
    #[must_use]
    pub fn integer_range(self) -> Option<(i128, i128)> {
        match self {
            Self::Int16 => Some((i128::from(i16::MIN), i128::from(i16::MAX))),
            Self::Uint16 => Some((0, i128::from(u16::MAX))),
            Self::Int32 => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
            Self::Uint32 => Some((0, i128::from(u32::MAX))),
            Self::Int64 => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
            Self::Uint64 => Some((0, i128::from(u64::MAX))),
            _ => None,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Int16 => "int16",
            Self::Uint16 => "uint16",
            Self::Int32 => "int32",
            Self::Uint32 => "uint32",
            Self::Int64 => "int64",
            Self::Uint64 => "uint64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::String => "string",
        }
    }
}

impl FromStr for DataType {
    type Err = CodecError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "bool" => Self::Bool,
            "int16" => Self::Int16,
            "uint16" => Self::Uint16,
            "int32" => Self::Int32,
            "uint32" => Self::Uint32,
            "int64" => Self::Int64,
            "uint64" => Self::Uint64,
            "float32" => Self::Float32,
            "float64" => Self::Float64,
            "string" => Self::String,
            other => return Err(CodecError::Config(format!("unknown data type {other:?}"))),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    #[default]
    Abcd,
    Badc,
    Cdab,
    Dcba,
}

impl ByteOrder {
    #[must_use]
    pub fn swaps_bytes(self) -> bool {
        matches!(self, Self::Badc | Self::Dcba)
    }

    #[must_use]
    pub fn swaps_words(self) -> bool {
        matches!(self, Self::Cdab | Self::Dcba)
    }
}

impl FromStr for ByteOrder {
    type Err = CodecError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "ABCD" => Self::Abcd,
            "BADC" => Self::Badc,
            "CDAB" => Self::Cdab,
            "DCBA" => Self::Dcba,
            other => return Err(CodecError::Config(format!("unknown byte order {other:?}"))),
        })
    }
}

/// A decoded value, or one to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The format itself is impossible (a zero scale, a bit out of 0..15).
    Config(String),
    /// The value cannot be written as this type.
    Encode(String),
    /// The words handed to `decode` do not fit the format.
    Words(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(msg) | Self::Encode(msg) | Self::Words(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for CodecError {}

/// How one value sits in registers.
#[derive(Debug, Clone, PartialEq)]
pub struct WireFormat {
    pub dtype: DataType,
    pub order: ByteOrder,
    pub length: usize,
    pub scale: f64,
    pub offset: f64,
    pub bit: Option<u8>,
}

impl WireFormat {
    /// # Errors
    /// A string without length, a bit outside 0..15 or on a non-bool, or a zero scale.
    pub fn new(
        dtype: DataType,
        order: ByteOrder,
        length: usize,
        scale: f64,
        offset: f64,
        bit: Option<u8>,
    ) -> Result<Self, CodecError> {
        if dtype == DataType::String && length < 1 {
            return Err(CodecError::Config(
                "a string needs a length of at least 1 byte".into(),
            ));
        }
        if let Some(b) = bit {
            if dtype != DataType::Bool || b > 15 {
                return Err(CodecError::Config(format!(
                    "bit {b} is invalid: a bit is 0..15 of a register and its type is bool"
                )));
            }
        }
        if scale == 0.0 {
            return Err(CodecError::Config("scale must not be 0".into()));
        }
        Ok(Self {
            dtype,
            order,
            length,
            scale,
            offset,
            bit,
        })
    }

    /// A plain format: no scale, offset or bit.
    #[must_use]
    pub fn plain(dtype: DataType, order: ByteOrder) -> Self {
        Self {
            dtype,
            order,
            length: 0,
            scale: 1.0,
            offset: 0.0,
            bit: None,
        }
    }

    /// How many 16-bit registers the value takes.
    #[must_use]
    pub fn words(&self) -> usize {
        if self.dtype == DataType::String {
            self.length.div_ceil(2)
        } else {
            (self.dtype.bits() as usize / 16).max(1)
        }
    }

    #[allow(clippy::float_cmp)] // exactly 1 and 0 mean "no conversion", as in the Python codec
    fn scaled(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }

    /// # Errors
    /// When `words` is not exactly `self.words()` long.
    pub fn decode(&self, words: &[u16]) -> Result<Value, CodecError> {
        if words.len() != self.words() {
            return Err(CodecError::Words(format!(
                "{} takes {} word(s), got {}",
                self.dtype.name(),
                self.words(),
                words.len()
            )));
        }
        Ok(self.decode_unchecked(words))
    }

    /// Decode words already known to be the right count (the engine's hot path).
    #[must_use]
    pub fn decode_unchecked(&self, words: &[u16]) -> Value {
        match self.dtype {
            DataType::Bool => Value::Bool(match self.bit {
                Some(bit) => (words[0] >> bit) & 1 == 1,
                None => words[0] != 0,
            }),
            DataType::String => {
                let raw = words_to_bytes(words, self.order.swaps_bytes(), false);
                let text = &raw[..self.length.min(raw.len())];
                let end = text.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                Value::Str(text[..end].iter().map(|&b| char::from(b)).collect())
            }
            dtype => {
                // A number is at most four words: its bytes are put together on the stack.
                let (raw, len) =
                    number_bytes(words, self.order.swaps_bytes(), self.order.swaps_words());
                let number = unpack(dtype, &raw[..len]);
                if self.scaled() {
                    let as_float = match number {
                        Value::Int(i) => i as f64,
                        Value::Float(f) => f,
                        _ => unreachable!("unpack yields numbers"),
                    };
                    Value::Float(as_float * self.scale + self.offset)
                } else {
                    number
                }
            }
        }
    }

    /// The value as a float64, straight from the words (a bool as 0/1, a string as NaN): the
    /// columnar path, which makes no `Value`. Equal to `decode_unchecked` seen as a float.
    #[must_use]
    pub fn decode_f64(&self, words: &[u16]) -> f64 {
        let scaled = self.scaled();
        let raw = match (self.dtype, self.order.swaps_bytes()) {
            // The common cases, without putting bytes together.
            (DataType::Uint16, false) => f64::from(words[0]),
            (DataType::Int16, false) => f64::from(words[0] as i16),
            (DataType::Bool, _) => {
                return f64::from(u8::from(match self.bit {
                    Some(bit) => (words[0] >> bit) & 1 == 1,
                    None => words[0] != 0,
                }));
            }
            (DataType::String, _) => return f64::NAN,
            _ => match self.decode_unchecked(words) {
                Value::Int(i) => i as f64,
                // decode_unchecked has scaled it already.
                Value::Float(f) => return f,
                Value::Bool(_) | Value::Str(_) => unreachable!("numbers decode to numbers"),
            },
        };
        if scaled {
            raw * self.scale + self.offset
        } else {
            raw
        }
    }

    /// The words that hold `value`; a bit is merged into `current`, the register it lives in.
    ///
    /// # Errors
    /// When the value is of the wrong kind or out of range for the type.
    pub fn encode(&self, value: &Value, current: u16) -> Result<Vec<u16>, CodecError> {
        match self.dtype {
            DataType::Bool => {
                let flag = as_bool(value)?;
                Ok(vec![match self.bit {
                    None => u16::from(flag),
                    Some(bit) if flag => current | (1 << bit),
                    Some(bit) => current & !(1 << bit),
                }])
            }
            DataType::String => self.encode_string(value),
            dtype => {
                let packed = self.pack_number(dtype, value)?;
                Ok(bytes_to_words(
                    &packed,
                    self.order.swaps_bytes(),
                    self.order.swaps_words(),
                ))
            }
        }
    }

    fn encode_string(&self, value: &Value) -> Result<Vec<u16>, CodecError> {
        let Value::Str(text) = value else {
            return Err(CodecError::Encode(format!(
                "string[{}] takes a str, not {value:?}",
                self.length
            )));
        };
        let mut raw = Vec::with_capacity(self.words() * 2);
        for (index, ch) in text.chars().enumerate() {
            let code = u32::from(ch);
            if code > 0xFF {
                return Err(CodecError::Encode(format!(
                    "{text:?} has a character outside latin-1 at index {index}"
                )));
            }
            raw.push(code as u8);
        }
        if raw.len() > self.length {
            return Err(CodecError::Encode(format!(
                "{text:?} is {} bytes; string[{}] holds at most {}",
                raw.len(),
                self.length,
                self.length
            )));
        }
        raw.resize(self.words() * 2, 0);
        Ok(bytes_to_words(&raw, self.order.swaps_bytes(), false))
    }

    fn pack_number(&self, dtype: DataType, value: &Value) -> Result<Vec<u8>, CodecError> {
        let wrong_kind =
            || CodecError::Encode(format!("{} takes a number, not {value:?}", dtype.name()));
        // Keep integers exact unless scaling turns them into floats, as Python does.
        let mut number = match value {
            Value::Bool(b) => Number::Int(i128::from(*b)),
            Value::Int(i) => Number::Int(*i),
            Value::Float(f) => Number::Float(*f),
            Value::Str(_) => return Err(wrong_kind()),
        };
        if self.scaled() {
            number = Number::Float((number.as_f64() - self.offset) / self.scale);
        }
        if dtype == DataType::Float32 || dtype == DataType::Float64 {
            let float = number.as_f64();
            if dtype == DataType::Float32 {
                let narrow = float as f32;
                if narrow.is_infinite() && float.is_finite() {
                    return Err(CodecError::Encode(format!(
                        "{value:?} is out of range for float32"
                    )));
                }
                return Ok(narrow.to_be_bytes().to_vec());
            }
            return Ok(float.to_be_bytes().to_vec());
        }
        let integer = match number {
            Number::Int(i) => i,
            Number::Float(f) => {
                if !f.is_finite() {
                    return Err(CodecError::Encode(format!(
                        "{value:?} is not a finite number, so it cannot be written as {}",
                        dtype.name()
                    )));
                }
                if !self.scaled() && f.fract() != 0.0 {
                    return Err(CodecError::Encode(format!(
                        "{value:?} is not a whole number; {} holds integers",
                        dtype.name()
                    )));
                }
                float_to_i128(f.round_ties_even())
            }
        };
        let (low, high) = dtype.integer_range().ok_or_else(wrong_kind)?;
        if integer < low || integer > high {
            return Err(CodecError::Encode(format!(
                "{value:?} is out of range for {} ({low}..{high})",
                dtype.name()
            )));
        }
        Ok(match dtype {
            DataType::Int16 => (integer as i16).to_be_bytes().to_vec(),
            DataType::Uint16 => (integer as u16).to_be_bytes().to_vec(),
            DataType::Int32 => (integer as i32).to_be_bytes().to_vec(),
            DataType::Uint32 => (integer as u32).to_be_bytes().to_vec(),
            DataType::Int64 => (integer as i64).to_be_bytes().to_vec(),
            _ => (integer as u64).to_be_bytes().to_vec(),
        })
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
}

/// Saturates outside i128, which is far outside every type's range, so the range check still fails.
fn float_to_i128(f: f64) -> i128 {
    f as i128
}

#[allow(clippy::float_cmp)] // only exactly 0.0 and 1.0 are booleans, as in the Python codec
fn as_bool(value: &Value) -> Result<bool, CodecError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Float(f) if *f == 0.0 => Ok(false),
        Value::Float(f) if *f == 1.0 => Ok(true),
        other => Err(CodecError::Encode(format!(
            "bool takes True/False (or 0/1), not {other:?}"
        ))),
    }
}

fn unpack(dtype: DataType, raw: &[u8]) -> Value {
    let mut buf = [0u8; 8];
    buf[..raw.len()].copy_from_slice(raw);
    match dtype {
        DataType::Int16 => Value::Int(i128::from(i16::from_be_bytes([buf[0], buf[1]]))),
        DataType::Uint16 => Value::Int(i128::from(u16::from_be_bytes([buf[0], buf[1]]))),
        DataType::Int32 => Value::Int(i128::from(i32::from_be_bytes([
            buf[0], buf[1], buf[2], buf[3],
        ]))),
        DataType::Uint32 => Value::Int(i128::from(u32::from_be_bytes([
            buf[0], buf[1], buf[2], buf[3],
        ]))),
        DataType::Int64 => Value::Int(i128::from(i64::from_be_bytes(buf))),
        DataType::Uint64 => Value::Int(i128::from(u64::from_be_bytes(buf))),
        DataType::Float32 => Value::Float(f64::from(f32::from_be_bytes([
            buf[0], buf[1], buf[2], buf[3],
        ]))),
        DataType::Float64 => Value::Float(f64::from_be_bytes(buf)),
        DataType::Bool | DataType::String => unreachable!("bool and string are not packed numbers"),
    }
}

/// `words_to_bytes` for a number (at most four words), without an allocation.
fn number_bytes(words: &[u16], swap_bytes: bool, swap_words: bool) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    let count = words.len().min(4);
    for (i, slot) in out.chunks_exact_mut(2).take(count).enumerate() {
        let word = if swap_words {
            words[count - 1 - i]
        } else {
            words[i]
        };
        slot.copy_from_slice(&if swap_bytes {
            word.to_le_bytes()
        } else {
            word.to_be_bytes()
        });
    }
    (out, count * 2)
}

fn words_to_bytes(words: &[u16], swap_bytes: bool, swap_words: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 2);
    let mut push = |word: u16| {
        let bytes = if swap_bytes {
            word.to_le_bytes()
        } else {
            word.to_be_bytes()
        };
        out.extend_from_slice(&bytes);
    };
    if swap_words {
        words.iter().rev().copied().for_each(&mut push);
    } else {
        words.iter().copied().for_each(&mut push);
    }
    out
}

fn bytes_to_words(raw: &[u8], swap_bytes: bool, swap_words: bool) -> Vec<u16> {
    let mut words: Vec<u16> = raw
        .chunks_exact(2)
        .map(|pair| {
            if swap_bytes {
                u16::from_le_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], pair[1]])
            }
        })
        .collect();
    if swap_words {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(dtype: DataType, order: ByteOrder) -> WireFormat {
        WireFormat::plain(dtype, order)
    }

    proptest! {
        #[test]
        fn numbers_put_their_bytes_together_as_strings_do(
            words in proptest::collection::vec(any::<u16>(), 1..=4),
            swap_bytes: bool,
            swap_words: bool,
        ) {
            let (raw, len) = number_bytes(&words, swap_bytes, swap_words);
            prop_assert_eq!(&raw[..len], &words_to_bytes(&words, swap_bytes, swap_words)[..]);
        }
    }

    #[test]
    fn float32_golden_vectors_in_every_byte_order() {
        let cases = [
            (ByteOrder::Abcd, [0x42F6, 0xE979]),
            (ByteOrder::Badc, [0xF642, 0x79E9]),
            (ByteOrder::Cdab, [0xE979, 0x42F6]),
            (ByteOrder::Dcba, [0x79E9, 0xF642]),
        ];
        for (order, words) in cases {
            let format = fmt(DataType::Float32, order);
            assert_eq!(format.encode(&Value::Float(123.456), 0).unwrap(), words);
            assert_eq!(
                format.decode(&words).unwrap(),
                Value::Float(f64::from(123.456_f32))
            );
        }
    }

    #[test]
    fn out_of_range_is_an_error_not_a_wrap() {
        let format = fmt(DataType::Int16, ByteOrder::Abcd);
        assert!(format.encode(&Value::Int(40_000), 0).is_err());
        assert!(format.encode(&Value::Float(1.5), 0).is_err());
        assert!(fmt(DataType::Float32, ByteOrder::Abcd)
            .encode(&Value::Float(1e39), 0)
            .is_err());
    }

    #[test]
    fn bits_merge_into_the_current_register() {
        let format =
            WireFormat::new(DataType::Bool, ByteOrder::Abcd, 0, 1.0, 0.0, Some(7)).unwrap();
        assert_eq!(
            format.encode(&Value::Bool(true), 0x0001).unwrap(),
            vec![0x0081]
        );
        assert_eq!(
            format.encode(&Value::Bool(false), 0xFFFF).unwrap(),
            vec![0xFF7F]
        );
        assert_eq!(format.decode(&[0x0080]).unwrap(), Value::Bool(true));
    }

    #[test]
    fn strings_pad_with_nul_and_swap_bytes_only() {
        let format = WireFormat::new(DataType::String, ByteOrder::Dcba, 5, 1.0, 0.0, None).unwrap();
        let words = format.encode(&Value::Str("hello".into()), 0).unwrap();
        assert_eq!(words, vec![0x6568, 0x6C6C, 0x006F]);
        assert_eq!(format.decode(&words).unwrap(), Value::Str("hello".into()));
    }

    fn any_order() -> impl Strategy<Value = ByteOrder> {
        prop_oneof![
            Just(ByteOrder::Abcd),
            Just(ByteOrder::Badc),
            Just(ByteOrder::Cdab),
            Just(ByteOrder::Dcba)
        ]
    }

    proptest! {
        #[test]
        fn int64_round_trips(value: i64, order in any_order()) {
            let format = fmt(DataType::Int64, order);
            let words = format.encode(&Value::Int(i128::from(value)), 0).unwrap();
            prop_assert_eq!(format.decode(&words).unwrap(), Value::Int(i128::from(value)));
        }

        #[test]
        fn float64_round_trips(value in proptest::num::f64::NORMAL, order in any_order()) {
            let format = fmt(DataType::Float64, order);
            let words = format.encode(&Value::Float(value), 0).unwrap();
            prop_assert_eq!(format.decode(&words).unwrap(), Value::Float(value));
        }
    }
}
