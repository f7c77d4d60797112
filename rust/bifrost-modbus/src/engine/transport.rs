//! Where a client's bytes go: Modbus TCP, RTU framing over TCP, or RTU over a local serial port.

use std::fmt;
use std::io;

use tokio::net::TcpStream;

use super::line::{self, Line};

/// How to reach the device(s) of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP (MBAP framing) to `host:port`.
    Tcp { address: String },
    /// RTU framing (CRC, no transaction id) over TCP to `host:port`, as serial gateways speak.
    RtuOverTcp { address: String },
    /// RTU over a local serial port. Needs the crate feature `serial`; without it, connecting
    /// fails with `Error::Connect` saying so.
    Serial(SerialConfig),
}

impl Transport {
    /// RTU (serial or over TCP) has no transaction id to tell a late reply from the next one.
    #[must_use]
    pub fn is_rtu(&self) -> bool {
        matches!(self, Self::RtuOverTcp { .. } | Self::Serial(_))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { address } => write!(f, "modbus://{address}"),
            Self::RtuOverTcp { address } => write!(f, "modbus+rtu+tcp://{address}"),
            Self::Serial(serial) => write!(f, "modbus+rtu://{}", serial.path),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// Settings of a serial line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    pub path: String,
    pub baud_rate: u32,
    pub parity: Parity,
    /// 5..=8
    pub data_bits: u8,
    /// 1 or 2
    pub stop_bits: u8,
}

impl SerialConfig {
    /// 8 data bits, no parity, 1 stop bit.
    #[must_use]
    pub fn new(path: impl Into<String>, baud_rate: u32) -> Self {
        Self {
            path: path.into(),
            baud_rate,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
        }
    }
}

/// Open the transport, with the framing it speaks.
pub(crate) async fn open(transport: &Transport) -> io::Result<Line> {
    match transport {
        Transport::Tcp { address } => Ok(Line::mbap(Box::new(tcp_stream(address).await?))),
        Transport::RtuOverTcp { address } => {
            // No silences on a TCP stream: frames are cut by their length alone.
            Ok(Line::rtu(Box::new(tcp_stream(address).await?), None))
        }
        Transport::Serial(serial) => {
            let port = open_serial(serial)?;
            Ok(Line::rtu(
                Box::new(port),
                Some(line::serial_gap(serial.baud_rate)),
            ))
        }
    }
}

async fn tcp_stream(address: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(address).await?;
    // One small request, one small reply: never wait for Nagle.
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(feature = "serial")]
fn open_serial(serial: &SerialConfig) -> io::Result<tokio_serial::SerialStream> {
    use tokio_serial::{ClearBuffer, DataBits, SerialPort, StopBits};

    let data_bits = match serial.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        8 => DataBits::Eight,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} data bits: expected 5, 6, 7 or 8"),
            ))
        }
    };
    let stop_bits = match serial.stop_bits {
        1 => StopBits::One,
        2 => StopBits::Two,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} stop bits: expected 1 or 2"),
            ))
        }
    };
    let parity = match serial.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let builder = tokio_serial::new(serial.path.as_str(), serial.baud_rate)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity);
    let port = tokio_serial::SerialStream::open(&builder).map_err(io::Error::from)?;
    // Whatever sat in the input buffer (a reply that came too late) is not ours to read.
    port.clear(ClearBuffer::Input).map_err(io::Error::from)?;
    Ok(port)
}

#[cfg(not(feature = "serial"))]
#[allow(clippy::unnecessary_wraps)] // the same signature as with the feature
fn open_serial(serial: &SerialConfig) -> io::Result<tokio::io::DuplexStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "cannot open {}: bifrost-modbus was built without serial support (feature `serial`)",
            serial.path
        ),
    ))
}
