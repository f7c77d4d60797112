//! The engine against a real Modbus server on 127.0.0.1 (tokio-modbus's own, see `support`), and
//! against raw sockets that misbehave. Tests about time run on tokio's paused clock, so they are
//! exact and take no real time; the others never sleep.

mod support;

use std::time::Duration;

use bifrost_modbus::engine::{
    Area, BackoffConfig, Client, ClientConfig, Error, PollOptions, ReadPlan, ReadRequest,
    TagDecoder, Words, WriteRequest,
};
use bifrost_modbus::{ByteOrder, DataType, Value, WireFormat};
use support::{Device, Framing, Seen, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(1);

fn backoff() -> BackoffConfig {
    BackoffConfig {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
        factor: 2.0,
        jitter: 0.0,
        seed: Some(7),
    }
}

fn config(framing: Framing, address: String) -> ClientConfig {
    let config = match framing {
        Framing::Tcp => ClientConfig::tcp(address),
        Framing::RtuOverTcp => ClientConfig::rtu_over_tcp(address),
    };
    config
        .with_timeout(TIMEOUT)
        .with_backoff(backoff())
        .with_name("plc1")
}

fn format(dtype: DataType, order: ByteOrder) -> WireFormat {
    WireFormat::plain(dtype, order)
}

fn put(device: &Device, unit: u8, address: usize, format: &WireFormat, value: &Value) {
    let words = format.encode(value, 0).unwrap();
    device.with_store(unit, |store| {
        store.holding[address..address + words.len()].copy_from_slice(&words);
    });
}

#[tokio::test]
async fn a_plan_reads_every_area_and_decodes_typed_values() {
    let (device, _log) = Device::new(&[1]);
    let float = format(DataType::Float32, ByteOrder::Cdab);
    let counter = format(DataType::Uint32, ByteOrder::Abcd);
    let name = WireFormat::new(DataType::String, ByteOrder::Badc, 5, 1.0, 0.0, None).unwrap();
    let bit7 = WireFormat::new(DataType::Bool, ByteOrder::Abcd, 0, 1.0, 0.0, Some(7)).unwrap();
    let scaled = WireFormat::new(DataType::Int16, ByteOrder::Abcd, 0, 0.1, -5.0, None).unwrap();
    let big = format(DataType::Int64, ByteOrder::Dcba);
    put(&device, 1, 100, &float, &Value::Float(123.456));
    put(&device, 1, 102, &counter, &Value::Int(4_000_000_000));
    put(&device, 1, 104, &name, &Value::Str("pump".into()));
    device.with_store(1, |store| {
        store.holding[107] = 0x0080;
        store.input[10] = (-123_i16) as u16;
        store.coils[3] = true;
        store.coils[9] = true;
        store.discrete[0] = true;
    });
    let words = big.encode(&Value::Int(-9_000_000_000), 0).unwrap();
    device.with_store(1, |store| store.input[11..15].copy_from_slice(&words));
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();

    let requests = vec![
        ReadRequest::new(1, Area::HoldingRegisters, 100, 8),
        ReadRequest::new(1, Area::InputRegisters, 10, 5),
        ReadRequest::new(1, Area::Coils, 0, 10),
        ReadRequest::new(1, Area::DiscreteInputs, 0, 2),
    ];
    let bool_tag = format(DataType::Bool, ByteOrder::Abcd);
    let tags = vec![
        TagDecoder::new(0, 0, float.clone()),
        TagDecoder::new(0, 2, counter.clone()),
        TagDecoder::new(0, 4, name.clone()),
        TagDecoder::new(0, 7, bit7.clone()),
        TagDecoder::new(1, 0, scaled.clone()),
        TagDecoder::new(1, 1, big.clone()),
        TagDecoder::new(2, 3, bool_tag.clone()),
        TagDecoder::new(2, 4, bool_tag.clone()),
        TagDecoder::new(2, 9, bool_tag.clone()),
        TagDecoder::new(3, 0, bool_tag.clone()),
        TagDecoder::new(3, 1, bool_tag),
    ];
    let plan = ReadPlan::new(requests, tags).unwrap();
    let results = client.execute(&plan).await.into_results(&plan);
    let values: Vec<Value> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        values,
        vec![
            Value::Float(f64::from(123.456_f32)),
            Value::Int(4_000_000_000),
            Value::Str("pump".into()),
            Value::Bool(true),
            Value::Float(-123.0 * 0.1 - 5.0),
            Value::Int(-9_000_000_000),
            Value::Bool(true),
            Value::Bool(false),
            Value::Bool(true),
            Value::Bool(true),
            Value::Bool(false),
        ]
    );
    let stats = client.stats();
    assert_eq!((stats.connects, stats.requests, stats.losses), (1, 4, 0));
}

#[tokio::test]
async fn raw_reads_and_writes_reach_every_area() {
    let (device, _log) = Device::new(&[1]);
    device.with_store(1, |store| {
        store.discrete[5] = true;
        store.input[7] = 0xBEEF;
    });
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();

    client
        .write(WriteRequest::Coil {
            unit: 1,
            address: 1,
            value: true,
        })
        .await
        .unwrap();
    let coils = vec![true, false, true, true, false, false, false, false, true];
    client
        .write(WriteRequest::Coils {
            unit: 1,
            address: 10,
            values: coils.clone(),
        })
        .await
        .unwrap();
    client
        .write(WriteRequest::Register {
            unit: 1,
            address: 2,
            value: 0x1234,
        })
        .await
        .unwrap();
    client
        .write(WriteRequest::Registers {
            unit: 1,
            address: 20,
            values: vec![1, 2, 3],
        })
        .await
        .unwrap();

    assert_eq!(
        client.read_bits(1, Area::Coils, 0, 3).await.unwrap(),
        [false, true, false]
    );
    assert_eq!(
        client.read_bits(1, Area::Coils, 10, 9).await.unwrap(),
        coils
    );
    assert_eq!(
        client
            .read_bits(1, Area::DiscreteInputs, 4, 3)
            .await
            .unwrap(),
        [false, true, false]
    );
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 2, 1)
            .await
            .unwrap(),
        [0x1234]
    );
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 20, 3)
            .await
            .unwrap(),
        [1, 2, 3]
    );
    assert_eq!(
        client
            .read_registers(1, Area::InputRegisters, 7, 1)
            .await
            .unwrap(),
        [0xBEEF]
    );
    assert_eq!(
        client
            .read(ReadRequest::new(1, Area::InputRegisters, 7, 2))
            .await
            .unwrap(),
        Words::Registers(vec![0xBEEF, 0])
    );
    device.with_store(1, |store| {
        assert!(store.coils[1]);
        assert_eq!(&store.coils[10..19], &coils[..]);
        assert_eq!(store.holding[2], 0x1234);
        assert_eq!(&store.holding[20..23], &[1, 2, 3]);
    });

    let invalid = client
        .read(ReadRequest::new(1, Area::HoldingRegisters, 0, 126))
        .await;
    assert!(matches!(invalid, Err(Error::Invalid { .. })), "{invalid:?}");
    let wrong_area = client.read_registers(1, Area::Coils, 0, 1).await;
    assert!(
        matches!(wrong_area, Err(Error::Invalid { .. })),
        "{wrong_area:?}"
    );
}

#[tokio::test]
async fn write_value_encodes_with_the_codec_and_picks_the_function() {
    let (device, mut log) = Device::new(&[1]);
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    let float = format(DataType::Float32, ByteOrder::Cdab);
    let level = WireFormat::new(DataType::Int16, ByteOrder::Abcd, 0, 0.1, 0.0, None).unwrap();
    let bit3 = WireFormat::new(DataType::Bool, ByteOrder::Abcd, 0, 1.0, 0.0, Some(3)).unwrap();
    let flag = format(DataType::Bool, ByteOrder::Abcd);
    device.with_store(1, |store| store.holding[30] = 0x8001);

    let hr = Area::HoldingRegisters;
    client
        .write_value(1, hr, 10, &float, &Value::Float(123.456))
        .await
        .unwrap();
    client
        .write_value(1, hr, 20, &level, &Value::Float(12.3))
        .await
        .unwrap();
    client
        .write_value(1, hr, 30, &bit3, &Value::Bool(true))
        .await
        .unwrap();
    client
        .write_value(1, Area::Coils, 4, &flag, &Value::Int(1))
        .await
        .unwrap();

    let functions: Vec<u8> = std::iter::from_fn(|| log.try_recv().ok())
        .map(|s| s.function)
        .collect();
    assert_eq!(
        functions,
        [16, 6, 3, 6, 5],
        "FC16 for two words, FC6 for one, read-modify-write"
    );
    device.with_store(1, |store| {
        assert_eq!(
            store.holding[10..12],
            float.encode(&Value::Float(123.456), 0).unwrap()[..]
        );
        assert_eq!(store.holding[20], 123);
        assert_eq!(
            store.holding[30], 0x8009,
            "the other bits of the register are kept"
        );
        assert!(store.coils[4]);
    });

    let too_big = client
        .write_value(1, hr, 0, &level, &Value::Float(1e9))
        .await;
    assert!(matches!(too_big, Err(Error::Encode { .. })), "{too_big:?}");
    let bad_bit = client
        .write_value(1, hr, 30, &bit3, &Value::Str("x".into()))
        .await;
    assert!(matches!(bad_bit, Err(Error::Encode { .. })), "{bad_bit:?}");
    let read_only = client
        .write_value(1, Area::InputRegisters, 0, &level, &Value::Int(1))
        .await;
    assert!(
        matches!(read_only, Err(Error::Invalid { .. })),
        "{read_only:?}"
    );
    assert!(
        log.try_recv().is_err(),
        "nothing was sent for the refused writes"
    );
}

#[tokio::test]
async fn an_exception_fails_only_the_tags_of_its_request() {
    let (device, _log) = Device::new(&[1]);
    device.with_store(1, |store| store.holding[0] = 42);
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    let int = format(DataType::Int16, ByteOrder::Abcd);
    let plan = ReadPlan::new(
        vec![
            ReadRequest::new(1, Area::HoldingRegisters, 0, 1),
            ReadRequest::new(1, Area::HoldingRegisters, 999, 2), // past the device's 1000
            ReadRequest::new(1, Area::HoldingRegisters, 0, 1),
        ],
        vec![
            TagDecoder::new(0, 0, int.clone()),
            TagDecoder::new(1, 1, int.clone()),
            TagDecoder::new(2, 0, int),
        ],
    )
    .unwrap();
    let readings = client.execute(&plan).await;
    assert_eq!(readings.get(&plan, 0).unwrap(), &Value::Int(42));
    let error = readings.get(&plan, 1).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Exception {
                unit: 1,
                function: 3,
                code: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "plc1: unit 1: exception 2 (ILLEGAL_DATA_ADDRESS) to read holding registers (3)"
    );
    assert_eq!(readings.get(&plan, 2).unwrap(), &Value::Int(42));
    assert_eq!(
        client.stats().losses,
        0,
        "an exception keeps the connection"
    );
}

async fn timeout_then_late_reply(framing: Framing) {
    let (device, _log) = Device::new(&[1]);
    device.with_store(1, |store| store.holding[0] = 111);
    let server = Server::start(&device, framing).await;
    let client = Client::connect(config(framing, server.address()))
        .await
        .unwrap();

    // The device answers the first request 1.5 s late, with the value it held when asked.
    device.delay_next(Duration::from_millis(1500));
    let started = Instant::now();
    let late = client.read_registers(1, Area::HoldingRegisters, 0, 1).await;
    assert!(matches!(late, Err(Error::Timeout { .. })), "{late:?}");
    assert_eq!(started.elapsed(), TIMEOUT, "the timeout is exact");
    assert_eq!(
        late.unwrap_err().to_string(),
        "plc1: no answer from unit 1 to read holding registers (3) within 1 s"
    );

    // The next request goes out while the late reply is still on its way (it is sent at 1.5 s);
    // it must get its own answer, not the stale 111.
    device.with_store(1, |store| store.holding[0] = 222);
    let next = client
        .read_registers(1, Area::HoldingRegisters, 0, 1)
        .await
        .unwrap();
    assert_eq!(next, [222]);
    assert!(started.elapsed() < Duration::from_millis(1500));
    // And after the late reply was sent, still in step.
    tokio::time::sleep(Duration::from_secs(1)).await;
    device.with_store(1, |store| store.holding[0] = 333);
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 0, 1)
            .await
            .unwrap(),
        [333]
    );
    let stats = client.stats();
    assert_eq!((stats.timeouts, stats.losses, stats.connects), (1, 1, 2));
}

#[tokio::test(start_paused = true)]
async fn tcp_timeout_is_bounded_and_the_late_reply_is_not_taken() {
    timeout_then_late_reply(Framing::Tcp).await;
}

#[tokio::test(start_paused = true)]
async fn rtu_over_tcp_timeout_is_bounded_and_the_late_reply_is_not_taken() {
    // RTU has no transaction id: on a kept connection the late reply WOULD pass as the next one.
    timeout_then_late_reply(Framing::RtuOverTcp).await;
}

#[tokio::test(start_paused = true)]
async fn a_timeout_mid_plan_fails_the_rest_of_the_plan_without_sending_it() {
    let (device, mut log) = Device::new(&[1]);
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    let int = format(DataType::Int16, ByteOrder::Abcd);
    let plan = ReadPlan::new(
        (0..3)
            .map(|i| ReadRequest::new(1, Area::HoldingRegisters, i * 10, 1))
            .collect(),
        (0..3).map(|i| TagDecoder::new(i, 0, int.clone())).collect(),
    )
    .unwrap();
    device.delay_next(Duration::from_secs(5));
    let started = Instant::now();
    let readings = client.execute(&plan).await;
    assert_eq!(started.elapsed(), TIMEOUT, "one timeout for the whole plan");
    assert!(readings
        .errors
        .iter()
        .all(|e| matches!(e, Some(Error::Timeout { .. }))));
    assert_eq!(log.try_recv().unwrap().address, 0);
    assert!(log.try_recv().is_err(), "the rest of the plan was not sent");
    // The next run reconnects and succeeds.
    let readings = client.execute(&plan).await;
    assert!(
        readings.values.iter().all(Option::is_some),
        "{:?}",
        readings.errors
    );
}

#[tokio::test]
async fn reconnects_after_the_server_goes_away_and_comes_back() {
    let (device, _log) = Device::new(&[1]);
    device.with_store(1, |store| store.holding[0] = 7);
    let server = Server::start(&device, Framing::Tcp).await;
    let addr = server.addr;
    let client = Client::connect(config(Framing::Tcp, addr.to_string()))
        .await
        .unwrap();
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 0, 1)
            .await
            .unwrap(),
        [7]
    );

    server.stop().await;
    let down = client.read_registers(1, Area::HoldingRegisters, 0, 1).await;
    assert!(matches!(down, Err(Error::Connect { .. })), "{down:?}");
    let message = down.unwrap_err().to_string();
    assert!(message.starts_with("plc1: connection lost: "), "{message}");
    assert!(!client.stats().connected);

    let _server = Server::restart(addr, &device, Framing::Tcp).await;
    device.with_store(1, |store| store.holding[0] = 8);
    // The backoff is at most 1 s, which is the request timeout: the call waits for the next
    // attempt instead of failing.
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 0, 1)
            .await
            .unwrap(),
        [8]
    );
    let stats = client.stats();
    assert_eq!(stats.connects, 2);
    assert!(stats.connected);
}

/// A raw server: the first connection gets half a reply and is closed; later ones are answered
/// properly (holding registers all 0x0102).
async fn half_frame_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut first = true;
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let half = first;
            first = false;
            tokio::spawn(async move {
                let mut request = [0_u8; 12]; // MBAP (7) + FC3 (5)
                while stream.read_exact(&mut request).await.is_ok() {
                    let count = u16::from_be_bytes([request[10], request[11]]);
                    let bytes = 2 * count;
                    let mut reply = vec![request[0], request[1], 0, 0];
                    reply.extend_from_slice(&(3 + bytes).to_be_bytes());
                    reply.extend_from_slice(&[request[6], 3, bytes as u8]);
                    for _ in 0..count {
                        reply.extend_from_slice(&[1, 2]);
                    }
                    if half {
                        stream.write_all(&reply[..reply.len() / 2]).await.unwrap();
                        return; // closes mid-frame
                    }
                    stream.write_all(&reply).await.unwrap();
                }
            });
        }
    });
    (address, task)
}

#[tokio::test]
async fn a_server_that_closes_mid_frame_is_a_lost_connection_then_a_reconnect() {
    let (address, _task) = half_frame_server().await;
    let client = Client::connect(config(Framing::Tcp, address))
        .await
        .unwrap();
    let broken = client.read_registers(1, Area::HoldingRegisters, 0, 4).await;
    assert!(matches!(broken, Err(Error::Connect { .. })), "{broken:?}");
    assert_eq!(
        broken.unwrap_err().to_string(),
        // The words of the Python engine and the TCP session: a frame cut short is the same event.
        "plc1: connection lost: the device closed it"
    );
    assert_eq!(client.stats().losses, 1);
    let fine = client
        .read_registers(1, Area::HoldingRegisters, 0, 4)
        .await
        .unwrap();
    assert_eq!(fine, [0x0102; 4]);
    assert_eq!(client.stats().connects, 2);
}

#[tokio::test]
async fn units_of_one_bus_share_one_connection() {
    let (device, _log) = Device::new(&[1, 2]);
    device.with_store(1, |store| store.holding[0] = 10);
    device.with_store(2, |store| store.holding[0] = 20);
    let server = Server::start(&device, Framing::RtuOverTcp).await;
    let client = Client::connect(config(Framing::RtuOverTcp, server.address()))
        .await
        .unwrap();
    let other_handle = client.clone();
    let int = format(DataType::Int16, ByteOrder::Abcd);
    let plan = ReadPlan::new(
        vec![
            ReadRequest::new(1, Area::HoldingRegisters, 0, 1),
            ReadRequest::new(2, Area::HoldingRegisters, 0, 1),
        ],
        vec![
            TagDecoder::new(0, 0, int.clone()),
            TagDecoder::new(1, 0, int),
        ],
    )
    .unwrap();
    let readings = client.execute(&plan).await;
    assert_eq!(
        readings.values,
        [Some(Value::Int(10)), Some(Value::Int(20))]
    );
    other_handle
        .write(WriteRequest::Register {
            unit: 2,
            address: 0,
            value: 21,
        })
        .await
        .unwrap();
    assert_eq!(
        client
            .read_registers(2, Area::HoldingRegisters, 0, 1)
            .await
            .unwrap(),
        [21]
    );
    assert_eq!(
        client
            .read_registers(1, Area::HoldingRegisters, 0, 1)
            .await
            .unwrap(),
        [10]
    );
    let unknown = client.read_registers(9, Area::HoldingRegisters, 0, 1).await;
    assert!(
        matches!(
            unknown,
            Err(Error::Exception {
                unit: 9,
                code: 11,
                ..
            })
        ),
        "{unknown:?}"
    );
    assert_eq!(client.stats().connects, 1);
}

#[tokio::test(start_paused = true)]
async fn writes_go_ahead_of_queued_reads_and_reads_keep_their_order() {
    let (device, mut log) = Device::new(&[1]);
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    device.delay_next(Duration::from_millis(100));
    let read = |address| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .read_registers(1, Area::HoldingRegisters, address, 1)
                .await
        })
    };
    let first = read(1);
    assert_eq!(
        log.recv().await.unwrap().address,
        1,
        "the first read is in flight"
    );
    let queued = [read(2), read(3)];
    let writer = client.clone();
    let write = tokio::spawn(async move {
        writer
            .write(WriteRequest::Register {
                unit: 1,
                address: 9,
                value: 1,
            })
            .await
    });
    first.await.unwrap().unwrap();
    write.await.unwrap().unwrap();
    for task in queued {
        task.await.unwrap().unwrap();
    }
    let order: Vec<Seen> = std::iter::from_fn(|| log.try_recv().ok()).collect();
    let order: Vec<(u8, u16)> = order.iter().map(|s| (s.function, s.address)).collect();
    assert_eq!(order, [(6, 9), (3, 2), (3, 3)]);
}

#[tokio::test(start_paused = true)]
async fn a_write_jumps_into_a_running_plan() {
    let (device, mut log) = Device::new(&[1]);
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    let int = format(DataType::Int16, ByteOrder::Abcd);
    let plan = ReadPlan::new(
        (0..3)
            .map(|i| ReadRequest::new(1, Area::HoldingRegisters, i, 1))
            .collect(),
        (0..3).map(|i| TagDecoder::new(i, 0, int.clone())).collect(),
    )
    .unwrap();
    device.delay_next(Duration::from_millis(100));
    let reader = client.clone();
    let run = tokio::spawn(async move { reader.execute(&plan).await });
    assert_eq!(
        log.recv().await.unwrap().address,
        0,
        "the plan's first request is in flight"
    );
    client
        .write(WriteRequest::Register {
            unit: 1,
            address: 2,
            value: 5,
        })
        .await
        .unwrap();
    let readings = run.await.unwrap();
    let order: Vec<(u8, u16)> = std::iter::from_fn(|| log.try_recv().ok())
        .map(|s| (s.function, s.address))
        .collect();
    assert_eq!(order, [(6, 2), (3, 1), (3, 2)]);
    assert_eq!(
        readings.values[2],
        Some(Value::Int(5)),
        "the plan reads after the write"
    );
}

/// A port nobody listens on.
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_naming_the_device() {
    let address = dead_address().await;
    let error = Client::connect(ClientConfig::tcp(address.clone()).with_timeout(TIMEOUT))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("modbus://{address}: cannot connect: ")),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_device_is_retried_on_the_backoff_schedule_and_callers_fail_fast() {
    let address = dead_address().await;
    let client = Client::spawn(config(Framing::Tcp, address));
    let start = Instant::now();
    // Attempts at 0, 0.1, 0.3, 0.7, 1.5, 2.5, 3.5 s (base 100 ms, doubling, 1 s ceiling).
    let expected = [
        (50, 1),
        (150, 2),
        (350, 3),
        (750, 4),
        (1550, 5),
        (2550, 6),
        (3550, 7),
    ];
    for (at, attempts) in expected {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        assert_eq!(client.stats().failed_connects, attempts, "at {at} ms");
    }
    assert_eq!(client.stats().connects, 0);

    // With a backoff beyond the request timeout, a caller fails at once instead of waiting.
    let slow = BackoffConfig {
        base: Duration::from_secs(30),
        max: Duration::from_secs(60),
        ..backoff()
    };
    let client = Client::spawn(config(Framing::Tcp, dead_address().await).with_backoff(slow));
    tokio::time::sleep(Duration::from_millis(1)).await; // the first attempt, made at spawn
    let asked = Instant::now();
    let error = client
        .read_registers(1, Area::HoldingRegisters, 0, 1)
        .await
        .unwrap_err();
    assert_eq!(asked.elapsed(), Duration::ZERO);
    assert!(error.to_string().contains("next attempt in"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn subscribe_delivers_only_changes_beyond_the_deadband() {
    let (device, mut log) = Device::new(&[1]);
    let float = format(DataType::Float32, ByteOrder::Abcd);
    let flag = format(DataType::Bool, ByteOrder::Abcd);
    put(&device, 1, 0, &float, &Value::Float(10.0));
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    let plan = ReadPlan::new(
        vec![
            ReadRequest::new(1, Area::HoldingRegisters, 0, 2),
            ReadRequest::new(1, Area::Coils, 0, 1),
        ],
        vec![
            TagDecoder::new(0, 0, float.clone()),
            TagDecoder::new(1, 0, flag),
        ],
    )
    .unwrap();
    let mut subscription = client.subscribe(
        plan,
        PollOptions::new(Duration::from_secs(1)).with_deadband(0.5),
    );

    let first = subscription.next().await.unwrap();
    assert_eq!(first.tags, [0, 1], "the first batch holds every tag");
    assert_eq!(first.values[0].as_ref().unwrap(), &Value::Float(10.0));
    assert_eq!(first.values[1].as_ref().unwrap(), &Value::Bool(false));
    let polled = |log: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>| {
        std::iter::from_fn(|| log.try_recv().ok()).count()
    };
    assert_eq!(polled(&mut log), 2);

    put(&device, 1, 0, &float, &Value::Float(10.3)); // within the deadband
    let seen = log.recv().await.unwrap(); // the second poll has read 10.3
    assert_eq!(seen.function, 3);
    put(&device, 1, 0, &float, &Value::Float(10.7)); // 0.7 from the last report: beyond it
    let started = Instant::now();
    let second = subscription.next().await.unwrap();
    assert_eq!(second.tags, [0], "the unchanged flag is not repeated");
    assert_eq!(
        second.values[0].as_ref().unwrap(),
        &Value::Float(f64::from(10.7_f32))
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "one interval later"
    );

    device.with_store(1, |store| store.coils[0] = true);
    let third = subscription.next().await.unwrap();
    assert_eq!(third.tags, [1]);
    assert_eq!(third.values[0].as_ref().unwrap(), &Value::Bool(true));

    // An outage is reported once per tag, then the recovery.
    let addr = server.addr;
    server.stop().await;
    let outage = subscription.next().await.unwrap();
    assert_eq!(outage.tags, [0, 1]);
    assert!(
        outage
            .values
            .iter()
            .all(|v| matches!(v, Err(Error::Connect { .. }))),
        "{outage:?}"
    );
    let _server = Server::restart(addr, &device, Framing::Tcp).await;
    let recovered = subscription.next().await.unwrap();
    assert_eq!(recovered.tags, [0, 1]);
    assert!(recovered.values.iter().all(Result::is_ok), "{recovered:?}");
}

#[tokio::test]
async fn after_close_every_call_fails_closed() {
    let (device, _log) = Device::new(&[1]);
    let server = Server::start(&device, Framing::Tcp).await;
    let client = Client::connect(config(Framing::Tcp, server.address()))
        .await
        .unwrap();
    let other = client.clone();
    client.close().await;
    client.close().await;
    let error = other
        .read_registers(1, Area::HoldingRegisters, 0, 1)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error:?}");
    assert_eq!(error.to_string(), "plc1: the client is closed");
    let plan = ReadPlan::new(vec![ReadRequest::new(1, Area::Coils, 0, 1)], vec![]).unwrap();
    assert!(matches!(
        other.execute(&plan).await.errors[0],
        Some(Error::Closed { .. })
    ));
    assert!(other.is_closed());
}
