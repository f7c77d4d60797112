//! Writes: the four write functions, checked before they are sent and against the echo after.

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
}
