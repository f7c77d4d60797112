//! The scalar types a served variable may have, and their values (a scalar, or a one-dimensional
//! array of one scalar type), with the conversions to and from open62541's variants (safe: through
//! the `open62541` crate's types).

use std::fmt;

use open62541::{ua, DataType as _};

/// The OPC UA built-in types a variable may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Boolean,
    SByte,
    Byte,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float,
    Double,
    String,
}

impl ValueType {
    /// Every type, in the order of their ns=0 data type ids.
    pub const ALL: [ValueType; 12] = [
        Self::Boolean,
        Self::SByte,
        Self::Byte,
        Self::Int16,
        Self::UInt16,
        Self::Int32,
        Self::UInt32,
        Self::Int64,
        Self::UInt64,
        Self::Float,
        Self::Double,
        Self::String,
    ];

    /// The type's OPC UA name (`Boolean`, `SByte`... `String`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Boolean => "Boolean",
            Self::SByte => "SByte",
            Self::Byte => "Byte",
            Self::Int16 => "Int16",
            Self::UInt16 => "UInt16",
            Self::Int32 => "Int32",
            Self::UInt32 => "UInt32",
            Self::Int64 => "Int64",
            Self::UInt64 => "UInt64",
            Self::Float => "Float",
            Self::Double => "Double",
            Self::String => "String",
        }
    }

    /// The type named `name` (as [`ValueType::name`] spells it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The numeric id of the type's DataType node in namespace 0 (`i=1` Boolean ... `i=12` String).
    #[must_use]
    pub const fn ns0_id(self) -> u32 {
        match self {
            Self::Boolean => 1,
            Self::SByte => 2,
            Self::Byte => 3,
            Self::Int16 => 4,
            Self::UInt16 => 5,
            Self::Int32 => 6,
            Self::UInt32 => 7,
            Self::Int64 => 8,
            Self::UInt64 => 9,
            Self::Float => 10,
            Self::Double => 11,
            Self::String => 12,
        }
    }

    /// The type's zero (the value a variable holds before the first push).
    #[must_use]
    pub fn zero(self) -> Value {
        match self {
            Self::Boolean => Value::Boolean(false),
            Self::SByte => Value::SByte(0),
            Self::Byte => Value::Byte(0),
            Self::Int16 => Value::Int16(0),
            Self::UInt16 => Value::UInt16(0),
            Self::Int32 => Value::Int32(0),
            Self::UInt32 => Value::UInt32(0),
            Self::Int64 => Value::Int64(0),
            Self::UInt64 => Value::UInt64(0),
            Self::Float => Value::Float(0.0),
            Self::Double => Value::Double(0.0),
            Self::String => Value::String(String::new()),
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value of one of the [`ValueType`]s: a scalar, or a one-dimensional array of scalars of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    SByte(i8),
    Byte(u8),
    Int16(i16),
    UInt16(u16),
    Int32(i32),
    UInt32(u32),
    Int64(i64),
    UInt64(u64),
    Float(f32),
    Double(f64),
    String(String),
    /// A one-dimensional array of the type's scalars (each element a scalar of it).
    Array(ValueType, Vec<Value>),
}

impl Value {
    /// Whether the value is an array ([`Value::Array`]).
    #[must_use]
    pub const fn is_array(&self) -> bool {
        matches!(self, Self::Array(..))
    }

    /// The value's type (an array's: the type of its elements).
    #[must_use]
    pub const fn value_type(&self) -> ValueType {
        match self {
            Self::Array(t, _) => *t,
            Self::Boolean(_) => ValueType::Boolean,
            Self::SByte(_) => ValueType::SByte,
            Self::Byte(_) => ValueType::Byte,
            Self::Int16(_) => ValueType::Int16,
            Self::UInt16(_) => ValueType::UInt16,
            Self::Int32(_) => ValueType::Int32,
            Self::UInt32(_) => ValueType::UInt32,
            Self::Int64(_) => ValueType::Int64,
            Self::UInt64(_) => ValueType::UInt64,
            Self::Float(_) => ValueType::Float,
            Self::Double(_) => ValueType::Double,
            Self::String(_) => ValueType::String,
        }
    }

    /// The value as an open62541 variant.
    pub(crate) fn to_variant(&self) -> ua::Variant {
        match self {
            Self::Array(t, items) => array_variant(*t, items),
            Self::Boolean(v) => ua::Variant::scalar(ua::Boolean::new(*v)),
            Self::SByte(v) => ua::Variant::scalar(ua::SByte::new(*v)),
            Self::Byte(v) => ua::Variant::scalar(ua::Byte::new(*v)),
            Self::Int16(v) => ua::Variant::scalar(ua::Int16::new(*v)),
            Self::UInt16(v) => ua::Variant::scalar(ua::UInt16::new(*v)),
            Self::Int32(v) => ua::Variant::scalar(ua::Int32::new(*v)),
            Self::UInt32(v) => ua::Variant::scalar(ua::UInt32::new(*v)),
            Self::Int64(v) => ua::Variant::scalar(ua::Int64::new(*v)),
            Self::UInt64(v) => ua::Variant::scalar(ua::UInt64::new(*v)),
            Self::Float(v) => ua::Variant::scalar(ua::Float::new(*v)),
            Self::Double(v) => ua::Variant::scalar(ua::Double::new(*v)),
            // A string with a NUL byte cannot cross into C: it is served empty rather than not at all.
            Self::String(v) => {
                ua::Variant::scalar(ua::String::new(v).unwrap_or_else(|_| ua::String::init()))
            }
        }
    }

    /// The value a client wrote, if the variant holds a scalar of `value_type` (with `array`, a
    /// one-dimensional array of them).
    pub(crate) fn from_variant(
        variant: &ua::Variant,
        value_type: ValueType,
        array: bool,
    ) -> Option<Self> {
        if array {
            return array_from_variant(variant, value_type);
        }
        Some(match value_type {
            ValueType::Boolean => Self::Boolean(variant.to_scalar::<ua::Boolean>()?.value()),
            ValueType::SByte => Self::SByte(variant.to_scalar::<ua::SByte>()?.value()),
            ValueType::Byte => Self::Byte(variant.to_scalar::<ua::Byte>()?.value()),
            ValueType::Int16 => Self::Int16(variant.to_scalar::<ua::Int16>()?.value()),
            ValueType::UInt16 => Self::UInt16(variant.to_scalar::<ua::UInt16>()?.value()),
            ValueType::Int32 => Self::Int32(variant.to_scalar::<ua::Int32>()?.value()),
            ValueType::UInt32 => Self::UInt32(variant.to_scalar::<ua::UInt32>()?.value()),
            ValueType::Int64 => Self::Int64(variant.to_scalar::<ua::Int64>()?.value()),
            ValueType::UInt64 => Self::UInt64(variant.to_scalar::<ua::UInt64>()?.value()),
            ValueType::Float => Self::Float(variant.to_scalar::<ua::Float>()?.value()),
            ValueType::Double => Self::Double(variant.to_scalar::<ua::Double>()?.value()),
            ValueType::String => {
                let s = variant.to_scalar::<ua::String>()?;
                Self::String(s.as_str().unwrap_or_default().to_owned())
            }
        })
    }
}

/// An array variant of `items` (elements of another type than `value_type` are left out).
fn array_variant(value_type: ValueType, items: &[Value]) -> ua::Variant {
    macro_rules! array {
        ($ua:ident, $variant:ident) => {
            ua::Variant::array(ua::Array::from_slice(
                &items
                    .iter()
                    .filter_map(|item| match item {
                        Value::$variant(v) => Some(ua::$ua::new(*v)),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ))
        };
    }
    match value_type {
        ValueType::Boolean => array!(Boolean, Boolean),
        ValueType::SByte => array!(SByte, SByte),
        ValueType::Byte => array!(Byte, Byte),
        ValueType::Int16 => array!(Int16, Int16),
        ValueType::UInt16 => array!(UInt16, UInt16),
        ValueType::Int32 => array!(Int32, Int32),
        ValueType::UInt32 => array!(UInt32, UInt32),
        ValueType::Int64 => array!(Int64, Int64),
        ValueType::UInt64 => array!(UInt64, UInt64),
        ValueType::Float => array!(Float, Float),
        ValueType::Double => array!(Double, Double),
        // As for a scalar: a string with a NUL byte cannot cross into C, and is served empty.
        ValueType::String => ua::Variant::array(ua::Array::from_slice(
            &items
                .iter()
                .filter_map(|item| match item {
                    Value::String(v) => {
                        Some(ua::String::new(v).unwrap_or_else(|_| ua::String::init()))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
    }
}

/// The array a client wrote, if the variant holds a one-dimensional array of `value_type`.
fn array_from_variant(variant: &ua::Variant, value_type: ValueType) -> Option<Value> {
    macro_rules! items {
        ($ua:ident, $variant:ident) => {
            variant
                .to_array::<ua::$ua>()?
                .iter()
                .map(|v| Value::$variant(v.value()))
                .collect::<Vec<_>>()
        };
    }
    if variant.is_scalar() {
        return None;
    }
    let items = match value_type {
        ValueType::Boolean => items!(Boolean, Boolean),
        ValueType::SByte => items!(SByte, SByte),
        ValueType::Byte => items!(Byte, Byte),
        ValueType::Int16 => items!(Int16, Int16),
        ValueType::UInt16 => items!(UInt16, UInt16),
        ValueType::Int32 => items!(Int32, Int32),
        ValueType::UInt32 => items!(UInt32, UInt32),
        ValueType::Int64 => items!(Int64, Int64),
        ValueType::UInt64 => items!(UInt64, UInt64),
        ValueType::Float => items!(Float, Float),
        ValueType::Double => items!(Double, Double),
        ValueType::String => variant
            .to_array::<ua::String>()?
            .iter()
            .map(|s| Value::String(s.as_str().unwrap_or_default().to_owned()))
            .collect(),
    };
    Some(Value::Array(value_type, items))
}
