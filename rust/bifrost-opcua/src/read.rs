//! Reads planned once and sent again (a read_many's request built a single time), and their answers
//! unpacked in place: plain scalars borrowed from the response, anything else on demand.

use open62541::{ua, DataType as _};

use crate::client::{attribute_id, datum, unix_seconds, ClientError, Datum, NodeRef, ReadValue};
use crate::ffi;

fn read_value(data: &ua::DataValue) -> ReadValue {
    let (value, variant) = data.value().map_or((Datum::Null, None), datum);
    ReadValue {
        value,
        variant,
        status: data.status().map_or(0, ua::StatusCode::into_raw),
        source_timestamp: unix_seconds(data.source_timestamp()),
        server_timestamp: unix_seconds(data.server_timestamp()),
    }
}

/// A Read of the same nodes, built once (NodeIds converted, the request assembled) so that reading
/// them again only sends it.
#[derive(Debug, Clone)]
pub struct PreparedRead {
    pub(crate) request: ua::ReadRequest,
    pub(crate) count: usize,
}

impl PreparedRead {
    /// A Read (TimestampsToReturn Both) of `attribute` of every node, in order.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] for an attribute this client does not read or a NodeId it cannot send.
    pub fn new(nodes: &[NodeRef], attribute: u32) -> Result<Self, ClientError> {
        let attribute = attribute_id(attribute)?;
        let items = nodes
            .iter()
            .map(|node| {
                Ok(ua::ReadValueId::init()
                    .with_node_id(&node.to_ua()?)
                    .with_attribute_id(&attribute))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let request = ua::ReadRequest::init()
            .with_timestamps_to_return(&ua::TimestampsToReturn::BOTH)
            .with_nodes_to_read(&items);
        Ok(Self {
            request,
            count: nodes.len(),
        })
    }

    /// How many nodes it reads.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it reads no node.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A scalar as most reads hold it, borrowed from the response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain<'a> {
    Null,
    Boolean(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A String's or a LocalizedText's text.
    String(&'a str),
}

/// One value of a [`ReadValues`], without copying it: the value when it is a [`Plain`] scalar
/// (`None`: any other type or an array, see [`ReadValues::value`]), the StatusCode and the source
/// and server timestamps (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlainValue<'a> {
    pub value: Option<Plain<'a>>,
    pub status: u32,
    pub source_timestamp: Option<f64>,
    pub server_timestamp: Option<f64>,
}

/// The values of one Read response, in request order, unpacked only when asked for.
#[derive(Debug)]
pub struct ReadValues {
    response: ua::ReadResponse,
}

impl ReadValues {
    pub(crate) fn new(response: ua::ReadResponse) -> Self {
        Self { response }
    }

    fn results(&self) -> &[ua::DataValue] {
        ffi::read_results(&self.response)
    }

    /// How many values it holds (as many as nodes read).
    #[must_use]
    pub fn len(&self) -> usize {
        self.results().len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.results().is_empty()
    }

    /// The value at `index` as it is, when a plain scalar. Panics past the end.
    #[must_use]
    pub fn plain(&self, index: usize) -> PlainValue<'_> {
        let data = &self.results()[index];
        PlainValue {
            value: data.value().map_or(Some(Plain::Null), plain),
            status: data.status().map_or(0, ua::StatusCode::into_raw),
            source_timestamp: unix_seconds(data.source_timestamp()),
            server_timestamp: unix_seconds(data.server_timestamp()),
        }
    }

    /// The value at `index`, whole. Panics past the end.
    #[must_use]
    pub fn value(&self, index: usize) -> ReadValue {
        read_value(&self.results()[index])
    }
}

/// A variant as a [`Plain`] scalar, when it is one.
fn plain(variant: &ua::Variant) -> Option<Plain<'_>> {
    if variant.is_empty() {
        return Some(Plain::Null);
    }
    if !variant.is_scalar() {
        return None;
    }
    let id = variant.type_id().and_then(ua::NodeId::as_ns0)?;
    Some(match id {
        1 => Plain::Boolean(variant.as_scalar::<ua::Boolean>()?.value()),
        2 => Plain::Int(i64::from(variant.as_scalar::<ua::SByte>()?.value())),
        3 => Plain::UInt(u64::from(variant.as_scalar::<ua::Byte>()?.value())),
        4 => Plain::Int(i64::from(variant.as_scalar::<ua::Int16>()?.value())),
        5 => Plain::UInt(u64::from(variant.as_scalar::<ua::UInt16>()?.value())),
        6 => Plain::Int(i64::from(variant.as_scalar::<ua::Int32>()?.value())),
        7 => Plain::UInt(u64::from(variant.as_scalar::<ua::UInt32>()?.value())),
        8 => Plain::Int(variant.as_scalar::<ua::Int64>()?.value()),
        9 => Plain::UInt(variant.as_scalar::<ua::UInt64>()?.value()),
        10 => Plain::Float(f64::from(variant.as_scalar::<ua::Float>()?.value())),
        11 => Plain::Float(variant.as_scalar::<ua::Double>()?.value()),
        12 => Plain::String(
            variant
                .as_scalar::<ua::String>()?
                .as_str()
                .unwrap_or_default(),
        ),
        19 => Plain::UInt(u64::from(
            variant.as_scalar::<ua::StatusCode>()?.clone().into_raw(),
        )),
        21 => Plain::String(
            variant
                .as_scalar::<ua::LocalizedText>()?
                .text()
                .as_str()
                .unwrap_or_default(),
        ),
        _ => return None,
    })
}
