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
    Timeout { device: Arc<str>, after: Duration },
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
            Self::Timeout { device, after } => {
                write!(f, "{device}: no answer within {} ms", after.as_millis())
            }
            // The message says which: "cannot connect: ...", "connection lost: ...", "not connected ...".
            Self::Connect { device, source } => write!(f, "{device}: {source}"),
            Self::Exception {
                device,
                unit,
                function,
                code,
            } => write!(
                f,
                "{device}: unit {unit} answered function {function} with exception {code} ({})",
                exception_name(*code)
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
        assert_eq!(errors[0].to_string(), "plc1: no answer within 250 ms");
        assert_eq!(
            errors[2].to_string(),
            "plc1: unit 1 answered function 3 with exception 2 (illegal data address)"
        );
        assert_eq!(errors[2].exception_code(), Some(2));
    }
}
