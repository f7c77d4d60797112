//! Writes: the four write functions, checked before they are sent and against the echo after.

use std::borrow::Cow;
use std::sync::Arc;

use tokio_modbus::{Request, Response};

use super::error::Error;
use super::plan::{ADDRESS_SPACE, MAX_WRITE_BITS, MAX_WRITE_REGISTERS};

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRequest {
    /// FC5, write single coil.
    Coil { unit: u8, address: u16, value: bool },
    /// FC15, write multiple coils (1..=1968).
    Coils {
        unit: u8,
        address: u16,
        values: Vec<bool>,
    },
    /// FC6, write single register.
    Register { unit: u8, address: u16, value: u16 },
    /// FC16, write multiple registers (1..=123).
    Registers {
        unit: u8,
        address: u16,
        values: Vec<u16>,
    },
}

impl WriteRequest {
    #[must_use]
    pub fn unit(&self) -> u8 {
        match self {
            Self::Coil { unit, .. }
            | Self::Coils { unit, .. }
            | Self::Register { unit, .. }
            | Self::Registers { unit, .. } => *unit,
        }
    }

    /// # Errors
    /// An empty or too long multiple write, or one that runs past address 65535.
    pub fn validate(&self) -> Result<(), String> {
        let (address, count, limit, what) = match self {
            Self::Coil { .. } | Self::Register { .. } => return Ok(()),
            Self::Coils {
                address, values, ..
            } => (*address, values.len(), MAX_WRITE_BITS, "coils"),
            Self::Registers {
                address, values, ..
            } => (*address, values.len(), MAX_WRITE_REGISTERS, "registers"),
        };
        if count == 0 || count > usize::from(limit) {
            return Err(format!(
                "writing {count} {what} at {address}: expected 1..={limit}"
            ));
        }
        if u32::from(address) + count as u32 > ADDRESS_SPACE {
            return Err(format!(
                "writing {count} {what} at {address} runs past address 65535"
            ));
        }
        Ok(())
    }

    pub(crate) fn to_modbus(&self) -> Request<'_> {
        match self {
            Self::Coil { address, value, .. } => Request::WriteSingleCoil(*address, *value),
            Self::Coils {
                address, values, ..
            } => Request::WriteMultipleCoils(*address, Cow::Borrowed(values)),
            Self::Register { address, value, .. } => Request::WriteSingleRegister(*address, *value),
            Self::Registers {
                address, values, ..
            } => Request::WriteMultipleRegisters(*address, Cow::Borrowed(values)),
        }
    }

    /// The device echoes what it wrote; anything else means it did something else.
    pub(crate) fn check_echo(&self, response: &Response, device: &Arc<str>) -> Result<(), Error> {
        let matches = match (self, response) {
            (Self::Coil { address, value, .. }, Response::WriteSingleCoil(a, v)) => {
                a == address && v == value
            }
            (Self::Register { address, value, .. }, Response::WriteSingleRegister(a, v)) => {
                a == address && v == value
            }
            (
                Self::Coils {
                    address, values, ..
                },
                Response::WriteMultipleCoils(a, n),
            ) => a == address && usize::from(*n) == values.len(),
            (
                Self::Registers {
                    address, values, ..
                },
                Response::WriteMultipleRegisters(a, n),
            ) => a == address && usize::from(*n) == values.len(),
            _ => false,
        };
        if matches {
            Ok(())
        } else {
            Err(Error::protocol(
                device,
                format!("the reply {response:?} does not echo the write {self:?}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let empty = WriteRequest::Registers {
            unit: 1,
            address: 0,
            values: vec![],
        };
        assert!(empty.validate().is_err());
        let long = WriteRequest::Registers {
            unit: 1,
            address: 0,
            values: vec![0; 124],
        };
        assert!(long.validate().is_err());
        let past = WriteRequest::Coils {
            unit: 1,
            address: 65_535,
            values: vec![true; 2],
        };
        assert!(past.validate().is_err());
        let fine = WriteRequest::Coils {
            unit: 1,
            address: 65_535,
            values: vec![true],
        };
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn a_wrong_echo_is_a_protocol_error() {
        let device: Arc<str> = Arc::from("dev");
        let write = WriteRequest::Register {
            unit: 1,
            address: 5,
            value: 7,
        };
        assert!(write
            .check_echo(&Response::WriteSingleRegister(5, 7), &device)
            .is_ok());
        let err = write
            .check_echo(&Response::WriteSingleRegister(5, 8), &device)
            .unwrap_err();
        assert_eq!(err.kind(), "protocol");
    }
}
