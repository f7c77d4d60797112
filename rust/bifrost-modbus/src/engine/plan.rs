//! Read plans: the requests to send and how every tag is cut out of their replies and decoded.
//!
//! A plan is validated once, when built ([`ReadPlan::new`]), so that executing it can never index
//! out of a reply: every request is within the protocol's limits, and every tag lies inside its
//! request. Decoding uses the value codec ([`WireFormat::decode_unchecked`]) unchanged.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::values::{DataType, Value, WireFormat};

use super::error::Error;

/// Most registers one read may ask for (FC3, FC4).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most registers one write may carry (FC16).
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Most coils or discrete inputs one read may ask for (FC1, FC2).
pub const MAX_READ_BITS: u16 = 2000;
/// Most coils one write may carry (FC15).
pub const MAX_WRITE_BITS: u16 = 1968;
/// Addresses run 0..65535.
pub const ADDRESS_SPACE: u32 = 65_536;

/// The four Modbus data areas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    Coils,
    DiscreteInputs,
    InputRegisters,
    HoldingRegisters,
}

impl Area {
    /// Coils and discrete inputs hold bits; the others hold 16-bit registers.
    #[must_use]
    pub fn is_bits(self) -> bool {
        matches!(self, Self::Coils | Self::DiscreteInputs)
    }

    /// Coils and holding registers can be written.
    #[must_use]
    pub fn is_writable(self) -> bool {
        matches!(self, Self::Coils | Self::HoldingRegisters)
    }

    /// The function code that reads this area.
    #[must_use]
    pub fn read_function(self) -> u8 {
        match self {
            Self::Coils => 1,
            Self::DiscreteInputs => 2,
            Self::HoldingRegisters => 3,
            Self::InputRegisters => 4,
        }
    }

    /// The most items one read of this area may ask for.
    #[must_use]
    pub fn max_read(self) -> u16 {
        if self.is_bits() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        }
    }

    /// The address prefix of the tag vocabulary: `coil`, `di`, `ir`, `hr`.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Coils => "coil",
            Self::DiscreteInputs => "di",
            Self::InputRegisters => "ir",
            Self::HoldingRegisters => "hr",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

impl FromStr for Area {
    type Err = PlanError;

    fn from_str(prefix: &str) -> Result<Self, Self::Err> {
        Ok(match prefix {
            "coil" => Self::Coils,
            "di" => Self::DiscreteInputs,
            "ir" => Self::InputRegisters,
            "hr" => Self::HoldingRegisters,
            other => {
                return Err(PlanError::new(format!(
                    "unknown area {other:?}: expected coil, di, ir or hr"
                )))
            }
        })
    }
}

/// One read: `count` items of `area` from `start`, of unit `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    pub unit: u8,
    pub area: Area,
    pub start: u16,
    pub count: u16,
}

impl ReadRequest {
    #[must_use]
    pub fn new(unit: u8, area: Area, start: u16, count: u16) -> Self {
        Self {
            unit,
            area,
            start,
            count,
        }
    }

    /// # Errors
    /// A count of 0 or above the area's limit, or a range past address 65535.
    pub fn validate(&self) -> Result<(), String> {
        let limit = self.area.max_read();
        if self.count == 0 || self.count > limit {
            return Err(format!(
                "{}:{} count {} is outside 1..={limit}",
                self.area, self.start, self.count
            ));
        }
        if u32::from(self.start) + u32::from(self.count) > ADDRESS_SPACE {
            return Err(format!(
                "{}:{} count {} runs past address 65535",
                self.area, self.start, self.count
            ));
        }
        Ok(())
    }
}

/// Where one tag sits in the replies of a plan, and how to decode it.
///
/// `offset` counts registers from the request's `start` for register areas, and bits for coils and
/// discrete inputs (whose tags are plain `bool`s). A bit of a register is a `bool` format with
/// `bit` set.
#[derive(Debug, Clone, PartialEq)]
pub struct TagDecoder {
    pub request: usize,
    pub offset: u16,
    pub format: WireFormat,
}

impl TagDecoder {
    #[must_use]
    pub fn new(request: usize, offset: u16, format: WireFormat) -> Self {
        Self {
            request,
            offset,
            format,
        }
    }
}

/// A plan that cannot be run; the message says which request or tag and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub request: Option<usize>,
    pub tag: Option<usize>,
    pub message: String,
}

impl PlanError {
    fn new(message: String) -> Self {
        Self {
            request: None,
            tag: None,
            message,
        }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.request, self.tag) {
            (_, Some(tag)) => write!(f, "tag {tag}: {}", self.message),
            (Some(request), None) => write!(f, "request {request}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PlanError {}

/// The requests of a read and the decoders of its tags, checked to fit together.
/// Cheap to clone: the requests are shared with the connection's task.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    requests: Arc<[ReadRequest]>,
    tags: Vec<TagDecoder>,
}

impl ReadPlan {
    /// # Errors
    /// A request outside the protocol's limits; a tag pointing at a missing request, lying past
    /// the end of its request, or of a type its area cannot hold (coils and discrete inputs hold
    /// plain bools only).
    pub fn new(requests: Vec<ReadRequest>, tags: Vec<TagDecoder>) -> Result<Self, PlanError> {
        for (index, request) in requests.iter().enumerate() {
            request.validate().map_err(|message| PlanError {
                request: Some(index),
                tag: None,
                message,
            })?;
        }
        for (index, tag) in tags.iter().enumerate() {
            check_tag(&requests, tag).map_err(|message| PlanError {
                request: Some(tag.request),
                tag: Some(index),
                message,
            })?;
        }
        Ok(Self {
            requests: requests.into(),
            tags,
        })
    }

    #[must_use]
    pub fn requests(&self) -> &[ReadRequest] {
        &self.requests
    }

    #[must_use]
    pub fn tags(&self) -> &[TagDecoder] {
        &self.tags
    }

    pub(crate) fn shared_requests(&self) -> Arc<[ReadRequest]> {
        Arc::clone(&self.requests)
    }

    /// Decode every tag from the replies to the plan's requests (one per request, in order).
    /// A failed request leaves its tags without a value; its error is kept once, per request.
    ///
    /// # Panics
    /// If `replies` is not one per request, or a reply is shorter than its request (the engine
    /// checks reply lengths before handing them here).
    #[must_use]
    pub fn decode(&self, replies: Vec<Result<Words, Error>>, timestamp: SystemTime) -> Readings {
        assert_eq!(replies.len(), self.requests.len(), "one reply per request");
        let mut words: Vec<Option<Words>> = Vec::with_capacity(replies.len());
        let mut errors: Vec<Option<Error>> = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply {
                Ok(w) => {
                    words.push(Some(w));
                    errors.push(None);
                }
                Err(e) => {
                    words.push(None);
                    errors.push(Some(e));
                }
            }
        }
        let values = self
            .tags
            .iter()
            .map(|tag| {
                words[tag.request]
                    .as_ref()
                    .map(|reply| decode_tag(tag, reply))
            })
            .collect();
        Readings {
            values,
            errors,
            timestamp,
        }
    }
}

impl ReadPlan {
    /// Every tag's value as a float64 appended to `values` (NaN where its request failed, see
    /// [`WireFormat::decode_f64`]) and its goodness (1 or 0) to `good`: the columnar path, which
    /// makes no [`Value`].
    ///
    /// # Panics
    /// When `replies` is not one per request (as [`ReadPlan::decode`]).
    pub fn decode_f64_into(
        &self,
        replies: &[Result<Words, Error>],
        values: &mut Vec<f64>,
        good: &mut Vec<u8>,
    ) {
        assert_eq!(replies.len(), self.requests.len(), "one reply per request");
        values.reserve(self.tags.len());
        good.reserve(self.tags.len());
        for tag in &self.tags {
            let offset = usize::from(tag.offset);
            match &replies[tag.request] {
                Ok(Words::Bits(bits)) => {
                    values.push(f64::from(u8::from(bits[offset])));
                    good.push(1);
                }
                Ok(Words::Registers(registers)) => {
                    let words = &registers[offset..offset + tag.format.words()];
                    values.push(tag.format.decode_f64(words));
                    good.push(1);
                }
                Err(_) => {
                    values.push(f64::NAN);
                    good.push(0);
                }
            }
        }
    }
}

fn check_tag(requests: &[ReadRequest], tag: &TagDecoder) -> Result<(), String> {
    let Some(request) = requests.get(tag.request) else {
        return Err(format!(
            "request {} does not exist ({} requests)",
            tag.request,
            requests.len()
        ));
    };
    if request.area.is_bits() {
        if tag.format.dtype != DataType::Bool || tag.format.bit.is_some() {
            return Err(format!(
                "{} holds bits: its tags are plain bool, not {}{}",
                request.area,
                tag.format.dtype.name(),
                tag.format
                    .bit
                    .map_or(String::new(), |b| format!(" bit {b}")),
            ));
        }
        if tag.offset >= request.count {
            return Err(format!(
                "bit offset {} is past the {} bits of the request",
                tag.offset, request.count
            ));
        }
        return Ok(());
    }
    let words = tag.format.words();
    if words == 0 || usize::from(tag.offset) + words > usize::from(request.count) {
        return Err(format!(
            "{} at word offset {} takes {words} register(s), past the {} of the request",
            tag.format.dtype.name(),
            tag.offset,
            request.count
        ));
    }
    Ok(())
}

fn decode_tag(tag: &TagDecoder, reply: &Words) -> Value {
    let offset = usize::from(tag.offset);
    match reply {
        Words::Bits(bits) => Value::Bool(bits[offset]),
        Words::Registers(registers) => tag
            .format
            .decode_unchecked(&registers[offset..offset + tag.format.words()]),
    }
}

/// The payload of one read: bits for coils and discrete inputs, registers otherwise. Always
/// exactly as long as the request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Words {
    Bits(Vec<bool>),
    Registers(Vec<u16>),
}

impl Words {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Bits(bits) => bits.len(),
            Self::Registers(registers) => registers.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of one run of a plan, in bulk: one slot per tag and one per request.
///
/// `values[i]` is the value of tag `i`, or `None` when its request failed; the error of request
/// `r` is `errors[r]` (kept once, not copied to each tag). [`Readings::get`] and
/// [`Readings::into_results`] give the per-tag `Result` view.
#[derive(Debug, Clone)]
pub struct Readings {
    pub values: Vec<Option<Value>>,
    pub errors: Vec<Option<Error>>,
    /// When the replies were in (the time of the whole read).
    pub timestamp: SystemTime,
}

impl Readings {
    /// The result of tag `tag` of `plan` (the plan these readings came from).
    ///
    /// # Errors
    /// The error of the tag's request, when it failed.
    ///
    /// # Panics
    /// If `tag` is not a tag of the plan, or the readings are not the plan's.
    pub fn get(&self, plan: &ReadPlan, tag: usize) -> Result<&Value, &Error> {
        match &self.values[tag] {
            Some(value) => Ok(value),
            None => Err(self.errors[plan.tags[tag].request]
                .as_ref()
                .expect("a tag without a value belongs to a failed request")),
        }
    }

    /// One `Result` per tag, in plan order.
    ///
    /// # Panics
    /// If the readings are not the plan's.
    #[must_use]
    pub fn into_results(self, plan: &ReadPlan) -> Vec<Result<Value, Error>> {
        let Self { values, errors, .. } = self;
        values
            .into_iter()
            .zip(&plan.tags)
            .map(|(value, tag)| {
                value.ok_or_else(|| {
                    errors[tag.request]
                        .clone()
                        .expect("a failed request carries its error")
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::ByteOrder;

    fn plain(dtype: DataType) -> WireFormat {
        WireFormat::plain(dtype, ByteOrder::Abcd)
    }

    #[test]
    fn requests_outside_the_limits_are_refused() {
        let cases = [
            ReadRequest::new(1, Area::HoldingRegisters, 0, 0),
            ReadRequest::new(1, Area::HoldingRegisters, 0, 126),
            ReadRequest::new(1, Area::Coils, 0, 2001),
            ReadRequest::new(1, Area::InputRegisters, 65_535, 2),
        ];
        for request in cases {
            let err = ReadPlan::new(vec![request], vec![]).unwrap_err();
            assert_eq!(err.request, Some(0), "{err}");
        }
        let edge = ReadRequest::new(1, Area::Coils, 63_536, 2000);
        assert!(ReadPlan::new(vec![edge], vec![]).is_ok());
    }

    #[test]
    fn tags_must_fit_their_request_and_area() {
        let regs = ReadRequest::new(1, Area::HoldingRegisters, 10, 4);
        let bits = ReadRequest::new(1, Area::Coils, 0, 8);
        let bad = [
            TagDecoder::new(2, 0, plain(DataType::Int16)),
            TagDecoder::new(0, 3, plain(DataType::Float32)),
            TagDecoder::new(0, 4, plain(DataType::Int16)),
            TagDecoder::new(1, 0, plain(DataType::Int16)),
            TagDecoder::new(1, 8, plain(DataType::Bool)),
        ];
        for tag in bad {
            let err = ReadPlan::new(vec![regs, bits], vec![tag.clone()]).unwrap_err();
            assert_eq!(err.tag, Some(0), "{tag:?} should be refused");
        }
        let good = vec![
            TagDecoder::new(0, 0, plain(DataType::Float64)),
            TagDecoder::new(1, 7, plain(DataType::Bool)),
        ];
        assert!(ReadPlan::new(vec![regs, bits], good).is_ok());
    }

    #[test]
    fn decode_cuts_and_decodes_and_keeps_errors_per_request() {
        let requests = vec![
            ReadRequest::new(1, Area::HoldingRegisters, 0, 3),
            ReadRequest::new(1, Area::DiscreteInputs, 0, 3),
            ReadRequest::new(2, Area::InputRegisters, 0, 1),
        ];
        let bit3 = WireFormat::new(DataType::Bool, ByteOrder::Abcd, 0, 1.0, 0.0, Some(3)).unwrap();
        let tags = vec![
            TagDecoder::new(0, 1, plain(DataType::Float32)),
            TagDecoder::new(0, 0, bit3),
            TagDecoder::new(1, 2, plain(DataType::Bool)),
            TagDecoder::new(2, 0, plain(DataType::Int16)),
        ];
        let plan = ReadPlan::new(requests, tags).unwrap();
        let device: Arc<str> = Arc::from("dev");
        let replies = vec![
            Ok(Words::Registers(vec![0x0008, 0x42F6, 0xE979])),
            Ok(Words::Bits(vec![false, false, true])),
            Err(Error::Exception {
                device,
                unit: 2,
                function: 4,
                code: 2,
            }),
        ];
        let readings = plan.decode(replies, SystemTime::UNIX_EPOCH);
        assert_eq!(
            readings.values[0],
            Some(Value::Float(f64::from(123.456_f32)))
        );
        assert_eq!(readings.values[1], Some(Value::Bool(true)));
        assert_eq!(readings.values[2], Some(Value::Bool(true)));
        assert_eq!(readings.values[3], None);
        assert_eq!(
            readings.get(&plan, 3).unwrap_err().exception_code(),
            Some(2)
        );
        let results = readings.into_results(&plan);
        assert!(results[..3].iter().all(Result::is_ok));
        assert!(matches!(results[3], Err(Error::Exception { code: 2, .. })));
    }
}
