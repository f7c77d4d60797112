//! The engine's error: one enum, every variant naming the device it came from.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::values::CodecError;

/// Why a call failed. Cheap to clone (the payloads are reference-counted), so one failed request
/// can fail each of its tags with the same error.
#[derive(Debug, Clone)]
pub enum Error {
    /// No answer within the request timeout. The connection was dropped, so a late answer can
    /// never be taken as the reply to a later request.
    Timeout {
        device: Arc<str>,
        unit: u8,
        function: u8,
        after: Duration,
    },
    /// The device could not be reached, or the connection was lost (reset, closed mid-frame).
    Connect {
        device: Arc<str>,
        source: Arc<io::Error>,
    },
    /// The device answered with a Modbus exception. The connection is kept.
    Exception {
        device: Arc<str>,
        unit: u8,
        function: u8,
        code: u8,
    },
    /// The peer broke the protocol: a malformed frame, a reply that matches no request, a reply of
    /// the wrong length. The connection was dropped unless the frame itself was well formed.
    Protocol { device: Arc<str>, message: Arc<str> },
    /// A value cannot be written as the requested type (out of range, wrong kind, too long).
    Encode {
        device: Arc<str>,
        source: CodecError,
    },
    /// The request itself is impossible (a count of 0, past the end of the address space, a write
    /// to a read-only area). Nothing was sent.
    Invalid { device: Arc<str>, message: Arc<str> },
    /// The client was closed; nothing was sent.
    Closed { device: Arc<str> },
}

impl Error {
    /// The device this error came from (the client's name).
    #[must_use]
    pub fn device(&self) -> &str {
        match self {
            Self::Timeout { device, .. }
            | Self::Connect { device, .. }
            | Self::Exception { device, .. }
            | Self::Protocol { device, .. }
            | Self::Encode { device, .. }
            | Self::Invalid { device, .. }
            | Self::Closed { device } => device,
        }
    }

    /// The Modbus exception code, for `Exception`.
    #[must_use]
    pub fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short, stable name of the kind of error (for bindings and logs):
    /// `timeout`, `connect`, `exception`, `protocol`, `encode`, `invalid`, `closed`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Exception { .. } => "exception",
            Self::Protocol { .. } => "protocol",
            Self::Encode { .. } => "encode",
            Self::Invalid { .. } => "invalid",
            Self::Closed { .. } => "closed",
        }
    }

    pub(crate) fn connect(device: &Arc<str>, source: io::Error) -> Self {
        Self::Connect {
            device: Arc::clone(device),
            source: Arc::new(source),
        }
    }

    pub(crate) fn protocol(device: &Arc<str>, message: impl Into<Arc<str>>) -> Self {
        Self::Protocol {
            device: Arc::clone(device),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(device: &Arc<str>, message: impl Into<Arc<str>>) -> Self {
        Self::Invalid {
            device: Arc::clone(device),
            message: message.into(),
        }
    }
}

/// `read holding registers (3)` for a known function code, `function 99` otherwise: the words
/// of the Python engine (`bifrost.modbus.pdu.function_name`), so both engines say the same.
#[must_use]
pub fn function_name(function: u8) -> String {
    let name = match function {
        1 => "read coils",
        2 => "read discrete inputs",
        3 => "read holding registers",
        4 => "read input registers",
        5 => "write single coil",
        6 => "write single register",
        7 => "read exception status",
        8 => "diagnostics",
        11 => "get comm event counter",
        12 => "get comm event log",
        15 => "write multiple coils",
        16 => "write multiple registers",
        17 => "report server id",
        20 => "read file record",
        21 => "write file record",
        22 => "mask write register",
        23 => "read write multiple registers",
        24 => "read fifo queue",
        43 => "encapsulated interface",
        _ => return format!("function {function}"),
    };
    format!("{name} ({function})")
}

/// The constant name of a standard exception code (as `bifrost.modbus.pdu.ExceptionCode`).
#[must_use]
pub fn exception_constant(code: u8) -> &'static str {
    match code {
        1 => "ILLEGAL_FUNCTION",
        2 => "ILLEGAL_DATA_ADDRESS",
        3 => "ILLEGAL_DATA_VALUE",
        4 => "SERVER_DEVICE_FAILURE",
        5 => "ACKNOWLEDGE",
        6 => "SERVER_DEVICE_BUSY",
        8 => "MEMORY_PARITY_ERROR",
        10 => "GATEWAY_PATH_UNAVAILABLE",
        11 => "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
        _ => "non-standard",
    }
}

/// The standard name of a Modbus exception code.
#[must_use]
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The Python engine's words, so both engines say the same.
            Self::Timeout {
                device,
                unit,
                function,
                after,
            } => write!(
                f,
                "{device}: no answer from unit {unit} to {} within {} s",
                function_name(*function),
                after.as_secs_f64()
            ),
            // The message says which: "cannot connect: ...", "connection lost: ...", "not connected ...".
            Self::Connect { device, source } => write!(f, "{device}: {source}"),
            Self::Exception {
                device,
                unit,
                function,
                code,
            } => write!(
                f,
                "{device}: unit {unit}: exception {code} ({}) to {}",
                exception_constant(*code),
                function_name(*function)
            ),
            Self::Protocol { device, message } => write!(f, "{device}: protocol error: {message}"),
            Self::Encode { device, source } => write!(f, "{device}: cannot encode: {source}"),
            Self::Invalid { device, message } => write!(f, "{device}: invalid request: {message}"),
            Self::Closed { device } => write!(f, "{device}: the client is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { source, .. } => Some(&**source),
            Self::Encode { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_device() {
        let device: Arc<str> = Arc::from("plc1");
        let errors = [
            Error::Timeout {
                device: Arc::clone(&device),
                unit: 1,
                function: 3,
                after: Duration::from_millis(250),
            },
            Error::connect(&device, io::Error::from(io::ErrorKind::ConnectionRefused)),
            Error::Exception {
                device: Arc::clone(&device),
                unit: 1,
                function: 3,
                code: 2,
            },
            Error::protocol(&device, "bad frame"),
            Error::invalid(&device, "count 0"),
            Error::Closed {
                device: Arc::clone(&device),
            },
        ];
        for error in &errors {
            assert!(error.to_string().starts_with("plc1: "), "{error}");
            assert_eq!(error.device(), "plc1");
        }
        assert_eq!(
            errors[0].to_string(),
            "plc1: no answer from unit 1 to read holding registers (3) within 0.25 s"
        );
        assert_eq!(
            errors[2].to_string(),
            "plc1: unit 1: exception 2 (ILLEGAL_DATA_ADDRESS) to read holding registers (3)"
        );
        assert_eq!(errors[2].exception_code(), Some(2));
    }
}
