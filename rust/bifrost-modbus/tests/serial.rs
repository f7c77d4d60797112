//! RTU over a serial line, on a pseudo-terminal pair: tokio-modbus's RTU server on the master side,
//! the engine opening the slave side by its path, as it would open /dev/ttyUSB0.

#![cfg(all(feature = "serial", target_os = "linux"))]

mod support;

use std::time::Duration;

use bifrost_modbus::engine::{
    Area, BackoffConfig, Client, ClientConfig, Error, Parity, ReadPlan, ReadRequest, SerialConfig,
    TagDecoder,
};
use bifrost_modbus::{ByteOrder, DataType, Value, WireFormat};
use support::Device;
use tokio::time::Instant;
use tokio_serial::{SerialPort as _, SerialStream};

const TIMEOUT: Duration = Duration::from_secs(1);

/// A device with units 1 and 2 on a pty; returns the path to open and the slave end of the pair,
/// which the test keeps open so the line never hangs up while the engine reopens it.
fn bus(device: &Device) -> (String, SerialStream) {
    let (master, slave) = SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the slave side has a path");
    let server = tokio_modbus::server::rtu::Server::new(master);
    tokio::spawn(server.serve_forever(device.clone()));
    (path, slave)
}

fn config(path: &str, quiet: Duration) -> ClientConfig {
    let mut serial = SerialConfig::new(path, 19_200);
    serial.parity = Parity::Even;
    let mut config = ClientConfig::serial(serial)
        .with_timeout(TIMEOUT)
        .with_backoff(BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
            seed: Some(1),
        });
    config.serial_quiet = quiet;
    config
}

#[tokio::test]
async fn units_on_one_serial_bus_share_one_connection() {
    let (device, _log) = Device::new(&[1, 2]);
    device.with_store(1, |store| {
        store.holding[0..2].copy_from_slice(&[0x42F6, 0xE979]);
    });
    device.with_store(2, |store| store.coils[5] = true);
    let (path, _keep) = bus(&device);
    let client = Client::connect(config(&path, Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(client.device(), format!("modbus+rtu://{path}"));
    let plan = ReadPlan::new(
        vec![
            ReadRequest::new(1, Area::HoldingRegisters, 0, 2),
            ReadRequest::new(2, Area::Coils, 0, 8),
        ],
        vec![
            TagDecoder::new(0, 0, WireFormat::plain(DataType::Float32, ByteOrder::Abcd)),
            TagDecoder::new(1, 5, WireFormat::plain(DataType::Bool, ByteOrder::Abcd)),
        ],
    )
    .unwrap();
    let readings = client.execute(&plan).await;
    assert_eq!(
        readings.values,
        [
            Some(Value::Float(f64::from(123.456_f32))),
            Some(Value::Bool(true))
        ]
    );
    let bit = WireFormat::plain(DataType::Bool, ByteOrder::Abcd);
    client
        .write_value(2, Area::Coils, 6, &bit, &Value::Bool(true))
        .await
        .unwrap();
    assert!(device.with_store(2, |store| store.coils[6]));
    assert_eq!(client.stats().connects, 1);
}

// Real time, not tokio's paused clock: a pty hands bytes across in a kernel worker, so the
// paused clock would jump to the next timer while a reply is still crossing.
#[tokio::test]
async fn after_a_timeout_the_port_rests_and_the_late_reply_is_flushed() {
    let (device, _log) = Device::new(&[1]);
    device.with_store(1, |store| store.holding[0] = 111);
    let (path, _keep) = bus(&device);
    // The device answers 400 ms late; with a 200 ms timeout and 400 ms of quiet the late reply
    // lands while the port is closed (200..600 ms), and reopening clears it.
    let timeout = Duration::from_millis(200);
    let mut config = config(&path, Duration::from_millis(400));
    config.timeout = timeout;
    let client = Client::connect(config).await.unwrap();
    device.delay_next(Duration::from_millis(400));
    let started = Instant::now();
    let late = client.read_registers(1, Area::HoldingRegisters, 0, 1).await;
    assert!(matches!(late, Err(Error::Timeout { .. })), "{late:?}");
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < timeout + Duration::from_millis(500),
        "{waited:?}"
    );
    device.with_store(1, |store| store.holding[0] = 222);
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 0, 1)
            .await
            .unwrap(),
        [222]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the port rested"
    );
    assert_eq!(client.stats().connects, 2);
}

#[tokio::test]
async fn a_missing_port_is_a_connect_error() {
    let error = Client::connect(config("/dev/bifrost-no-such-tty", Duration::ZERO))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("modbus+rtu:///dev/bifrost-no-such-tty: "),
        "{error}"
    );
}
